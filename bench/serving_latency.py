"""Serving under load and batch-prediction throughput, measured in one run; prints one JSON object.

    PYTHONPATH=. .venv/bin/python bench/serving_latency.py                          # clients 1 8 32
    PYTHONPATH=. .venv/bin/python bench/serving_latency.py --clients 1 8 --requests 100 --images 0   # a quick look

Runs its own Azurite and MLflow server (temporary state folder, free ports) and registers --model (the demo's
better_cnn by default) as the champion the way the Pusher does (untrained: speed does not depend on the weights).
This process shares out the cores to TensorFlow as `./places serve` does (serving.model_calls_at_once). Then:

1. For each request format, one image a request (`jpeg`: {"images": [base64 JPEG]}, a 256 x 256 picture;
   `pixels`: the tutorial's 1 x 128 x 128 x 3 floats as JSON, about 1 MB), and each of --clients (each client on
   its own keep-alive connection, the body serialized once), p50 / p99 and requests/s of, in turns:
     in_process                   each client's body decoded as the server decodes it and the model called on it
                                  alone, in this process, no HTTP: the floor for one request
     in_process_batched_limit     the model alone on batches of serving.max_batch_size ready-made inputs, from
                                  serving.model_calls_at_once threads as the server calls it (images/s): the limit
     in_process_batched_one_loop  the same from one thread, one batch at a time
     places_serve                 `./places serve` (serving/server.py) with its default batching, in its own
                                  process, with an API key set (every request sends `Authorization: Bearer <key>`)
     places_serve_unbatched       the same with serving.max_batch_size 0
     mlflow_serve                 `mlflow models serve --env-manager local` on the same version (pixels, 1 client)
     places_serve_no_key, places_serve_tls   with --access (pixels, 1 client): without a key, and with the key
                                  over HTTPS (a self-signed certificate; the handshake is paid once a client)
   "checks" gives the issue's: 8 JPEG clients at 0.7 of the batched limit or more, and one client's p50 within
   1 ms of batching off; and the earlier one, one pixel client's p50 over in_process's.
2. With --hot-swap: a new champion registered while one client keeps asking `./places serve` (reload_s 1): the
   seconds until it is served, failed requests, latency before, while the new version loads, and after.
3. Batch prediction images/s over --images JPEGs in Azurite: serving.batch (Beam, RunInference) against an
   in-process loop of SceneModel.predict_images over the same images, serving.batch_size at a time, with the
   images already in memory and read from Azurite one by one.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import http.client
import io
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import typing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from core import services
from core.config import PROJECT_ROOT, Config, apply
from core.storage import CONNECTION_STRING_ENV, Storage, emulator_connection_string, join
from serving.model import model_calls_at_once
from tests.champion import cli_environment, register_champion
from tests.fixtures import free_port

MODEL_NAME = "bench-model"
FORMATS = ("jpeg", "pixels")
WARMUP_REQUESTS = 3
# Each client's requests in one round, at least: fewer, and starting and stopping the clients decides the rate.
MIN_REQUESTS_PER_ROUND = 4
SERVER_START_S = 300


def percentiles(durations: list[float]) -> dict:
    """How many calls took `durations` (seconds), and their p50 and p99 in milliseconds."""
    milliseconds = np.array(durations) * 1e3
    return {"requests": len(durations), "p50_ms": round(float(np.percentile(milliseconds, 50)), 1),
            "p99_ms": round(float(np.percentile(milliseconds, 99)), 1)}


def summarise(durations: list[float], seconds: float, clients: int) -> dict:
    return {"clients": clients, **percentiles(durations), "requests_per_s": round(len(durations) / seconds, 1)}


class Target(typing.NamedTuple):
    new_client: typing.Callable[[], typing.Callable[[], None]]  # a client: its call sends one request
    clients: int
    images_per_call: int = 1


def load_test(targets: dict[str, Target], requests: int, rounds: int) -> dict[str, dict]:
    """Each target in turn, `rounds` times, `requests` calls in all per target (split among its clients and the
    rounds, at least MIN_REQUESTS_PER_ROUND a client and round): the other engineers' jobs on this machine come
    and go, and taking turns spreads them over every target alike."""
    measured = {name: ([], 0.0) for name in targets}
    for _ in range(rounds):
        for name, target in targets.items():
            durations, seconds = measured[name]
            per_client = max(MIN_REQUESTS_PER_ROUND, requests // rounds // target.clients)
            round_seconds = one_load(target.new_client, target.clients, per_client, durations)
            measured[name] = durations, seconds + round_seconds
    return {name: {**summarise(durations, seconds, targets[name].clients),
                   "images_per_s": round(len(durations) * targets[name].images_per_call / seconds, 1)}
            for name, (durations, seconds) in measured.items()}


def one_load(new_client: typing.Callable[[], typing.Callable[[], None]], clients: int, requests: int,
             durations: list[float]) -> float:
    """`clients` threads, each calling its own client `requests` times after a warm-up, adding each call's seconds
    to `durations`; returns the seconds from the first call to the last."""
    ready = threading.Barrier(clients + 1)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            call = new_client()
            for _ in range(WARMUP_REQUESTS):
                call()
        except BaseException as error:
            failures.append(error)
        ready.wait()
        if failures:
            return
        for _ in range(requests):
            started = time.perf_counter()
            call()
            durations.append(time.perf_counter() - started)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"a client failed: {failures[0]!r}")
    return time.perf_counter() - started


def connect(port: int, tls: ssl.SSLContext | None, timeout_s: float) -> http.client.HTTPConnection:
    if tls is None:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout_s, context=tls)


def http_client(port: int, body: bytes, headers: dict[str, str],
                tls: ssl.SSLContext | None = None) -> typing.Callable[[], typing.Callable[[], None]]:
    def new_client() -> typing.Callable[[], None]:
        connection = connect(port, tls, 60)

        def call() -> None:
            connection.request("POST", "/invocations", body, {"Content-Type": "application/json", **headers})
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200 or b"predictions" not in answer:
                raise RuntimeError(f"port {port} answered {response.status}: {answer[:300]!r}")

        return call

    return new_client


def in_process_client(model, body: bytes) -> typing.Callable[[], typing.Callable[[], None]]:
    """One request's floor: its body decoded as the server decodes it and the model called on it alone, here."""
    import orjson

    from serving.inputs import base64_images

    def call() -> None:
        request = orjson.loads(body)
        if "images" in request:
            model.predict_images(base64_images(request["images"]))
        else:
            model.predict_pixels(request["inputs"])

    return lambda: call


