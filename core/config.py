"""The one typed configuration object.

Defaults run on a laptop against the emulator. Each value can be overridden, later winning:
  1. a TOML file: ./places.toml if present, or --config FILE, or PLACES_CONFIG=FILE
  2. environment variables PLACES_<SECTION>__<FIELD>, e.g. PLACES_BEAM__WORKERS=2 (PLACES_STATE_DIR for
     the top-level state_dir)
  3. command-line flags: --set training.epochs=5 on any command, plus each command's own flags.

Secrets never live here: the blob storage connection string comes from AZURE_STORAGE_CONNECTION_STRING
(see core.storage), so a Config can be printed, logged and stored as MLflow parameters as it is.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import tomli

from core.errors import UserError

PROJECT_ROOT = Path(os.environ.get("PLACES_ROOT", Path(__file__).resolve().parent.parent))
EMULATOR_ACCOUNT = "devstoreaccount1"


@dataclass(frozen=True)
class Range:
    """The bounds of a number setting, checked when the config is read: typing.Annotated[int, Range(1)]."""
    minimum: float
    maximum: float | None = None
    exclusive_minimum: bool = False

    def admits(self, number: float) -> bool:
        above_minimum = number > self.minimum if self.exclusive_minimum else number >= self.minimum
        return above_minimum and (self.maximum is None or number <= self.maximum)

    def __str__(self) -> str:
        if self.maximum is None:
            return f"{'above' if self.exclusive_minimum else 'of at least'} {self.minimum:g}"
        return f"from {self.minimum:g} to {self.maximum:g}"


# The number settings' kinds: a setting whose 0 means something ("0: one per CPU core") is NonNegative.
Port = typing.Annotated[int, Range(1, 65535)]
Positive = typing.Annotated[int, Range(1)]
NonNegative = typing.Annotated[int, Range(0)]
Percent = typing.Annotated[int, Range(0, 100)]
Fraction = typing.Annotated[float, Range(0, 1)]

# The layouts that sample data is written in and ingestion reads from files (ingestion/layouts.py, by these names).
FileLayout = typing.Literal["folders", "places365-lists", "places365-small"]
# The Beam runners that core/beam.py has flags for (its _RUNNER_FLAGS, by these names).
BeamRunner = typing.Literal["local", "flink", "portable", "dataflow", "spark"]
BEAM_RUNNERS: tuple[str, ...] = typing.get_args(BeamRunner)


@dataclass(frozen=True)
class StorageConfig:
    """[storage]: the blob storage account and container; the credentials stay in the environment."""
    # The local emulator's port, at services.host like the other local services; used only while
    # AZURE_STORAGE_CONNECTION_STRING is unset (then blob storage is the emulator).
    emulator_port: Port = 10000
    container: str = "places"
    # Seconds before a blob request counts as failed, and how often it is retried; small numbers turn
    # "storage went away" into a clear error within a minute instead of a long hang.
    timeout_s: Positive = 30
    retries: NonNegative = 3


@dataclass(frozen=True)
class DataConfig:
    """[data]: which Places365 classes, where the raw images and the ingested TFRecords live, the eval split."""
    # "tutorial" (the notebook's 10 classes), "all" (the 365 Places365 categories) or names with commas.
    classes: str = "tutorial"
    # Where raw images and ingested TFRecords live; {container} is StorageConfig.container.
    raw_images_uri: str = f"azfs://{EMULATOR_ACCOUNT}/{{container}}/raw"
    examples_uri: str = f"azfs://{EMULATOR_ACCOUNT}/{{container}}/examples"
    # The layout `./places demo` writes its sample data in.
    layout: FileLayout = "folders"
    # Where TensorFlow Datasets prepared places365_small, for `./places ingest --input tfds:places365_small`:
    # a local or mounted folder at the same path on every Beam worker (TFDS does not read azfs://). Empty:
    # TFDS's default, $TFDS_DATA_DIR or ~/tensorflow_datasets.
    tfds_data_dir: str = ""
    # Percentage of images that land in the eval split, chosen by a hash of each source path.
    eval_percent: Percent = 20
    sample_images_per_class: Positive = 200
    sample_seed: int = 365


@dataclass(frozen=True)
class IngestConfig:
    """[ingest]: what an image must be to be ingested, and how the TFRecord shards are written."""
    # Images with more pixels are rejected unread (decompression bombs); larger ones are decoded at reduced size.
    max_image_pixels: Positive = 100_000_000
    max_image_bytes: Positive = 64 * 1024 * 1024
    jpeg_quality: typing.Annotated[int, Range(1, 100)] = 95
    # Most images per TFRecord shard; each worker's last shard of a split holds the rest.
    images_per_shard: Positive = 2000
    # Processes beside each Beam worker that read and convert images (ingestion/conversion_pool.py); 0: one per
    # CPU core.
    conversion_processes: NonNegative = 0


@dataclass(frozen=True)
class BeamConfig:
    """[beam]: the Beam runner that ingestion, StatisticsGen, the Evaluator and batch prediction run on."""
    # local: Beam's in-process runner (FnApiRunner); flink: the Flink cluster of `./places cluster up` (config.cluster);
    # portable: a Beam job service at job_endpoint (a Flink or Spark job server run elsewhere); dataflow: Google
    # Cloud Dataflow; spark: Beam's Spark runner (its master given in extra_args). See core/beam.py.
    runner: BeamRunner = "local"
    # Parallel workers for the local runner; 0 means one per CPU core.
    workers: NonNegative = 0
    job_endpoint: str = "localhost:8099"
    # portable, spark: where the Python SDK workers run (flink: always the cluster's worker pool). LOOPBACK: in
    # this process (a job server on this machine); EXTERNAL: a worker pool at environment_config (host:port);
    # DOCKER: Beam's SDK container.
    environment_type: typing.Literal["LOOPBACK", "EXTERNAL", "DOCKER", "PROCESS"] = "LOOPBACK"
    environment_config: str = ""
    # Extra Beam flags passed through unchanged, e.g. ["--region=europe-west1"].
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterConfig:
    """The Flink cluster `./places cluster up` starts for beam.runner = "flink" (see core/cluster.py)."""
    # Flink TaskManagers started on this machine, each a JVM of its own.
    taskmanagers: Positive = 2
    # Two slots each, so that when one TaskManager dies its job restarts on the slots the others have left.
    slots_per_taskmanager: Positive = 2
    # Slots a job uses; 0 means one per TaskManager.
    parallelism: NonNegative = 0
    # Flink's total process memory per JVM. SDK workers (Python) run outside it, in the worker pool.
    taskmanager_memory: str = "2048m"
    jobmanager_memory: str = "1024m"
    # Flink's REST API and web UI, and the JobManager's RPC port that TaskManagers register at.
    rest_port: Port = 8081
    jobmanager_rpc_port: Port = 6123
    # Beam's Flink job server: the job API that pipelines are submitted to, and its artifact staging service.
    job_port: Port = 8099
    artifact_port: Port = 8098
    # The SDK worker pool (Beam's EXTERNAL environment) the TaskManagers start Python workers from.
    worker_pool_port: Port = 50000
    # How often Flink restarts a failed job (a lost TaskManager) before it gives up, and the pause between.
    restart_attempts: NonNegative = 3
    restart_delay_s: NonNegative = 5
    # An existing Flink cluster's REST address (host:port): `cluster up` then starts only the job server and the
    # worker pool, and submits there. Empty: the local cluster that `cluster up` starts.
    flink_master: str = ""


@dataclass(frozen=True)
class ServicesConfig:
    """[services]: the address the local services (Azurite, MLflow, the Flink cluster) listen on."""
    host: str = "127.0.0.1"
    # Seconds to wait for a service to answer after starting it (MLflow's server takes a minute on a busy laptop).
    start_timeout_s: Positive = 240


@dataclass(frozen=True)
class MlflowConfig:
    """[mlflow]: the local tracking server, the experiment and the registered model."""
    port: Port = 5000
    experiment: str = "places365-scenes"
    # The MLflow Model Registry name the Pusher registers blessed models under, with the alias `champion`.
    model_name: str = "places365-scenes"
    # Blob container (3+ characters) that holds run artifacts and models, reached through the server's proxy.
    artifacts_container: str = "mlflow"


# The networks components/trainer/model.py builds (its MODELS, by these names): the tutorial's, and the default
# that must beat it.
ModelName = typing.Literal["seed_cnn", "better_cnn"]
MODEL_NAMES: tuple[str, ...] = typing.get_args(ModelName)


@dataclass(frozen=True)
class TrainingConfig:
    """The Trainer's settings. Every field reaches run_fn as it is (components/trainer/custom_config.py)."""
    # better_cnn (the default) or seed_cnn (exactly the tutorial's network); see components/trainer/model.py.
    model: ModelName = "better_cnn"
    # The tutorial's: 20 epochs of batches of 32, Adam at Keras' default learning rate.
    epochs: Positive = 20
    batch_size: Positive = 32
    learning_rate: typing.Annotated[float, Range(0, exclusive_minimum=True)] = 0.001
    # For shuffling, weight initialisation, dropout and augmentation.
    seed: int = 42
    # Memory for decoded images (196 KB each, 128 x 128 x 3 float32): where the train and eval images fit,
    # they stay in memory after the first epoch (about 10,000 images in the default); larger data sets, such as
    # the full Places365, stream from the shards every epoch in the same, flat, memory. 0: always stream.
    image_cache_mb: NonNegative = 2048
    # Worker processes that train together (tf.distribute.MultiWorkerMirroredStrategy), each with a TF_CONFIG
    # naming the others on free 127.0.0.1 ports; 1 trains in the Trainer's own process. A TF_CONFIG that an
    # outside launcher set (Kubeflow's TFJob, Azure ML, Vertex AI) is used as it is, and this setting is unused.
    workers: Positive = 1
    # CPU cores each worker is pinned to; 0: this machine's cores shared equally among the workers.
    worker_cores: NonNegative = 0
    # The first of `workers` consecutive ports the workers talk on; 0: free ports, chosen at each start.
    worker_port: typing.Annotated[int, Range(0, 65535)] = 0
    # How often a worker group that lost a worker (killed, out of memory) is started again, resuming from the
    # last finished epoch, before the Trainer fails.
    max_restarts: NonNegative = 2
    # auto: mixed_float16 on a GPU that computes float16 fast (compute capability 7.0 or newer), else float32.
    # The output layer computes in float32 whatever this says.
    precision: typing.Literal["auto", "float32", "mixed_float16"] = "auto"


