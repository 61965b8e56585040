"""`./places`: the one command line for the whole project. `./places COMMAND --help` explains each command.

The top layer: it drives every package below it, and none of them imports it."""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

import click

from core import services as services_module
from core import storage as storage_module
from core.config import BEAM_RUNNERS, MODEL_NAMES, Config, load_config, with_flags
from core.console import quiet_libraries, table
from core.errors import UserError
from ingestion.layouts import AUTO, FILE_LAYOUTS, FOLDERS, LAYOUTS


class PlacesGroup(click.Group):
    """Prints what the user must fix (a UserError, whose message names the thing and the fix) as one line and
    exits with code 1. Any other exception is a bug: it propagates, and Python prints its traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as error:
            click.echo(f"\nplaces: error: {storage_module.redact(str(error))}", err=True)
            sys.exit(1)


_RUNNER_HELP = ("Beam runner: local runs in this process, flink on the cluster of `./places cluster up`; the others "
                "are in the README, 'Runners' [default: beam.runner].")


def config_of(ctx: click.Context) -> Config:
    return ctx.find_root().obj


@click.group(cls=PlacesGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TOML file with settings (default: ./places.toml if present, or $PLACES_CONFIG).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.FIELD=VALUE",
              help="Override one setting, e.g. --set beam.workers=2. Repeatable.")
@click.pass_context
def main(ctx: click.Context, config_file: str | None, overrides: tuple[str, ...]) -> None:
    """Scene-image classification the TFX way: Places365 images in Azure Blob Storage become
    validated TFRecords, a trained and evaluated model in MLflow, and a served endpoint.

    Start with `./places demo`; run the tests with `./places test`.
    """
    quiet_libraries()
    storage_module.install_log_redaction()
    ctx.obj = load_config(config_file, overrides)
    storage_module.export_connection_string(ctx.obj)


# --- services -------------------------------------------------------------------------------------------
@main.group()
def services() -> None:
    """Start, stop and show the local services: Azurite (blob storage emulator) and MLflow (tracking server)."""


@services.command("up")
@click.argument("names", nargs=-1)
@click.pass_context
def services_up(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Start the local services (all, or the NAMES given) on 127.0.0.1 and wait until they answer."""
    services_module.up(config_of(ctx), names)


