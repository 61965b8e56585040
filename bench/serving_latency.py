"""Serving latency and batch-prediction throughput, measured in one run; prints one JSON object.

    PYTHONPATH=. .venv/bin/python bench/serving_latency.py                           # 200 requests a client
    PYTHONPATH=. .venv/bin/python bench/serving_latency.py --requests 50 --images 100   # a quick look

Runs its own Azurite and MLflow server (temporary state folder, free ports) and registers the seed CNN as the
champion the way the Pusher does (untrained: speed does not depend on the weights). Then:

1. Latency of one tutorial-format request (1 x 128 x 128 x 3 floats as JSON, about 1 MB), p50 / p99 and
   requests/s with 1 and with 4 clients (each on its own keep-alive connection, the body serialized once):
     in_process    the body decoded as the server decodes it (orjson, np.asarray) and the SavedModel's
                   serving_default signature called, in this process: the floor for any server
     places_serve  `./places serve` (serving/server.py), in its own process, with an API key set (every request
                   sends `Authorization: Bearer <key>` and the server checks it)
     places_serve_no_key, places_serve_tls   with --access: the same without a key, and with the key over HTTPS
                   (a self-signed test certificate, keep-alive connections: the handshake is paid once a client)
     mlflow_serve  `mlflow models serve --env-manager local` on the same registered version, in its own process
   The issue asks places_serve's p50 with 1 client to be within 5 ms of in_process's.
2. With --hot-swap: a new champion registered while one client keeps asking `./places serve` (reload_s 1): the
   seconds until it is served, failed requests, latency before, while the new version loads, and after.
3. Batch prediction images/s over --images JPEGs in Azurite: serving.batch (Beam, RunInference) against an
   in-process loop of SceneModel.predict_images over the same images, serving.batch_size at a time, with the
   images already in memory and read from Azurite one by one.
"""

from __future__ import annotations

import argparse
import contextlib
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
from tests.champion import cli_environment, register_champion
from tests.fixtures import free_port

MODEL_NAME = "bench-seed-cnn"
WARMUP_REQUESTS = 3
SERVER_START_S = 300


def percentiles(durations: list[float]) -> dict:
    """How many calls took `durations` (seconds), and their p50 and p99 in milliseconds."""
    milliseconds = np.array(durations) * 1e3
    return {"requests": len(durations), "p50_ms": round(float(np.percentile(milliseconds, 50)), 1),
            "p99_ms": round(float(np.percentile(milliseconds, 99)), 1)}


def summarise(durations: list[float], seconds: float, clients: int) -> dict:
    return {"clients": clients, **percentiles(durations), "requests_per_s": round(len(durations) / seconds, 1)}


