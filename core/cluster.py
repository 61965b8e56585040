"""The Flink cluster that `beam.runner = "flink"` sends Beam jobs to: `./places cluster up|down|status`.

`up` installs what it needs on first use (into .cluster/, ignored by git), then starts, all bound to 127.0.0.1:
  - a standalone Flink cluster: one JobManager (REST API and web UI at cluster.rest_port) and
    cluster.taskmanagers TaskManagers, each a JVM of its own;
  - one SDK worker pool (core/worker_pool.py): Beam's EXTERNAL environment, from which each TaskManager starts
    its Python SDK worker, a process running this project's virtual environment. Beam names one pool address per
    job, so on one machine one pool serves every TaskManager; on Kubernetes each TaskManager pod has its own as
    a sidecar at localhost (README, "Runners");
  - Beam's Flink job server (core/flink_job_server/), where pipelines are submitted as Flink jobs.
With cluster.flink_master set, `up` starts only the job server and the worker pool, for that cluster.

Each process is a local service (core.services): a record with its PID, so `down` stops exactly what `up` started,
and a log in <state>/logs/.

Versions: Maven Central serves this project's machines no Beam Flink job server jar, and the newest Beam whose
Flink runner and job service it does serve together is 2.62.0, whose newest Flink is 1.19. So the job server is
built here from those artifacts (pom.xml) and the cluster runs Flink 1.19.3, from PyPI: the jars of the sdist
apache-flink-libraries and the scripts and configuration of the wheel apache-flink, never installed as packages
(apache-flink pins apache-beam<2.49). The Python SDK (2.74) submits to that job server through Beam's job API.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import typing
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from core import services
from core.config import PROJECT_ROOT, Config
from core.errors import UserError
from core.storage import CONNECTION_STRING_ENV

FLINK_VERSION = "1.19.3"
BEAM_JOB_SERVER_VERSION = "2.62.0"
INSTALL_DIR = PROJECT_ROOT / ".cluster"
JOB_SERVER_SOURCE = Path(__file__).resolve().parent / "flink_job_server"

JOBMANAGER = "flink-jobmanager"
WORKER_POOL = "sdk-worker-pool"
JOB_SERVER = "beam-job-server"
# The wheel's config.yaml sets the JVM flags that Flink needs on Java 17 (module opens); it is read, not copied.
_WHEEL_CONFIG = "config.yaml"


class ClusterError(UserError):
    """The cluster cannot be installed, started or reached; the message says what to do."""


# --- install ------------------------------------------------------------------------------------------
def flink_home() -> Path:
    return INSTALL_DIR / f"flink-{FLINK_VERSION}"


def job_server_jar() -> Path:
    return INSTALL_DIR / f"beam-flink-job-server-{BEAM_JOB_SERVER_VERSION}-{_job_server_source_hash()}.jar"


@functools.lru_cache(maxsize=1)
def _job_server_source_hash() -> str:
    """Changes when the job server's pom or Java source does, so an edited one is rebuilt."""
    digest = hashlib.sha256()
    for path in sorted(JOB_SERVER_SOURCE.rglob("*")):
        if path.is_file() and "target" not in path.relative_to(JOB_SERVER_SOURCE).parts:
            digest.update(path.relative_to(JOB_SERVER_SOURCE).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def installed() -> bool:
    return (flink_home() / ".installed").exists() and job_server_jar().exists()


def install(report: typing.Callable[[str], None] = print) -> None:
    """Flink and the job server jar into .cluster/, once; a second call returns at once."""
    for tool, why in (("java", "Flink and Beam's job server run on Java 11 or newer"),
                      ("mvn", "it builds Beam's Flink job server from Maven Central")):
        if shutil.which(tool) is None:
            raise ClusterError(f"`{tool}` was not found: {why}. Install it (e.g. `apt-get install "
                               f"{'openjdk-17-jdk-headless' if tool == 'java' else 'maven'}`), then run "
                               "`./places cluster up` again")
    INSTALL_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if not (flink_home() / ".installed").exists():
        report(f"installing Flink {FLINK_VERSION} into {flink_home()} (once; about 230 MB from PyPI)")
        _install_flink()
    if not job_server_jar().exists():
        report(f"building Beam {BEAM_JOB_SERVER_VERSION}'s Flink job server into {job_server_jar().name} "
               "(once; about 160 MB from Maven Central)")
        _build_job_server()
    report(f"cluster software installed in {time.monotonic() - started:.0f} s")


def _run_installer(command: list[str], artifact: str, log: Path, fix: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as output:
        output.write(f"\n$ {' '.join(command)}\n".encode())
        output.flush()
        finished = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if finished.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-8:])
        raise ClusterError(f"could not get {artifact} (exit code {finished.returncode}); {fix}. "
                           f"Then run `./places cluster up` again. The end of {log}:\n{tail}")


