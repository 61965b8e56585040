"""This process's memory as the kernel counts it, for the benchmarks' peak figures (Linux only)."""

from __future__ import annotations

from pathlib import Path


def resident_mb(field: str = "VmRSS") -> float:
    """/proc/self/status's `field` in MB: VmRSS the resident set now, VmHWM its peak since the process started."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field} line (the benchmarks measure memory on Linux only)")