@services.command("down")
@click.argument("names", nargs=-1)
@click.pass_context
def services_down(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Stop the services that `services up` started (exactly those processes)."""
    services_module.down(config_of(ctx), names)


@services.command("status")
@click.pass_context
def services_status(ctx: click.Context) -> None:
    """Show whether each local service runs and where it answers."""
    click.echo(table(services_module.status(config_of(ctx)), ["name", "state", "pid", "url", "description"]))


def _ensure_storage(config: Config) -> None:
    """Start the emulator when blob storage is the emulator; a real account needs nothing started."""
    if storage_module.uses_emulator():
        services_module.up(config, ["azurite"], report=lambda line: click.echo(line, err=True))


def _ensure_services(config: Config) -> None:
    """Blob storage as above, and the MLflow tracking server."""
    _ensure_storage(config)
    services_module.up(config, ["mlflow"], report=lambda line: click.echo(line, err=True))


# --- cluster ------------------------------------------------------------------------------------------------
@main.group()
def cluster() -> None:
    """Start, stop and show the local Apache Flink cluster that `--runner flink` sends Beam jobs to."""


@cluster.command("up")
@click.pass_context
def cluster_up(ctx: click.Context) -> None:
    """Install Flink and Beam's job server on first use, then start the JobManager, cluster.taskmanagers
    TaskManagers, the SDK worker pool and the job server on 127.0.0.1, and wait until every TaskManager is registered.
    """
    from core import cluster as cluster_module

    cluster_module.up(config_of(ctx), report=click.echo)


@cluster.command("down")
@click.pass_context
def cluster_down(ctx: click.Context) -> None:
    """Stop exactly the processes `cluster up` started."""
    from core import cluster as cluster_module

    cluster_module.down(config_of(ctx), report=click.echo)


@cluster.command("status")
@click.pass_context
def cluster_status(ctx: click.Context) -> None:
    """Show the web UI, the processes, TaskManagers, free slots and Flink's jobs."""
    from core import cluster as cluster_module

    state = cluster_module.status(config_of(ctx))
    overview = state["overview"]
    if state["answers"]:
        click.echo(f"Flink {overview.get('flink-version')} at {state['web_ui']}: "
                   f"{overview['taskmanagers']} TaskManagers, "
                   f"{overview['slots-available']} of {overview['slots-total']} slots free, "
                   f"{overview['jobs-running']} jobs running")
    else:
        click.echo(f"Flink does not answer at {state['web_ui']}: start it with `./places cluster up`")
    click.echo("\n" + table(state["processes"], ["name", "state", "pid", "url"]))
    if state["jobs"]:
        rows = [{"job": job["name"], "state": job["state"], "id": job["jid"],
                 "seconds": f"{job['duration'] / 1000:.1f}"} for job in state["jobs"][:10]]
        click.echo("\n" + table(rows, ["job", "state", "seconds", "id"]))


# --- data -----------------------------------------------------------------------------------------------
@main.command("sample-data")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write the images into (created if missing).")
@click.option("--per-class", type=click.IntRange(min=1), default=None,
              help="Images per class [default: data.sample_images_per_class].")
@click.option("--classes", default=None,
              help="'tutorial' (the 10 tutorial classes), 'all' (365) or names separated by commas "
                   "[default: data.classes].")
@click.option("--layout", type=click.Choice(FILE_LAYOUTS), default=FOLDERS,
              show_default=True, help="Folder layout to write (see README, 'Input layouts').")
@click.option("--seed", type=int, default=None, help="Random seed; the same seed gives the same files "
                                                     "[default: data.sample_seed].")
@click.pass_context
def sample_data(ctx, out_dir, per_class, classes, layout, seed) -> None:
    """Generate an offline stand-in for Places365: scene-like JPEG/PNG images whose classes a CNN can learn."""
    from data_schema import resolve_classes
    from sample_data import generate

    config = config_of(ctx)
    try:
        class_keys = resolve_classes(classes or config.data.classes)
    except ValueError as error:
        raise UserError(str(error)) from None
    started = time.monotonic()
    per_class = per_class if per_class is not None else config.data.sample_images_per_class
    written = generate(out_dir, class_keys, per_class, layout, config.data.sample_seed if seed is None else seed)
    click.echo(f"wrote {written} images of {len(class_keys)} classes in the {layout} layout to {out_dir} "
               f"({time.monotonic() - started:.1f} s)")


@main.command()
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("target")
@click.option("--workers", type=int, default=8, show_default=True, help="Parallel uploads.")
@click.option("--mirror", is_flag=True, help="Also delete blobs under TARGET that SOURCE does not have.")
@click.pass_context
def upload(ctx, source: Path, target: str, workers: int, mirror: bool) -> None:
    """Upload the folder SOURCE to blob storage at TARGET (azfs://account/container/path).

    Blobs already there with the same size and MD5 are skipped, so a broken upload can simply be rerun.
    """
    from ingestion.upload import upload as upload_folder

    config = config_of(ctx)
    if storage_module.is_blob_uri(target):
        _ensure_storage(config)
    summary = upload_folder(storage_module.Storage.from_config(config), source, target, workers, mirror)
    deleted = f", deleted {summary.deleted} not in {source}" if mirror else ""
    click.echo(f"uploaded {summary.uploaded} files ({summary.bytes_uploaded / 1e6:.1f} MB), "
               f"skipped {summary.skipped} already there{deleted}, to {target} in {summary.seconds:.1f} s")


@main.command()
@click.option("--input", "input_uri", default=None,
              help="Images to ingest: azfs://account/container/prefix, a local folder, or "
                   "tfds:places365_small[:train|:validation] (TensorFlow Datasets' prepared copy, in "
                   "--tfds-data-dir) [default: data.raw_images_uri].")
@click.option("--output", "output_uri", default=None,
              help="Where the TFRecords and manifest.json go [default: data.examples_uri].")
@click.option("--layout", type=click.Choice([AUTO, *LAYOUTS]),
              default=AUTO, show_default=True, help="How the input is organised; auto detects it.")
@click.option("--classes", default=None, help="Classes to keep, as for sample-data [default: data.classes].")
@click.option("--tfds-data-dir", default=None,
              help="Local or mounted folder where TFDS prepared places365_small [default: data.tfds_data_dir; "
                   "empty: TFDS's default].")
@click.option("--incremental", is_flag=True,
              help="Convert only the images that the data already at --output does not hold (new, or changed since), "
                   "and keep its shards: the new version is the one a full ingest would write, in the time its new "
                   "images take.")
@click.option("--runner", type=click.Choice(BEAM_RUNNERS), default=None, help=_RUNNER_HELP)
@click.pass_context
def ingest(ctx, input_uri, output_uri, layout, classes, tfds_data_dir, incremental, runner) -> None:
    """Turn images in blob storage (or TFDS's places365_small) into sharded GZIP TFRecords of tf.Example plus
    a manifest, with Beam.

    Unreadable images are rejected and listed in the manifest; the output appears only when the job
    succeeded, and an unchanged input gives the same manifest content hash. With --incremental, images already
    ingested unchanged are not converted again.
    """
    from ingestion.job import ingest as run_ingest

    config = with_flags(config_of(ctx), {"data.classes": classes, "beam.runner": runner,
                                         "data.tfds_data_dir": tfds_data_dir})
    input_uri = input_uri or config.uri(config.data.raw_images_uri)
    output_uri = output_uri or config.uri(config.data.examples_uri)
    if storage_module.is_blob_uri(input_uri) or storage_module.is_blob_uri(output_uri):
        _ensure_storage(config)
    manifest = run_ingest(config, input_uri, output_uri, layout, incremental)
    click.echo(manifest.summary())


# --- pipeline -------------------------------------------------------------------------------------------
@main.command("run")
@click.option("--model", type=click.Choice(MODEL_NAMES), default=None,
              help="Network to train [default: training.model].")
@click.option("--epochs", type=int, default=None, help="Training epochs [default: training.epochs].")
@click.option("--accuracy-floor", type=float, default=None,
              help="Overall eval accuracy (top-1, or top-5 when evaluation.blessing_metric says so) a model "
                   "needs to be blessed [default: evaluation.accuracy_floor].")
@click.option("--runner", type=click.Choice(BEAM_RUNNERS), default=None, help=_RUNNER_HELP)
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Trainer worker processes on this machine, training together with MultiWorkerMirroredStrategy, "
                   "each on its share of the CPU cores (training.worker_cores); a worker that dies is restarted "
                   "from the last finished epoch [default: training.workers].")