def _install_flink() -> None:
    downloads = INSTALL_DIR / "downloads"
    log = INSTALL_DIR / "install.log"
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--dest", str(downloads)]
    libraries = f"apache-flink-libraries=={FLINK_VERSION}"
    wheel = f"apache-flink=={FLINK_VERSION}"
    fix = "check that PyPI is reachable and that the disk has 1 GB free"
    _run_installer([*pip, "--no-binary", ":all:", libraries], f"{libraries} (Flink's jars) from PyPI", log, fix)
    _run_installer([*pip, "--only-binary", ":all:", "--python-version", "3.10", "--platform", "manylinux2014_x86_64",
                    wheel], f"{wheel} (Flink's scripts) from PyPI", log, fix)
    [sdist] = downloads.glob(f"apache*flink*libraries-{FLINK_VERSION}.tar.gz")
    [wheel_file] = downloads.glob(f"apache_flink-{FLINK_VERSION}-*.whl")
    # Unpacked beside the target and renamed into place, so an interrupted install never looks installed.
    staging = Path(tempfile.mkdtemp(prefix="flink-", dir=INSTALL_DIR))
    try:
        with tarfile.open(sdist) as archive:
            archive.extractall(staging / "sdist")
        [deps] = (staging / "sdist").glob("*/deps")
        home = staging / "home"
        home.mkdir()
        for folder in ("lib", "opt", "plugins"):
            shutil.move(str(deps / folder), home / folder)
        with zipfile.ZipFile(wheel_file) as archive:
            for member in archive.namelist():
                if member.startswith(("pyflink/bin/", "pyflink/conf/")) and not member.endswith("/"):
                    target = home / member[len("pyflink/"):]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.read(member))
        shutil.copy(deps / "bin" / "bash-java-utils.jar", home / "bin")
        for script in (home / "bin").iterdir():
            script.chmod(0o755)
        (home / ".installed").write_text(FLINK_VERSION)
        shutil.rmtree(flink_home(), ignore_errors=True)
        os.replace(home, flink_home())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(downloads, ignore_errors=True)


def _build_job_server() -> None:
    build_dir = INSTALL_DIR / "job-server-build"
    _run_installer(["mvn", "-q", "-B", "-f", str(JOB_SERVER_SOURCE / "pom.xml"), f"-Dplaces.build.dir={build_dir}",
                    "package"],
                   f"org.apache.beam:beam-runners-flink-1.19:{BEAM_JOB_SERVER_VERSION} and its dependencies "
                   "from Maven Central", INSTALL_DIR / "install.log",
                   "check that Maven Central is reachable (`mvn` uses ~/.m2/settings.xml for mirrors and proxies)")
    for old in INSTALL_DIR.glob("beam-flink-job-server-*.jar"):
        old.unlink()
    os.replace(build_dir / "beam-flink-job-server.jar", job_server_jar())
    shutil.rmtree(build_dir, ignore_errors=True)


# --- the processes ----------------------------------------------------------------------------------------
def rest_address(config: Config) -> str:
    return config.cluster.flink_master or f"{config.services.host}:{config.cluster.rest_port}"


def web_ui(config: Config) -> str:
    return f"http://{rest_address(config)}"


def rest(config: Config, path: str, timeout: float = 3.0) -> typing.Any:
    """The JSON answer of Flink's REST API at `path`; ClusterError when it does not answer."""
    try:
        with urllib.request.urlopen(f"{web_ui(config)}{path}", timeout=timeout) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, ValueError) as error:
        raise ClusterError(f"Flink's REST API does not answer at {web_ui(config)} ({error}): start the cluster with "
                           "`./places cluster up`") from None


def _rest_or_none(config: Config, path: str) -> typing.Any:
    try:
        return rest(config, path, timeout=2.0)
    except ClusterError:
        return None