@dataclass(frozen=True)
class EvaluationConfig:
    """[evaluation]: when the Evaluator blesses a model for the Pusher."""
    # Blessing needs overall eval accuracy at least this high...
    accuracy_floor: Fraction = 0.5
    # ...and no lower than the champion's minus this much (0: no regression at all).
    max_regression: Fraction = 0.0
    # The overall metric both checks apply to: "top1" (the most probable class is right) or "top5" (the right
    # class is among the 5 most probable; needs more than 5 classes).
    blessing_metric: typing.Literal["top1", "top5"] = "top1"


@dataclass(frozen=True)
class PipelineConfig:
    """[pipeline]: where TFX keeps its artifacts and its ML Metadata."""
    # Where TFX writes the pipeline's artifacts: any file system TFX reads (a local folder, one shared by the
    # cluster's machines such as a mounted blob container or NFS share, gs://, s3://, hdfs://). Empty:
    # <state_dir>/pipeline. The Trainer and the custom components read and write it through tfx.dsl.io.fileio.
    root: str = ""
    # ML Metadata, where TFX records runs and caches: empty for a sqlite file in the state folder, or
    # "mysql://USER@HOST:PORT/DATABASE" with the password in $MLMD_MYSQL_PASSWORD (never in this config).
    metadata: str = ""
    # When the data a run trains on has drifted from the champion's training data past the thresholds in
    # data_schema/schema.pbtxt: "warn" (the report's drift section says so and the run goes on) or "stop" (the
    # validation gate stops the run before training, for a person to look first).
    on_drift: typing.Literal["warn", "stop"] = "warn"
    # `./places retrain-if-needed` runs the pipeline once an incremental ingest has added at least this many images
    # since the champion's data (or their data drifted).
    retrain_min_new_images: Positive = 1000