@click.pass_context
def run_command(ctx, model, epochs, accuracy_floor, runner, workers) -> None:
    """Run the TFX pipeline over the ingested examples: validate, train, evaluate by category and register a
    blessed model in MLflow as `champion`. Unchanged inputs reuse cached results; a killed run can be rerun.
    """
    from pipeline.report import terminal_summary
    from pipeline.runner import run_pipeline

    config = with_flags(config_of(ctx), {"training.model": model, "training.epochs": epochs,
                                         "evaluation.accuracy_floor": accuracy_floor, "beam.runner": runner,
                                         "training.workers": workers})
    if config.training.workers > 1:
        from components.trainer.launcher import plan

        plan(config.training)  # a core or port setting that cannot work stops the run before anything starts
    _ensure_services(config)
    result = run_pipeline(config, echo=click.echo)
    click.echo("\n" + terminal_summary(result.record))
    click.echo(f"\nreport: {result.report}\nMLflow: {result.record.run_url}")
    if result.record.outcome.startswith("stopped"):
        sys.exit(1)


@main.command("retrain-if-needed")
@click.option("--min-new-images", type=click.IntRange(min=1), default=None,
              help="New or changed images that call for a new model [default: pipeline.retrain_min_new_images].")
@click.option("--runner", type=click.Choice(BEAM_RUNNERS), default=None, help=_RUNNER_HELP)
@click.pass_context
def retrain_if_needed(ctx, min_new_images, runner) -> None:
    """Ingest what is new at data.raw_images_uri (incrementally), and run the pipeline when it matters: there is no
    champion yet, at least pipeline.retrain_min_new_images images are new since the champion's data, or the new
    images drifted from it. A blessed model becomes the champion, which a running `./places serve` swaps to.

    For cron or any scheduler: it exits 0 saying why it did or did not retrain, 1 where a retraining run stopped.
    """
    from pipeline.report import terminal_summary
    from pipeline.retraining import retrain_if_needed as retrain

    config = with_flags(config_of(ctx), {"pipeline.retrain_min_new_images": min_new_images, "beam.runner": runner})
    _ensure_services(config)
    outcome = retrain(config, echo=click.echo)
    if outcome.run is None:
        return
    record = outcome.run.record
    click.echo("\n" + terminal_summary(record))
    click.echo(f"\nreport: {outcome.run.report}\nMLflow: {record.run_url}")
    if outcome.run.registered:
        click.echo(f"retrained: {record.message}; `./places serve` serving the champion loads it within "
                   f"serving.reload_s ({config.serving.reload_s:g} s)")
    else:
        click.echo(f"retrained, but the champion stays: {record.message}")
    if record.outcome.startswith("stopped"):
        sys.exit(1)


