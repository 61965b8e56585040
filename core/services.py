"""The local services the pipeline talks to, started and stopped by `./places services up|down|status`.

Each service runs detached in its own process group, logs to <state>/logs/<name>.log and leaves a record
(<state>/services/<name>.json) with its PID, so `down` stops exactly what `up` started and nothing else.
Every service binds to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import typing
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.config import EMULATOR_ACCOUNT, PROJECT_ROOT, Config
from core.errors import UserError


class ServiceError(UserError):
    """A local service cannot be started, stopped or reached; the message names it and what to do."""


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    description: str
    # The port it listens on, checked free before it starts; None for a process that listens on none of its own.
    port: int | None
    command: list[str]
    url: str
    # True when the thing answering on `port` is this service (not some other program on the same port).
    is_healthy: typing.Callable[[], bool]
    # Set on top of this process's environment; None removes a variable (a secret the service has no use for).
    env: dict[str, str | None] = field(default_factory=dict)
    # Shown when the port is taken: which setting moves the service elsewhere.
    port_setting: str = ""
    # Runs just before the process starts (e.g. create the blob container the service writes to).
    prepare: typing.Callable[[], None] | None = None
    # Further ports it listens on, also checked free before it starts.
    other_ports: tuple[int, ...] = ()
    # What to run when the executable is missing.
    install_hint: str = "run ./places once to install, or `npm ci` in the project folder"


@dataclass
class ServiceRecord:
    name: str
    pid: int
    port: int
    url: str
    log: str
    started_at: float


def _http_get(url: str, timeout: float = 2.0) -> tuple[int, dict, bytes] | None:
    """(status, headers, body) of whatever answers at `url`, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), b""
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def _azurite_answers(url: str) -> bool:
    answer = _http_get(f"{url}?comp=list")
    return answer is not None and "Azurite" in answer[1].get("Server", "")


def _mlflow_answers(url: str) -> bool:
    health, version = _http_get(f"{url}/health"), _http_get(f"{url}/version")
    return bool(health and health[0] == 200 and health[2].strip() == b"OK" and version and version[0] == 200)


def azurite_spec(config: Config) -> ServiceSpec:
    host, port = config.services.host, config.storage.emulator_port
    location = config.state_dir / "azurite"
    url = f"http://{host}:{port}/{EMULATOR_ACCOUNT}"
    return ServiceSpec(
        name="azurite",
        description="Azure Blob Storage emulator",
        port=port,
        command=[str(PROJECT_ROOT / "node_modules" / ".bin" / "azurite-blob"),
                 "--blobHost", host, "--blobPort", str(port), "--location", str(location),
                 "--skipApiVersionCheck", "--silent"],
        url=url,
        is_healthy=lambda: _azurite_answers(url),
        port_setting="storage.emulator_port (PLACES_STORAGE__EMULATOR_PORT)",
    )