@dataclass(frozen=True)
class ServingConfig:
    """[serving]: `./places serve`, `./places predict` and `./places batch-predict`."""
    # `./places serve` listens at this address and port. Any address but loopback needs an API key (below); to
    # reach the server from elsewhere without one, put a reverse proxy in front of it (README, "Serving").
    host: str = "127.0.0.1"
    port: Port = 8080
    # The environment variable that holds the API key clients send as `Authorization: Bearer <key>` (the key
    # itself is a secret and never lives here). Once it is set, every route but the health checks (/ping,
    # /v2/health/*) needs it, on any address.
    api_key_env: str = "PLACES_API_KEY"
    # A PEM certificate (chain) and its private key: both set, the server speaks HTTPS only.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # Larger request bodies are refused (413) before they are read. One tutorial-format image is about 1 MB of
    # JSON, so this admits about 15 per request; parsing takes a few times the body's size in memory.
    max_request_bytes: Positive = 16 * 1024 * 1024
    # How many of the most probable classes `./places predict` shows per image.
    top_k: Positive = 3
    # Images per model call in `./places batch-predict`.
    batch_size: Positive = 32
    # Served by alias (NAME@champion, the default), `./places serve` asks the registry this often, in seconds,
    # whether the alias has moved; a new version loads beside the old, which answers until the switch. 0: never.
    reload_s: typing.Annotated[float, Range(0)] = 30.0
    # `./places serve` joins the requests that arrive while the model is busy into model calls of at most this many
    # images (serving/batcher.py); a request of more images is answered in calls of this size. 0: no batching,
    # each request calls the model in its own thread.
    max_batch_size: NonNegative = 16
    # How long a batch may wait for more requests before its model call starts, while the model is busy with another
    # batch or other requests are being read and checked; a lone request never waits. 0: never waits.
    batch_timeout_ms: typing.Annotated[float, Range(0)] = 1.0
    # Batches the model may run at once, each on its share of the CPU cores (TensorFlow's intra-op threads); 0: one
    # per core. On CPUs, one call per core keeps every core busy, where one call on all of them leaves them waiting
    # on each other between ops.
    model_calls_at_once: NonNegative = 0
    # A blob (or folder) prefix where `./places serve` keeps a sample of the images it is sent and what it answered,
    # as TFRecords of tf.Examples, for `./places monitor` to compare with the training data. Empty: no log.
    request_log: str = ""
    # The share of the images sent that are logged (100: every one; the choice is by count, not at random).
    request_log_percent: Percent = 10
    # The log is written off the request path, one GZIP TFRecord file per this many images, or per
    # request_log_flush_s seconds once any is waiting (and at shutdown): fewer, larger files are cheaper to list
    # and read, more frequent ones lose less in a crash.
    request_log_images_per_file: Positive = 1000
    request_log_flush_s: typing.Annotated[float, Range(0, exclusive_minimum=True)] = 60.0
    # Images waiting to be measured and written, at most: past it (the log slower than the requests) sampled images
    # are dropped and counted (places_serving_request_log_dropped_total), never waited for. Each waiting image holds
    # what the client sent (a tutorial pixel image 196 KB in memory, an encoded one its file's size), so this bounds
    # the log's memory too.
    request_log_queue: Positive = 1000