@main.command()
@click.argument("run_id", required=False)
@click.pass_context
def inspect(ctx, run_id: str | None) -> None:
    """Write the HTML report of a pipeline run (the newest, or RUN_ID) and print its summary."""
    from pipeline.inspect_run import inspect_run
    from pipeline.report import terminal_summary

    config = config_of(ctx)
    _ensure_services(config)
    record, report = inspect_run(config, run_id)
    click.echo(terminal_summary(record))
    click.echo(f"\nreport: {report}\nMLflow: {record.run_url}")


# --- serving --------------------------------------------------------------------------------------------
_MODEL_HELP = "Registered model to use: NAME@ALIAS or NAME/VERSION [default: mlflow.model_name@champion]."


@main.command()
@click.option("--model", "reference", default=None, help=_MODEL_HELP)
@click.option("--host", default=None,
              help="Address to listen on [default: serving.host, 127.0.0.1]; any other than loopback needs an API "
                   "key in the environment variable named by serving.api_key_env (PLACES_API_KEY).")
@click.option("--port", type=int, default=None, help="Port to listen on [default: serving.port].")
@click.pass_context
def serve(ctx, reference: str | None, host: str | None, port: int | None) -> None:
    """Answer HTTP requests with the champion model's predictions, at 127.0.0.1, until Ctrl-C.

    POST /invocations takes the tutorial's {"inputs": [...]} (pixels [N, 128, 128, 3] in [0, 1]; "instances" is
    taken as the same) or {"images": ["<base64 JPEG/PNG>", ...]}, and answers {"predictions": [[probabilities]]};
    GET /ping names the model; GET /metrics is for Prometheus; /v2/... is the Open Inference Protocol (KServe v2,
    Triton's clients); GET /openapi.json is the OpenAPI document of them all. With an API key set
    (serving.api_key_env), every route but /ping and /v2/health/* needs "Authorization: Bearer <key>"; with
    serving.tls_cert_file and tls_key_file, HTTPS. Served by alias (the default, NAME@champion), it switches to
    the version the alias moves to within serving.reload_s seconds. Concurrent requests share model calls of up
    to serving.max_batch_size images (0: each request alone), serving.model_calls_at_once at a time.
    """
    from serving import model as serving_model
    from serving.request_log import RequestLog
    from serving.server import api_key
    from serving.server import serve as serve_forever

    config = with_flags(config_of(ctx), {"serving.host": host, "serving.port": port})
    key = api_key(config.serving)  # before the services start and the model loads: a refusal comes at once
    _ensure_services(config)
    serving_model.share_cores(config.serving)
    serve_forever(serving_model.load(config, reference), config.serving, key, click.echo,
                  functools.partial(serving_model.follow, config, reference), RequestLog.from_config(config))


@main.command()
@click.option("--since", default="24", show_default=True,
              help="The start of the window: hours before now, or a UTC date or time (2026-12-01, 2026-12-01T08:00).")
@click.option("--model", "reference", default=None,
              help="Registered model whose training data the requests are compared with: NAME@ALIAS or NAME/VERSION "
                   "[default: mlflow.model_name@champion].")
@click.pass_context
def monitor(ctx, since: str, reference: str | None) -> None:
    """Compare the images `./places serve` logged (serving.request_log) with the champion's training data.

    Writes an HTML report (skew of each image measurement by the curated schema's skew comparators, predicted
    classes against the training labels, requests per class over time) and prints a short table and its path.
    """
    from serving.monitor import monitor as run_monitor
    from serving.monitor import terminal_summary

    config = config_of(ctx)
    _ensure_services(config)
    record, report = run_monitor(config, since, reference)
    click.echo(terminal_summary(record))
    click.echo(f"\nreport: {report}")


@main.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--model", "reference", default=None, help=_MODEL_HELP)
@click.option("--top-k", type=click.IntRange(min=1), default=None,
              help="Most probable classes shown per image [default: serving.top_k].")