def _rest_until(config: Config, path: str, accepted: typing.Callable[[typing.Any], bool], seconds: float) -> bool:
    """Asks Flink's REST API at `path` four times a second until `accepted(answer)`; False after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer = _rest_or_none(config, path)
        if answer is not None and accepted(answer):
            return True
        time.sleep(0.25)
    return False


def taskmanager_ids(config: Config) -> list[str]:
    """The TaskManagers registered with the JobManager whose slots it counts."""
    answer = _rest_or_none(config, "/taskmanagers")
    return sorted(item["id"] for item in answer["taskmanagers"] if item.get("slotsNumber")) if answer else []


_TASKMANAGER_PREFIX = "flink-taskmanager-"


def _taskmanager_name(index: int) -> str:
    return f"{_TASKMANAGER_PREFIX}{index}"


# The JVMs (Flink's JobManager and TaskManagers, the job server) never touch blob storage, only the SDK workers do:
# they start without the connection string that `./places` exports, so no JVM can show or log it.
_WITHOUT_STORAGE_SECRET: dict[str, None] = {CONNECTION_STRING_ENV: None}


def _flink_env(config: Config) -> dict[str, str | None]:
    state = _state(config)
    return {"FLINK_CONF_DIR": str(state / "conf"), "FLINK_LOG_DIR": str(config.state_dir / "logs" / "flink"),
            "FLINK_PID_DIR": str(state / "pids"), **_WITHOUT_STORAGE_SECRET}


def _state(config: Config) -> Path:
    return config.state_dir / "cluster"


def _job_server_answers(config: Config) -> bool:
    import grpc
    from apache_beam.portability.api import beam_job_api_pb2, beam_job_api_pb2_grpc

    channel = grpc.insecure_channel(f"{config.services.host}:{config.cluster.job_port}")
    try:
        beam_job_api_pb2_grpc.JobServiceStub(channel).GetJobs(beam_job_api_pb2.GetJobsRequest(), timeout=2)
        return True
    except grpc.RpcError:
        return False
    finally:
        channel.close()


def _specs(config: Config) -> list[services.ServiceSpec]:
    """Every process of the cluster, in the order `up` starts them."""
    cluster, host = config.cluster, config.services.host
    home = flink_home()
    specs = []
    if not cluster.flink_master:
        specs.append(services.ServiceSpec(
            name=JOBMANAGER, description=f"Flink {FLINK_VERSION} JobManager, REST API and web UI",
            port=cluster.rest_port, other_ports=(cluster.jobmanager_rpc_port,),
            command=[str(home / "bin" / "jobmanager.sh"), "start-foreground"], url=web_ui(config),
            is_healthy=lambda: bool((_rest_or_none(config, "/config") or {}).get("flink-version")),
            env=_flink_env(config), port_setting="cluster.rest_port and cluster.jobmanager_rpc_port",
            prepare=lambda: _write_flink_config(config)))
        for index in range(1, cluster.taskmanagers + 1):
            resource_id = _taskmanager_name(index)
            specs.append(services.ServiceSpec(
                name=resource_id, description=f"Flink TaskManager, {cluster.slots_per_taskmanager} slots",
                port=None, command=[str(home / "bin" / "taskmanager.sh"), "start-foreground",
                                    f"-Dtaskmanager.resource-id={resource_id}"],
                url=f"{web_ui(config)}/#/task-manager/{resource_id}/metrics",
                # Healthy once registered with the JobManager, so `up` returns with every slot usable.
                is_healthy=lambda resource_id=resource_id: resource_id in taskmanager_ids(config),
                env=_flink_env(config)))
    specs.append(services.ServiceSpec(
        name=WORKER_POOL, description="Beam SDK worker pool (Python workers for the TaskManagers)",
        port=cluster.worker_pool_port,
        command=[sys.executable, "-m", "core.worker_pool", "--host", host, "--port", str(cluster.worker_pool_port)],
        url=f"{host}:{cluster.worker_pool_port}",
        is_healthy=lambda: services.port_in_use(host, cluster.worker_pool_port),
        # The workers run `python` from PATH: this project's virtual environment, with its code importable.
        env=_worker_env(config), port_setting="cluster.worker_pool_port"))
    specs.append(services.ServiceSpec(
        name=JOB_SERVER, description=f"Beam {BEAM_JOB_SERVER_VERSION} Flink job server (Beam's job API)",
        port=cluster.job_port, other_ports=(cluster.artifact_port,),
        command=["java", "-jar", str(job_server_jar()), f"--flink-master={rest_address(config)}",
                 f"--job-host={host}", f"--job-port={cluster.job_port}", f"--artifact-port={cluster.artifact_port}",
                 # No Java expansion service: this project's pipelines are Python only.
                 "--expansion-port=-1", f"--artifacts-dir={_state(config) / 'artifacts'}"],
        url=f"{host}:{cluster.job_port}", is_healthy=lambda: _job_server_answers(config), env=_WITHOUT_STORAGE_SECRET,
        port_setting="cluster.job_port and cluster.artifact_port"))
    return specs


def _worker_env(config: Config) -> dict[str, str]:
    from core import storage

    return {"PATH": os.pathsep.join(filter(None, [str(Path(sys.executable).parent), os.environ.get("PATH")])),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
            "PLACES_ROOT": str(PROJECT_ROOT), storage.CONNECTION_STRING_ENV: storage.connection_string(config)}


def _write_flink_config(config: Config) -> None:
    """<state>/cluster/conf: Flink's configuration for this cluster, every server on the configured host."""
    import yaml

    cluster, host = config.cluster, config.services.host
    wheel_config = yaml.safe_load((flink_home() / "conf" / _WHEEL_CONFIG).read_text())
    settings = {
        "env": {"java": {"opts": {"all": wheel_config["env"]["java"]["opts"]["all"]}}},
        "jobmanager": {"bind-host": host, "rpc": {"address": host, "port": cluster.jobmanager_rpc_port},
                       "memory": {"process": {"size": cluster.jobmanager_memory}},
                       "execution": {"failover-strategy": "region"}},
        "taskmanager": {"bind-host": host, "host": host, "numberOfTaskSlots": cluster.slots_per_taskmanager,
                        "memory": {"process": {"size": cluster.taskmanager_memory}},
                        # Each blocking result partition of a batch job asks for this many network buffers (default
                        # 512); TFDV's and TFMA's jobs have dozens of stages, which a small TaskManager cannot serve.
                        "network": {"sort-shuffle": {"min-buffers": 64}}},
        "rest": {"address": host, "bind-address": host, "port": cluster.rest_port},
        "parallelism": {"default": cluster.parallelism or cluster.taskmanagers},
        "restart-strategy": {"type": "fixed-delay", "fixed-delay": {
            "attempts": cluster.restart_attempts, "delay": f"{cluster.restart_delay_s} s"}},
        # A job's tasks go to every TaskManager, not to the first one's slots until it is full.
        "cluster": {"evenly-spread-out-slots": True},
        # A TaskManager that died is noticed within seconds, not Flink's default 50 s.
        "heartbeat": {"interval": 2000, "timeout": 10000},
    }
    conf = _state(config) / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "config.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    for name in ("log4j-console.properties", "logback-console.xml"):
        shutil.copy(flink_home() / "conf" / name, conf / name)
    (_state(config) / "pids").mkdir(exist_ok=True)