@dataclass(frozen=True)
class Config:
    # Everything the project writes locally: emulator data, logs, PIDs, pipeline artifacts, reports.
    state_dir: Path = PROJECT_ROOT / ".state"
    storage: StorageConfig = field(default_factory=StorageConfig)
    data: DataConfig = field(default_factory=DataConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    beam: BeamConfig = field(default_factory=BeamConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    services: ServicesConfig = field(default_factory=ServicesConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)

    @property
    def mlflow_uri(self) -> str:
        return f"http://{self.services.host}:{self.mlflow.port}"

    def uri(self, template: str) -> str:
        """A configured URI with its {container} filled in."""
        return template.format(container=self.storage.container)

    def to_dict(self) -> dict:
        return _to_plain(self)


class ConfigError(UserError):
    """A setting, config file or `--set` that cannot be used; the message names it and what it takes."""


def load_config(config_file: str | Path | None = None, overrides: typing.Iterable[str] = (),
                environ: typing.Mapping[str, str] | None = None) -> Config:
    """Defaults < TOML file < PLACES_* environment < `section.field=value` overrides."""
    environ = os.environ if environ is None else environ
    values: dict = {}
    path = config_file or environ.get("PLACES_CONFIG")
    if path is None and (PROJECT_ROOT / "places.toml").exists():
        path = PROJECT_ROOT / "places.toml"
    if path is not None:
        path = Path(path)
        try:
            values = tomli.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomli.TOMLDecodeError as error:
            raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
        values = flatten(values)
    top_level = {f.name for f in dataclasses.fields(Config)}
    for name, value in environ.items():
        dotted = name[len("PLACES_"):].lower().replace("__", ".")
        # PLACES_ROOT, PLACES_CONFIG and PLACES_PYTHON steer the launcher, not the Config.
        if name.startswith("PLACES_") and dotted.split(".")[0] in top_level:
            values[dotted] = value
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set takes section.field=value, got '{item}'")
        key, value = item.split("=", 1)
        values[key.strip()] = value
    return apply(Config(), values)


def apply(config: Config, values: typing.Mapping[str, object]) -> Config:
    """A copy of `config` with dotted keys ("training.epochs") set; values may be strings, as from flags."""
    for dotted, value in values.items():
        config = _set(config, dotted.split("."), value, dotted)
    return config


def with_flags(config: Config, flags: typing.Mapping[str, object]) -> Config:
    """`apply` for command-line flags: a flag left at None keeps the configured value."""
    return apply(config, {key: value for key, value in flags.items() if value is not None})


def _set(obj, path: list[str], value, dotted: str):
    names = {f.name: f for f in dataclasses.fields(obj)}
    if path[0] not in names:
        raise ConfigError(f"unknown setting '{dotted}'; known here: {', '.join(sorted(names))}")
    current = getattr(obj, path[0])
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"unknown setting '{dotted}': '{path[0]}' has no fields")
        return dataclasses.replace(obj, **{path[0]: _set(current, path[1:], value, dotted)})
    if dataclasses.is_dataclass(current):
        raise ConfigError(f"setting '{dotted}' is a section; set one of its fields, e.g. {dotted}.<field>")
    hint = typing.get_type_hints(type(obj), include_extras=True)[path[0]]
    return dataclasses.replace(obj, **{path[0]: _coerce(value, hint, dotted)})


def _coerce(value, hint, dotted: str):
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        number_type, *bounds = typing.get_args(hint)
        number = _coerce(value, number_type, dotted)
        for bound in bounds:
            if isinstance(bound, Range) and not bound.admits(number):
                raise ConfigError(f"setting '{dotted}' takes {_KIND_OF[number_type]} {bound}, got '{value}'")
        return number
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"setting '{dotted}' takes one of {', '.join(typing.get_args(hint))}, got '{value}'")
        return value
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(text)
            return text in ("1", "true", "yes", "on")
        if hint in (int, float, str):
            return hint(value)
        if hint is Path:
            return Path(value).expanduser()
        if origin is tuple:
            if isinstance(value, str):
                value = [part.strip() for part in value.split(",") if part.strip()]
            return tuple(str(item) for item in value)
        if origin in (typing.Union, types.UnionType):
            return None if value in (None, "", "none") else _coerce(value, typing.get_args(hint)[0], dotted)
    except (TypeError, ValueError):
        raise ConfigError(f"setting '{dotted}' needs {_KIND_OF.get(hint, hint)}, got '{value}'") from None
    raise ConfigError(f"setting '{dotted}' has a type this loader does not know: {hint}")


_KIND_OF = {int: "a whole number", float: "a number", bool: "true or false", str: "text", Path: "a path"}


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} as {"a.b": 1}: the dotted names that --set, env and MLflow params use."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _to_plain(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value