@click.pass_context
def predict(ctx, images: tuple[str, ...], reference: str | None, top_k: int | None) -> None:
    """Print the most probable classes of each of IMAGES: JPEG or PNG files, local or azfs:// blobs."""
    from serving import model as serving_model

    config = with_flags(config_of(ctx), {"serving.top_k": top_k})
    _ensure_services(config)
    blob_storage = storage_module.Storage.from_config(config)
    encoded = [blob_storage.read_bytes(image) for image in images]
    model = serving_model.load(config, reference)
    rows = []
    for image, top_classes in zip(images, model.top_classes(model.predict_images(encoded, images),
                                                            config.serving.top_k)):
        rows += [{"image": image if rank == 0 else "", "class": top.display_name,
                  "probability": f"{top.probability:.3f}"} for rank, top in enumerate(top_classes)]
    click.echo(f"model {model.reference}\n")
    click.echo(table(rows, ["image", "class", "probability"]))


@main.command("batch-predict")
@click.option("--input", "input_uri", required=True,
              help="Images to classify: azfs://account/container/prefix or a local folder, searched recursively "
                   "(any layout).")
@click.option("--output", "output_uri", required=True,
              help="Folder for the predictions, rejected.jsonl and summary.json (azfs:// or local).")
@click.option("--format", "output_format", type=click.Choice(["jsonl", "parquet"]), default="jsonl", show_default=True,
              help="File format of the predictions.")
@click.option("--model", "reference", default=None, help=_MODEL_HELP)
@click.option("--runner", type=click.Choice(BEAM_RUNNERS), default=None, help=_RUNNER_HELP)
@click.pass_context
def batch_predict(ctx, input_uri: str, output_uri: str, output_format: str, reference: str | None,
                  runner: str | None) -> None:
    """Classify every image under --input with one Beam job, writing one record per image to --output.

    Unreadable images are rejected and listed in rejected.jsonl; the output appears only when the job succeeded,
    with summary.json (counts, model version) written last.
    """
    from serving.batch import batch_predict as run_batch_predict

    config = with_flags(config_of(ctx), {"beam.runner": runner})
    _ensure_services(config)
    click.echo(run_batch_predict(config, input_uri, output_uri, output_format, reference).text())


# --- whole flows ------------------------------------------------------------------------------------------
@main.command()
@click.option("--per-class", type=click.IntRange(min=1), default=None,
              help="Sample images per class [default: data.sample_images_per_class].")
@click.option("--epochs", type=int, default=None, help="Training epochs [default: training.epochs].")
@click.option("--model", type=click.Choice(MODEL_NAMES), default=None,
              help="Network to train [default: training.model].")
@click.pass_context
def demo(ctx, per_class: int | None, epochs: int | None, model: str | None) -> None:
    """Everything on embedded defaults: start the services, generate sample data, upload it to blob storage,
    ingest it, run the pipeline to a registered champion, and tell where the reports are.
    """
    from pipeline.report import terminal_summary
    from pipeline.runner import run_pipeline

    config = with_flags(config_of(ctx), {"training.epochs": epochs, "training.model": model})
    per_class = per_class if per_class is not None else config.data.sample_images_per_class
    step = _steps()
    step("start services")
    _ensure_services(config)
    sample_dir = config.state_dir / "sample-data" / f"{config.data.layout}-seed{config.data.sample_seed}"
    step(f"generate sample data ({per_class} images per class) in {sample_dir}")
    ctx.invoke(sample_data, out_dir=sample_dir, per_class=per_class, classes=None, layout=config.data.layout, seed=None)
    raw_uri = config.uri(config.data.raw_images_uri)
    step(f"upload to {raw_uri}")
    ctx.invoke(upload, source=sample_dir, target=raw_uri, workers=8, mirror=True)
    step(f"ingest into TFRecords at {config.uri(config.data.examples_uri)}")
    ctx.invoke(ingest, input_uri=raw_uri, output_uri=None, layout=config.data.layout, classes=None,
               tfds_data_dir=None, runner=None)
    step(f"run the pipeline ({config.training.model}, {config.training.epochs} epochs)")
    result = run_pipeline(config, echo=click.echo)
    click.echo("\n" + terminal_summary(result.record))
    if result.record.outcome != "registered":
        raise UserError(f"the demo's model was not registered ({result.record.message}); report: {result.report}")
    step("serve the champion and send it two requests")
    _demo_requests(config, sample_dir)
    step("where to look")
    click.echo(f"report:            {result.report}\n"
               f"MLflow run:        {result.record.run_url}\n"
               f"MLflow registry:   {config.mlflow_uri}/#/models/{config.mlflow.model_name}\n"
               f"services:          ./places services status  (stop them with ./places services down)")