def batched_limit_client(model, request_format: str, images: int) -> typing.Callable[[], typing.Callable[[], None]]:
    """The model alone on batches of `images` ready-made inputs (serving.max_batch_size). As many clients as the
    server's serving.model_calls_at_once give the limit no server of this model can pass; one client gives the
    limit of a single batch at a time."""
    if request_format == "jpeg":
        batch = [jpeg_images(1)[0]] * images
        return lambda: lambda: model.predict_images(batch)
    pixels = np.random.default_rng(0).random((images, 128, 128, 3)).astype(np.float32)
    return lambda: lambda: model.predict_pixels(pixels)


def request_bodies() -> dict[str, bytes]:
    """One image a request: the tutorial's pixels as JSON (about 1 MB), and a JPEG as base64."""
    pixels = np.random.default_rng(0).random((1, 128, 128, 3)).astype(np.float32)
    return {"jpeg": json.dumps({"images": [base64.b64encode(jpeg_images(1)[0]).decode()]}).encode(),
            "pixels": json.dumps({"inputs": pixels.tolist()}).encode()}


def start_server(command: list[str], environment: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as output:
        return subprocess.Popen(command, cwd=PROJECT_ROOT, env={**os.environ, **environment}, stdout=output,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def wait_until_answering(process: subprocess.Popen, port: int, log: Path, tls: ssl.SSLContext | None = None) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server on port {port} exited while starting; the end of {log}:\n"
                             f"{log.read_text()[-3000:]}")
        try:
            connection = connect(port, tls, 5)
            connection.request("GET", "/ping")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit(f"the server on port {port} did not answer within {SERVER_START_S} s; see {log}")


def stop_server(process: subprocess.Popen) -> None:
    """SIGINT, then SIGKILL, to the server's process group (MLflow's server runs uvicorn as a child)."""
    for stop_signal, wait_s in ((signal.SIGINT, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, stop_signal)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def places_serve(config: Config, environment: dict[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    return start_server([sys.executable, "-m", "cli", "serve", "--port", str(port)],
                        {**cli_environment(config), "PYTHONPATH": str(PROJECT_ROOT), **environment}, log), port


def measure_latency(config: Config, model, client_counts: list[int], requests: dict[str, int], rounds: int,
                    scratch: Path, access: bool) -> dict:
    """Both request formats at each number of clients: `./places serve` batching (the configured defaults) and not
    (max_batch_size 0), the one-request floor in process, and the model's batched limit, all in turns."""
    bodies = request_bodies()
    mlflow_port = free_port()
    key = secrets.token_hex(32)
    with_key = {config.serving.api_key_env: key}
    bearer = {"Authorization": f"Bearer {key}"}
    # name: (process, port, TLS context of its clients, headers they send, formats it is asked in); the servers
    # after the first two are asked by one client only (MLflow's, and the access variants), as in the README.
    servers = {
        "places_serve": (*places_serve(config, with_key, scratch / "places-serve.log"), None, bearer, FORMATS),
        "places_serve_unbatched": (*places_serve(config, {**with_key, "PLACES_SERVING__MAX_BATCH_SIZE": "0"},
                                                 scratch / "places-serve-unbatched.log"), None, bearer, FORMATS),
        "mlflow_serve": (start_server([sys.executable, "-m", "mlflow", "models", "serve", "-m",
                                       f"models:/{model.reference}", "--env-manager", "local", "--host", "127.0.0.1",
                                       "-p", str(mlflow_port)],
                                      # It starts `uvicorn` by name, from the PATH: this environment's. The
                                      # version's flavour (registry.flavour) is imported from the checkout.
                                      {"MLFLOW_TRACKING_URI": config.mlflow_uri, "PYTHONPATH": str(PROJECT_ROOT),
                                       "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
                                      scratch / "mlflow-serve.log"), mlflow_port, None, {}, ("pixels",)),
    }
    if access:
        from tests.test_serving_access import self_signed_certificate

        cert_file, key_file = self_signed_certificate(scratch)
        tls = ssl.create_default_context(cafile=cert_file)
        servers["places_serve_no_key"] = (*places_serve(config, {}, scratch / "places-serve-no-key.log"), None, {},
                                          ("pixels",))
        servers["places_serve_tls"] = (*places_serve(config, {**with_key, "PLACES_SERVING__TLS_CERT_FILE": cert_file,
                                                              "PLACES_SERVING__TLS_KEY_FILE": key_file},
                                                     scratch / "places-serve-tls.log"), tls, bearer, ("pixels",))
    max_batch_size = config.serving.max_batch_size
    calls_at_once = model_calls_at_once(config.serving)
    results: dict[str, dict[str, list]] = {request_format: {} for request_format in FORMATS}
    try:
        for name, (process, port, tls, *_) in servers.items():
            wait_until_answering(process, port, scratch / f"{name.replace('_', '-')}.log", tls)
        for request_format, body in bodies.items():
            for clients in client_counts:
                limit = batched_limit_client(model, request_format, max_batch_size)
                targets = {"in_process": Target(in_process_client(model, body), clients),
                           "in_process_batched_limit": Target(limit, calls_at_once, max_batch_size),
                           "in_process_batched_one_loop": Target(limit, 1, max_batch_size)}
                for order, (name, (_, port, tls, headers, formats)) in enumerate(servers.items()):
                    if request_format in formats and (order < 2 or clients == 1):
                        targets[name] = Target(http_client(port, body, headers, tls), clients)
                for name, result in load_test(targets, requests[request_format], rounds).items():
                    results[request_format].setdefault(name, []).append(result)
                    print(f"{request_format} {name}: {result}", file=sys.stderr, flush=True)
    finally:
        for process, *_ in servers.values():
            stop_server(process)
    return {"request_bytes": {name: len(body) for name, body in bodies.items()},
            "max_batch_size": max_batch_size, "model_calls_at_once": calls_at_once, "results": results,
            "checks": checks(results, client_counts)}


def checks(results: dict[str, dict[str, list]], client_counts: list[int]) -> dict:
    """The issue's two: 8 clients of one JPEG each at 0.7 of the batched limit or more (against both limits), and
    a lone client's p50 within 1 ms of batching off; and one pixel client's p50 over in-process's, which an
    earlier issue asked to be within 5 ms."""
    jpeg = results["jpeg"]
    found: dict[str, typing.Any] = {}
    if 8 in client_counts:
        at = client_counts.index(8)
        for limit in ("in_process_batched_limit", "in_process_batched_one_loop"):
            ratio = jpeg["places_serve"][at]["requests_per_s"] / jpeg[limit][at]["images_per_s"]
            found[f"jpeg_8_clients_of_{limit}"] = round(ratio, 3)
            found[f"jpeg_8_clients_at_least_0_7_of_{limit}"] = ratio >= 0.7
    if 1 in client_counts:
        at = client_counts.index(1)
        for request_format, measured in results.items():
            margin = measured["places_serve"][at]["p50_ms"] - measured["places_serve_unbatched"][at]["p50_ms"]
            found[f"{request_format}_1_client_p50_over_unbatched_ms"] = round(margin, 1)
            found[f"{request_format}_1_client_within_1_ms"] = margin <= 1
        margin = results["pixels"]["places_serve"][at]["p50_ms"] - results["pixels"]["in_process"][at]["p50_ms"]
        found["pixels_1_client_p50_over_in_process_ms"] = round(margin, 1)
    return found


def measure_hot_swap(config: Config, scratch: Path, reload_s: float = 1.0) -> dict:
    """`./places serve` (serving.reload_s = `reload_s`) answering one client's tutorial requests without pause
    while a new version of the seed CNN is registered as the champion: the seconds from the alias moving to /ping
    naming the new version, the requests that failed, and the latency before the move against the latency while
    the new version was being downloaded and loaded beside the old one."""
    from components.trainer.model import build_model

    body = json.dumps({"inputs": np.random.default_rng(0).random((1, 128, 128, 3)).tolist()}).encode()
    log = scratch / "places-serve-hot-swap.log"
    process, port = places_serve(config, {"PLACES_SERVING__RELOAD_S": str(reload_s)}, log)
    answers: list[tuple[float, float, bool]] = []  # (sent, seconds, answered 200 with predictions)
    stop = threading.Event()

    def keep_asking() -> None:
        call = http_client(port, body, {})()
        while not stop.is_set():
            sent = time.perf_counter()
            try:
                call()
                answers.append((sent, time.perf_counter() - sent, True))
            except (OSError, RuntimeError, http.client.HTTPException):
                answers.append((sent, time.perf_counter() - sent, False))
                call = http_client(port, body, {})()

    def served_version() -> str:
        connection = connect(port, None, 5)
        connection.request("GET", "/ping")
        return json.loads(connection.getresponse().read())["version"]

    try:
        wait_until_answering(process, port, log)
        first = served_version()
        asker = threading.Thread(target=keep_asking)
        asker.start()
        try:
            time.sleep(5)  # latency before the move
            registering = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr):
                register_champion(config, scratch / "second-model", MODEL_NAME, build_model("seed_cnn", 10, 1e-3))
            moved = time.perf_counter()
            while served_version() == first:
                if time.perf_counter() - moved > SERVER_START_S:
                    raise SystemExit(f"the server did not switch within {SERVER_START_S} s; see {log}")
                time.sleep(0.05)
            switched = time.perf_counter()
            time.sleep(2)
        finally:
            stop.set()
            asker.join()
    finally:
        stop_server(process)

    def latency(since: float, until: float) -> dict:
        durations = [seconds for sent, seconds, ok in answers if since <= sent < until and ok]
        return {**percentiles(durations), "max_ms": round(max(durations) * 1e3, 1)}

    return {"reload_s": reload_s, "switch_s_after_alias_moved": round(switched - moved, 1),
            "requests": len(answers), "failed_requests": sum(not ok for *_, ok in answers),
            "before_the_move": latency(0, registering), "while_loading_the_new_version": latency(moved, switched),
            "after_the_switch": latency(switched, float("inf"))}


def jpeg_images(count: int) -> list[bytes]:
    """Smooth 256 x 256 scenes, as Places365's small images are: a gradient between two random colours."""
    from PIL import Image

    random = np.random.default_rng(1)
    fade = np.linspace(0, 1, 256)[:, None, None] * np.ones((1, 256, 1))
    images = []
    for colours in random.random((count, 2, 3)):
        buffer = io.BytesIO()
        Image.fromarray(((fade * colours[0] + (1 - fade) * colours[1]) * 255).astype(np.uint8)).save(buffer, "JPEG")
        images.append(buffer.getvalue())
    return images


def measure_batch(config: Config, model, count: int) -> dict:
    from serving.batch import batch_predict

    storage = Storage.from_config(config)
    images = jpeg_images(count)
    input_uri, output_uri = "azfs://devstoreaccount1/bench/images", "azfs://devstoreaccount1/bench/predictions"
    uris = [join(input_uri, f"{index // 100:03d}/{index:06d}.jpg") for index in range(count)]
    storage.ensure_container(input_uri)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(storage.write_bytes, uris, images))
    batch_size = config.serving.batch_size

    def predict_all(read: typing.Callable[[int], bytes]) -> float:
        started = time.perf_counter()
        for start in range(0, count, batch_size):
            model.predict_images([read(index) for index in range(start, min(start + batch_size, count))])
        return count / (time.perf_counter() - started)

    in_memory = predict_all(lambda index: images[index])
    reading_azurite = predict_all(lambda index: storage.read_bytes(uris[index]))
    started = time.perf_counter()
    summary = batch_predict(config, input_uri, output_uri)
    seconds = time.perf_counter() - started
    return {"images": count, "batch_size": batch_size,
            "batch_predict_images_per_s": round(summary.predicted / seconds, 1),
            "batch_predict_seconds": round(seconds, 1), "batch_predict_predicted": summary.predicted,
            "in_process_in_memory_images_per_s": round(in_memory, 1),
            "in_process_reading_azurite_images_per_s": round(reading_azurite, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000,
                        help="JPEG requests per target and number of clients, split among the clients and rounds")
    parser.add_argument("--pixel-requests", type=int, default=400,
                        help="the same for the tutorial's pixel requests, each about 1 MB of JSON to parse")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32],
                        help="the numbers of concurrent clients to measure")
    parser.add_argument("--model", choices=("better_cnn", "seed_cnn"), default="better_cnn",
                        help="the architecture registered as the champion (untrained: speed does not depend on the "
                             "weights); better_cnn is the demo's")
    parser.add_argument("--rounds", type=int, default=5, help="turns each target gets, its requests split among them")
    parser.add_argument("--images", type=int, default=500, help="images for the batch-prediction comparison (0: none)")
    parser.add_argument("--access", action="store_true",
                        help="also measure ./places serve without an API key and with the key over HTTPS")
    parser.add_argument("--hot-swap", action="store_true",
                        help="also measure a champion switch in ./places serve while a client keeps asking")
    arguments = parser.parse_args()

    from components.trainer.model import build_model
    from serving.model import load, share_cores

    # Before TensorFlow runs anything here: the in-process figures use the cores as `./places serve` does.
    share_cores(Config().serving)

    with tempfile.TemporaryDirectory(prefix="places-bench-") as scratch:
        config = apply(Config(), {"state_dir": str(Path(scratch) / "state"), "storage.emulator_port": str(free_port()),
                                  "mlflow.port": str(free_port())})
        services.up(config, report=lambda line: print(line, file=sys.stderr))
        try:
            os.environ[CONNECTION_STRING_ENV] = emulator_connection_string(config)
            with contextlib.redirect_stdout(sys.stderr):  # MLflow prints links to runs; stdout is for the result
                config = register_champion(config, Path(scratch) / "model", MODEL_NAME,
                                           build_model(arguments.model, 10, 1e-3))
                model = load(config)
                # As `./places serve` does: the in-process figures are then a floor for its pauses too.
                gc.collect()
                gc.freeze()
                result = {"model": f"{arguments.model} as {model.reference}", "cpu_cores": os.cpu_count(),
                          "latency": measure_latency(config, model, arguments.clients,
                                                     {"jpeg": arguments.requests, "pixels": arguments.pixel_requests},
                                                     arguments.rounds, Path(scratch), arguments.access)}
                if arguments.images:
                    result["batch"] = measure_batch(config, model, arguments.images)
                if arguments.hot_swap:
                    result["hot_swap"] = measure_hot_swap(config, Path(scratch))
            print(json.dumps(result, indent=2))
        finally:
            services.down(config, report=lambda line: print(line, file=sys.stderr))


if __name__ == "__main__":
    main()