def load_test(new_clients: dict[str, typing.Callable[[], typing.Callable[[], None]]], clients: int, requests: int,
              rounds: int) -> dict[str, dict]:
    """Each target in turn, `rounds` times, `requests` / `rounds` calls per client thread each time: the other
    engineers' jobs on this machine come and go, and taking turns spreads them over every target alike."""
    measured = {name: ([], 0.0) for name in new_clients}
    for _ in range(rounds):
        for name, new_client in new_clients.items():
            durations, seconds = measured[name]
            round_seconds = one_load(new_client, clients, max(1, requests // rounds), durations)
            measured[name] = durations, seconds + round_seconds
    return {name: summarise(durations, seconds, clients) for name, (durations, seconds) in measured.items()}


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


def in_process_client(saved_model_dir: str, body: bytes) -> typing.Callable[[], typing.Callable[[], None]]:
    import orjson
    import tensorflow as tf

    predict_pixels = tf.saved_model.load(saved_model_dir).signatures["serving_default"]

    def call() -> None:
        pixels = np.asarray(orjson.loads(body)["inputs"], dtype=np.float32)
        predict_pixels(pixels=tf.constant(pixels))["probabilities"].numpy()

    return lambda: call


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


def measure_latency(config: Config, model, requests: int, rounds: int, scratch: Path, access: bool) -> dict:
    pixels = np.random.default_rng(0).random((1, 128, 128, 3)).astype(np.float32)
    body = json.dumps({"inputs": pixels.tolist()}).encode()
    mlflow_port = free_port()
    key = secrets.token_hex(32)
    with_key = {config.serving.api_key_env: key}
    # name: (process, port, TLS context of its clients, headers they send)
    servers = {
        "places_serve": (*places_serve(config, with_key, scratch / "places-serve.log"), None,
                         {"Authorization": f"Bearer {key}"}),
        "mlflow_serve": (start_server([sys.executable, "-m", "mlflow", "models", "serve", "-m",
                                       f"models:/{model.reference}", "--env-manager", "local", "--host", "127.0.0.1",
                                       "-p", str(mlflow_port)],
                                      # It starts `uvicorn` by name, from the PATH: this environment's. The
                                      # version's flavour (registry.flavour) is imported from the checkout.
                                      {"MLFLOW_TRACKING_URI": config.mlflow_uri, "PYTHONPATH": str(PROJECT_ROOT),
                                       "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
                                      scratch / "mlflow-serve.log"), mlflow_port, None, {}),
    }
    if access:
        from tests.test_serving_access import self_signed_certificate

        cert_file, key_file = self_signed_certificate(scratch)
        tls = ssl.create_default_context(cafile=cert_file)
        servers["places_serve_no_key"] = (*places_serve(config, {}, scratch / "places-serve-no-key.log"), None, {})
        servers["places_serve_tls"] = (*places_serve(config, {**with_key, "PLACES_SERVING__TLS_CERT_FILE": cert_file,
                                                              "PLACES_SERVING__TLS_KEY_FILE": key_file},
                                                     scratch / "places-serve-tls.log"), tls,
                                       {"Authorization": f"Bearer {key}"})
    try:
        for name, (process, port, tls, _) in servers.items():
            wait_until_answering(process, port, scratch / f"{name.replace('_', '-')}.log", tls)
        clients = {"in_process": in_process_client(model.saved_model_dir, body),
                   **{name: http_client(port, body, headers, tls)
                      for name, (_, port, tls, headers) in servers.items()}}
        results: dict[str, list] = {name: [] for name in clients}
        for client_count, per_client in ((1, requests), (4, requests // 4)):
            for name, result in load_test(clients, client_count, per_client, rounds).items():
                results[name].append(result)
                print(f"latency {name}: {result}", file=sys.stderr, flush=True)
    finally:
        for process, *_ in servers.values():
            stop_server(process)
    margins = {name: round(results[name][0]["p50_ms"] - results["in_process"][0]["p50_ms"], 1)
               for name in results if name.startswith("places_serve")}
    return {"request_bytes": len(body), "results": results, "p50_over_in_process_ms_1_client": margins,
            "within_5_ms": margins["places_serve"] <= 5}


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
    parser.add_argument("--requests", type=int, default=200,
                        help="requests for 1 client; 4 clients send a quarter each")
    parser.add_argument("--rounds", type=int, default=5, help="turns each target gets, its requests split among them")
    parser.add_argument("--images", type=int, default=500, help="images for the batch-prediction comparison")
    parser.add_argument("--access", action="store_true",
                        help="also measure ./places serve without an API key and with the key over HTTPS")
    parser.add_argument("--hot-swap", action="store_true",
                        help="also measure a champion switch in ./places serve while a client keeps asking")
    arguments = parser.parse_args()

    from components.trainer.model import build_model
    from serving.model import load

    with tempfile.TemporaryDirectory(prefix="places-bench-") as scratch:
        config = apply(Config(), {"state_dir": str(Path(scratch) / "state"), "storage.emulator_port": str(free_port()),
                                  "mlflow.port": str(free_port())})
        services.up(config, report=lambda line: print(line, file=sys.stderr))
        try:
            os.environ[CONNECTION_STRING_ENV] = emulator_connection_string(config)
            with contextlib.redirect_stdout(sys.stderr):  # MLflow prints links to runs; stdout is for the result
                config = register_champion(config, Path(scratch) / "model", MODEL_NAME,
                                           build_model("seed_cnn", 10, 1e-3))
                model = load(config)
                result = {"model": f"seed_cnn as {model.reference}", "cpu_cores": os.cpu_count(),
                          "latency": measure_latency(config, model, arguments.requests, arguments.rounds,
                                                     Path(scratch), arguments.access),
                          "batch": measure_batch(config, model, arguments.images)}
                if arguments.hot_swap:
                    result["hot_swap"] = measure_hot_swap(config, Path(scratch))
            print(json.dumps(result, indent=2))
        finally:
            services.down(config, report=lambda line: print(line, file=sys.stderr))


if __name__ == "__main__":
    main()