def mlflow_spec(config: Config) -> ServiceSpec:
    """MLflow's tracking server: runs and the model registry in sqlite, artifacts in blob storage.

    Clients upload artifacts through the server's proxy, so only the server holds the storage secret.
    """
    from core import storage

    blob_storage = storage.Storage.from_config(config)
    container = config.mlflow.artifacts_container
    database = config.state_dir / "mlflow" / "mlflow.db"
    return ServiceSpec(
        name="mlflow",
        description="MLflow tracking server and model registry",
        port=config.mlflow.port,
        command=[sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{database}",
                 "--artifacts-destination",
                 f"wasbs://{container}@{blob_storage.account}.blob.core.windows.net/artifacts",
                 "--host", config.services.host, "--port", str(config.mlflow.port), "--workers", "1"],
        url=config.mlflow_uri,
        is_healthy=lambda: _mlflow_answers(config.mlflow_uri),
        # The server's job runner starts seven worker processes for features this project does not use.
        env={storage.CONNECTION_STRING_ENV: storage.connection_string(config),
             "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        port_setting="mlflow.port (PLACES_MLFLOW__PORT)",
        prepare=lambda: (database.parent.mkdir(parents=True, exist_ok=True),
                         blob_storage.ensure_container(storage.join(f"azfs://{blob_storage.account}", container))),
    )


def service_specs(config: Config) -> list[ServiceSpec]:
    return [azurite_spec(config), mlflow_spec(config)]


def _records_dir(config: Config) -> Path:
    return config.state_dir / "services"


def _read_record(config: Config, name: str) -> ServiceRecord | None:
    path = _records_dir(config) / f"{name}.json"
    try:
        return ServiceRecord(**json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def _write_record(config: Config, record: ServiceRecord) -> None:
    path = _records_dir(config) / f"{record.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(asdict(record), indent=2))
    os.replace(temporary, path)


def process_alive(pid: int) -> bool:
    """Whether process `pid` on this machine still runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) still answers kill(0).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return True


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) == 0


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def start(config: Config, spec: ServiceSpec) -> tuple[ServiceRecord | None, bool]:
    """Start `spec` unless it already answers; returns (record, started_now).

    The record is None when an instance this state folder did not start answers on the port (one the user
    runs, or another checkout's): it is used as it is, and `down` leaves it alone.
    """
    record = _read_record(config, spec.name)
    if record and process_alive(record.pid) and spec.is_healthy():
        return record, False
    if record:
        stop(config, spec.name)
    host = config.services.host
    ports = [port for port in (spec.port, *spec.other_ports) if port is not None]
    if spec.port is not None and port_in_use(host, spec.port) and spec.is_healthy():
        return None, False
    for port in ports:
        if port_in_use(host, port):
            raise ServiceError(
                f"port {port} on {host} is already in use by another program, so {spec.name} cannot start. "
                f"Stop that program, or move {spec.name} to a free port with {spec.port_setting}.")
    executable = spec.command[0]
    if os.path.sep in executable and not Path(executable).exists():
        raise ServiceError(f"{spec.name} is not installed ({executable} is missing): {spec.install_hint}")
    if spec.prepare is not None:
        spec.prepare()
    log_path = config.state_dir / "logs" / f"{spec.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n--- starting {spec.name} at {time.ctime()}\n".encode())
        log.flush()
        process = subprocess.Popen(spec.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=PROJECT_ROOT, env=_environment(spec), start_new_session=True)
    record = ServiceRecord(spec.name, process.pid, spec.port or 0, spec.url, str(log_path), time.time())
    _write_record(config, record)
    deadline = time.monotonic() + config.services.start_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _remove_record(config, spec.name)
            raise ServiceError(f"{spec.name} exited with code {process.returncode} while starting; "
                               f"the end of {log_path}:\n{_log_tail(log_path)}")
        if spec.is_healthy():
            return record, True
        time.sleep(0.25)
    stop(config, spec.name)
    raise ServiceError(f"{spec.name} did not answer at {spec.url} within {config.services.start_timeout_s} s; "
                       f"the end of {log_path}:\n{_log_tail(log_path)}")


def _environment(spec: ServiceSpec) -> dict[str, str]:
    return {name: value for name, value in {**os.environ, **spec.env}.items() if value is not None}


def _remove_record(config: Config, name: str) -> None:
    (_records_dir(config) / f"{name}.json").unlink(missing_ok=True)


def stop(config: Config, name: str, timeout_s: float = 15.0) -> bool:
    """Stop the recorded process group of service `name`; returns whether one was running."""
    record = _read_record(config, name)
    if record is None:
        return False
    running = process_alive(record.pid)
    if running:
        # SIGTERM first: Azurite saves its blob index on the way out, which takes a while for a large one.
        for stop_signal, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(record.pid, stop_signal)
            except ProcessLookupError:
                break
            if _gone_within(record.pid, wait_s):
                break
    _remove_record(config, name)
    return running


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # reaps it when this process started it (tests do)
        except ChildProcessError:
            pass
        if not process_alive(pid):
            return True
        time.sleep(0.1)
    return not process_alive(pid)


def up(config: Config, names: typing.Iterable[str] | None = None,
       report: typing.Callable[[str], None] = print) -> list[ServiceRecord]:
    records = []
    for spec in _selected(config, names):
        record, started = start(config, spec)
        if record is None:
            report(f"{spec.name:<8} running  {spec.url}   ({spec.description}; not started by ./places, left as is)")
            continue
        report(f"{spec.name:<8} {'started' if started else 'running'}  pid {record.pid:<7} {spec.url}"
               f"   ({spec.description}; log {record.log})")
        records.append(record)
    return records


def down(config: Config, names: typing.Iterable[str] | None = None,
         report: typing.Callable[[str], None] = print) -> None:
    for spec in reversed(_selected(config, names)):
        record = _read_record(config, spec.name)
        if stop(config, spec.name):
            report(f"{spec.name:<8} stopped  (pid {record.pid})")
        else:
            report(f"{spec.name:<8} was not running")


def recorded(config: Config) -> list[str]:
    """The names of the services this state folder has a record of."""
    return sorted(path.stem for path in _records_dir(config).glob("*.json"))


def recorded_pid(config: Config, name: str) -> int | None:
    record = _read_record(config, name)
    return record.pid if record else None


def status(config: Config, specs: list[ServiceSpec] | None = None) -> list[dict]:
    rows = []
    for spec in service_specs(config) if specs is None else specs:
        record = _read_record(config, spec.name)
        if record is None:
            state = "running (not started by ./places)" if spec.is_healthy() else "stopped"
        elif not process_alive(record.pid):
            state = "dead (stale record)"
        else:
            state = "running" if spec.is_healthy() else "not answering"
        rows.append({"name": spec.name, "state": state, "pid": record.pid if record else None,
                     "url": spec.url, "description": spec.description})
    return rows


def _selected(config: Config, names: typing.Iterable[str] | None) -> list[ServiceSpec]:
    specs = service_specs(config)
    if not names:
        return specs
    known = {spec.name: spec for spec in specs}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ServiceError(f"unknown service {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[name] for name in names]


def require_running(config: Config, name: str) -> None:
    """Raise a clear error when service `name` does not answer (for commands that need it)."""
    spec = {spec.name: spec for spec in service_specs(config)}[name]
    if not spec.is_healthy():
        raise ServiceError(f"{name} ({spec.description}) does not answer at {spec.url}: "
                           "start it with `./places services up`")