def up(config: Config, report: typing.Callable[[str], None] = print) -> None:
    """Install if needed, start every process not yet running, and wait until all answer."""
    if not installed():
        install(report)
    from concurrent.futures import ThreadPoolExecutor

    started = time.monotonic()
    specs = _specs(config)
    # Two groups, each started together: the JobManager and the worker pool (whose imports take a while), then
    # what needs the JobManager. Each JVM takes seconds to start.
    first = (JOBMANAGER, WORKER_POOL)
    started_now: list[str] = []
    for group in ([spec for spec in specs if spec.name in first], [spec for spec in specs if spec.name not in first]):
        if not group:
            continue
        with ThreadPoolExecutor(max_workers=len(group)) as pool:
            futures = [pool.submit(services.start, config, spec) for spec in group]
        failures = [future.exception() for future in futures if future.exception() is not None]
        started_now += [spec.name for spec, future in zip(group, futures)
                        if future.exception() is None and future.result()[1]]
        if failures:
            # What this call started goes again: a cluster is either up or left as it was.
            for name in reversed(started_now):
                services.stop(config, name)
            raise failures[0]
        for spec, future in zip(group, futures):
            record, new = future.result()
            if record is None:
                report(f"{spec.name:<20} running  {spec.url}   (not started by ./places, left as is)")
            else:
                report(f"{spec.name:<20} {'started' if new else 'running'}  pid {record.pid:<7} {spec.url}")
    if not config.cluster.flink_master:
        _wait_for_slots(config)
    report(f"cluster up in {time.monotonic() - started:.1f} s; web UI {web_ui(config)}")


def _wait_for_slots(config: Config) -> None:
    """Until the JobManager counts every TaskManager's slots (a TaskManager reports them just after registering)."""
    expected = config.cluster.taskmanagers * config.cluster.slots_per_taskmanager
    if _rest_until(config, "/overview", lambda overview: overview.get("slots-total", 0) >= expected,
                   config.services.start_timeout_s):
        return
    raise ClusterError(f"the JobManager at {web_ui(config)} counts fewer than the {expected} slots of "
                       f"{config.cluster.taskmanagers} TaskManagers after {config.services.start_timeout_s} s; "
                       f"see {config.state_dir / 'logs'}/flink-taskmanager-*.log")