def _demo_requests(config: Config, sample_dir: Path) -> None:
    """Serve the champion on a free port, ask it once as the tutorial's client does and once with a JPEG."""
    import json

    from serving import model as serving_model
    from serving.client import demo_requests
    from serving.server import api_key, running

    image = next(path for path in sorted(sample_dir.rglob("*.jpg")))
    model = serving_model.load(config)
    # On loopback over plain HTTP, whatever serve is configured with: the demo's own client asks it. With a key in
    # the environment the client sends it, as a user's client must.
    serving = with_flags(config, {"serving.host": "127.0.0.1", "serving.tls_cert_file": "",
                                  "serving.tls_key_file": ""}).serving
    key = api_key(serving)
    with running(model, serving, api_key=key) as server:
        access = f"with the API key in ${serving.api_key_env}" if key else "no API key"
        click.echo(f"serving {model.reference} at {server.url} ({access}); image: {image}")
        tutorial_answer, image_answer = demo_requests(server.url, image, key)
    probabilities = tutorial_answer["predictions"][0]
    click.echo('tutorial request  {"inputs": [[128 x 128 x 3 floats]]}  ->  {"predictions": '
               f"[{json.dumps([round(p, 3) for p in probabilities])}]}} (sum {sum(probabilities):.3f})")
    top = ", ".join(f"{item['display_name']} {item['probability']:.1%}" for item in image_answer["top_classes"][0])
    click.echo(f'JPEG request      {{"images": ["<base64 JPEG>"], "params": {{"top_k": 3}}}}  ->  {top}')
    click.echo(f"to serve it yourself: ./places serve   (http://{config.services.host}:{config.serving.port})")


def _steps():
    counter = iter(range(1, 100))

    def step(text: str) -> None:
        click.echo(click.style(f"\n[{next(counter)}] {text}", bold=True))

    return step


@main.command()
@click.option("--gpu", is_flag=True,
              help="Also install TensorFlow's own CUDA wheels for the pinned TensorFlow (requirements/gpu.txt, "
                   "about 3 GB) into .venv, for training on NVIDIA GPUs; a machine without one never needs them.")
def setup(gpu: bool) -> None:
    """Install everything `./places` needs: .venv with the pinned stack and Azurite (every command does this on
    first use, so this only says it is done), and with --gpu the CUDA libraries TensorFlow uses."""
    import subprocess

    from core.config import PROJECT_ROOT

    click.echo("places: .venv and Azurite are installed")
    if not gpu:
        return
    requirements = PROJECT_ROOT / "requirements" / "gpu.txt"
    click.echo(f"places: installing TensorFlow's CUDA wheels ({requirements.relative_to(PROJECT_ROOT)})")
    installed = subprocess.run([str(Path(sys.executable).parent / "uv"), "pip", "install", "--python", sys.executable,
                                "-r", str(requirements)])
    if installed.returncode != 0:
        raise UserError(f"installing {requirements} failed (see above): fix the cause (network, disk space) and run "
                        "`./places setup --gpu` again")
    found = subprocess.run([sys.executable, "-c", "import tensorflow as tf; "
                            "print(len(tf.config.list_physical_devices('GPU')))"],
                           capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    gpus = int(found.stdout.strip() or 0)
    click.echo(f"places: TensorFlow sees {gpus} GPU{'s' if gpus != 1 else ''}" + (
        "" if gpus else ": the wheels are installed, but there is no GPU or no NVIDIA driver (check `nvidia-smi`)"))


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--fast", is_flag=True,
              help="Only the tests that need no service (no Azurite, MLflow server or Flink cluster) and no "
                   "long Beam job or training run; CI runs the full suite.")
@click.pass_context
def test(ctx, fast: bool) -> None:
    """Lint with ruff (pyproject.toml), then run the test suite with pytest; extra arguments go to pytest,
    e.g. `./places test -k storage -x`."""
    import subprocess

    from core.config import PROJECT_ROOT

    os.chdir(PROJECT_ROOT)
    # Lint first: it takes a second, and a finding fails the run before minutes of tests.
    if subprocess.run([sys.executable, "-m", "ruff", "check", "."]).returncode != 0:
        raise UserError("ruff check found the problems above; fix them (`.venv/bin/ruff check --fix` repairs those "
                        "marked [*]) and run the tests again")
    os.execv(sys.executable, [sys.executable, "-m", "pytest", *(["--fast"] if fast else []), *ctx.args])
