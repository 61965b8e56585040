"""CPU seconds of processes as the kernel counts them (user + system, from /proc; Linux only), for the benchmarks'
accounts of where the cores' time went."""

from __future__ import annotations

import os
from pathlib import Path


def _stat_fields(pid: int | str) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (state first); None where the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def _seconds(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    return _seconds(fields) if fields else 0.0


def children_cpu_seconds(parent: int, leaving_out: tuple[int, ...] = ()) -> float:
    """CPU seconds of the live children of `parent` (a pool's worker processes), but those in `leaving_out`."""
    return sum(_seconds(fields) for pid, fields in ((pid, _stat_fields(pid)) for pid in _pids())
               if fields and int(fields[1]) == parent and int(pid) not in leaving_out)


def group_cpu_seconds(group: int) -> float:
    """CPU seconds of the live processes in process group `group` (a service started in a group of its own)."""
    return sum(_seconds(fields) for fields in map(_stat_fields, _pids()) if fields and int(fields[2]) == group)


def _pids() -> list[str]:
    return [entry.name for entry in Path("/proc").iterdir() if entry.name.isdigit()]