def down(config: Config, report: typing.Callable[[str], None] = print) -> None:
    """Stop the processes `up` started, job server first, JobManager last, and nothing else."""
    recorded = services.recorded(config)
    taskmanagers = sorted(name for name in recorded if name.startswith(_TASKMANAGER_PREFIX))
    for name in [JOB_SERVER, WORKER_POOL, *reversed(taskmanagers), JOBMANAGER]:
        pid = services.recorded_pid(config, name)
        if services.stop(config, name):
            report(f"{name:<20} stopped  (pid {pid})")


def status(config: Config) -> dict:
    """What `cluster status` shows: processes, TaskManagers, slots, and the jobs Flink knows."""
    overview = _rest_or_none(config, "/overview")
    return {"web_ui": web_ui(config), "answers": overview is not None, "overview": overview or {},
            "taskmanagers": taskmanager_ids(config), "processes": services.status(config, _specs(config)),
            "jobs": jobs(config) if overview is not None else []}


def require_running(config: Config) -> None:
    """ClusterError naming `./places cluster up` when the job server or Flink does not answer."""
    if not _job_server_answers(config):
        raise ClusterError(f"Beam's Flink job server does not answer at {config.services.host}:"
                           f"{config.cluster.job_port}, so nothing can run with beam.runner = \"flink\": start the "
                           "cluster with `./places cluster up`")
    rest(config, "/overview")


def jobs(config: Config) -> list[dict]:
    """Flink's jobs, newest first: jid, name, state, start-time, duration."""
    return sorted(rest(config, "/jobs/overview")["jobs"], key=lambda job: -job["start-time"])


def job_failed(config: Config, what: str, failure: Exception) -> str:
    """The first sentences of the error for `what` failing on the cluster: Flink's cause, and where to look."""
    cause = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
    return (f"{what} failed on the Flink cluster: {cause[:500]}. Flink's web UI ({web_ui(config)}) shows its "
            "exceptions, `./places cluster status` whether every TaskManager is up (`./places cluster up` restarts "
            "missing ones)")


_USER_COUNTER = "beam:metric:user:sum_int64:v1"
_ENDED_STATES = frozenset({"FINISHED", "FAILED", "CANCELED", "SUSPENDED"})


def job_counters(config: Config, job_name: str, namespace: str, *, final: bool = False) -> dict[str, int] | None:
    """The Beam counters of `namespace` that Flink has collected so far for the job named `job_name` (summed over
    its tasks), or None while Flink does not list that job. Flink gathers them from the TaskManagers' heartbeats.

    With `final`, for a job that has just ended, the answer waits (a few seconds at most) until Flink's REST API
    answers from the ended job: it keeps a job's execution graph for `web.refresh-interval`, so a read just after
    the end can still show the counters of a heartbeat before the last tasks reported theirs.
    """
    listed = _rest_or_none(config, "/jobs/overview")
    matching = [job for job in (listed or {}).get("jobs", []) if job["name"] == job_name]
    if not matching:
        return None
    jid = max(matching, key=lambda job: job["start-time"])["jid"]
    if final:
        # /jobs/{jid} is answered from the same cached graph as the accumulators: once it says the job ended, they
        # are the job's last ones. A cluster that caches the graph longer leaves the latest figures there are.
        _rest_until(config, f"/jobs/{jid}", lambda details: details.get("state") in _ENDED_STATES, 10.0)
    answer = _rest_or_none(config, f"/jobs/{jid}/accumulators") or {}
    counters: dict[str, int] = {}
    for accumulator in answer.get("user-task-accumulators", []):
        if accumulator.get("type") != "MetricsAccumulator":
            continue
        for info in json.loads(accumulator["value"]).get("metrics", {}).get("attempted", []):
            labels = info.get("labels", {})
            if info.get("urn") == _USER_COUNTER and labels.get("NAMESPACE") == namespace:
                counters[labels["NAME"]] = counters.get(labels["NAME"], 0) + _varint(info["payload"])
    return counters


def _varint(payload: str) -> int:
    """A Beam sum_int64 payload: base64 of a signed 64-bit varint."""
    import base64

    value = shift = 0
    for byte in base64.b64decode(payload):
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return value - (1 << 64) if value >= 1 << 63 else value
