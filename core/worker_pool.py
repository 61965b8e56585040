"""The SDK worker pool of the Flink cluster (`./places cluster up`): Beam's EXTERNAL environment.

A TaskManager asks the pool for an SDK worker for each stage of a job; the pool starts one as a child process
of this project's virtual environment, so the workers import the project's code (PYTHONPATH) and read blob
storage's connection string from their own environment, never from pipeline options.

Why not Beam's `python -m apache_beam.runners.worker.worker_pool_main`: it listens on all interfaces, and each
worker it starts is a fresh interpreter that imports Beam, TensorFlow and the job's modules again, which costs
tens of seconds per stage on a small machine. Here the workers are forked from a multiprocessing forkserver
that imported those once (`PRELOADED`); the forkserver is a fresh interpreter of its own, so the gRPC threads of
this process are never forked.

  python -m core.worker_pool --host 127.0.0.1 --port 50000
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import signal
import sys
import threading
import time

# What every stage's worker needs anyway: Beam's SDK harness, TensorFlow and the modules of this project's jobs
# (ingestion, batch prediction, and the TFX components' TFDV and TFMA).
PRELOADED = ["apache_beam.runners.worker.sdk_worker", "tensorflow", "ingestion.job", "serving.batch",
             "tensorflow_data_validation", "tensorflow_model_analysis"]
_STOP_GRACE_S = 10
# How long a StopWorker request waits for its worker's runner to close the worker's control endpoint.
_STOP_WAIT_S = 30


def _run_worker(control_address: str, worker_id: str) -> None:
    from apache_beam.runners.worker.sdk_worker import SdkHarness

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker {worker_id} %(levelname)s %(message)s")
    SdkHarness(control_address, worker_id=worker_id, state_cache_size=0, data_buffer_time_limit_ms=0).run()


def serve(host: str, port: int) -> None:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOADED)
    # Start the forkserver (and its imports) now, so that the first stage's worker starts at once.
    context.Process(target=int).start()

    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc
    from apache_beam.utils import thread_pool_executor

    # Worker ids are unique per TaskManager only ("1-1" comes from each of them), so a StopWorker request can name
    # workers of several TaskManagers: the one to stop is the one whose runner closed its control endpoint.
    workers: dict[str, list[tuple[multiprocessing.Process, str]]] = {}
    lock = threading.Lock()

    class WorkerPool(beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolServicer):
        def StartWorker(self, request, context_):
            process = context.Process(target=_run_worker, args=(request.control_endpoint.url, request.worker_id),
                                      name=f"sdk-worker-{request.worker_id}")
            process.start()
            with lock:
                workers.setdefault(request.worker_id, []).append((process, request.control_endpoint.url))
            logging.info("started SDK worker %s (pid %s) for %s", request.worker_id, process.pid,
                         request.control_endpoint.url)
            threading.Thread(target=self._forget_when_done, args=(process, request.worker_id), daemon=True).start()
            return beam_fn_api_pb2.StartWorkerResponse()

        @staticmethod
        def _forget_when_done(process: multiprocessing.Process, worker_id: str) -> None:
            process.join()
            # 255: how Beam's SDK harness ends when its runner closes the connection at the end of a stage.
            if process.exitcode not in (0, 255, -signal.SIGTERM):
                # A worker that dies takes its reason with it; its exit code (a signal, for a crash) says which.
                logging.warning("SDK worker %s (pid %s) exited with code %s", worker_id, process.pid, process.exitcode)
            with lock:
                remaining = [item for item in workers.get(worker_id, []) if item[0] is not process]
                if remaining:
                    workers[worker_id] = remaining
                else:
                    workers.pop(worker_id, None)

        def StopWorker(self, request, context_):
            threading.Thread(target=self._stop_closed, args=(request.worker_id,), daemon=True).start()
            return beam_fn_api_pb2.StopWorkerResponse()

        @staticmethod
        def _stop_closed(worker_id: str) -> None:
            """Stop the workers of this id whose runner closed their control endpoint (it may still be closing);
            a worker whose runner hung up normally ends by itself first."""
            deadline = time.monotonic() + _STOP_WAIT_S
            while time.monotonic() < deadline:
                with lock:
                    candidates = [process for process, url in workers.get(worker_id, [])
                                  if process.is_alive() and not _endpoint_open(url)]
                for process in candidates:
                    process.join(_STOP_GRACE_S)
                    _stop(process)
                if candidates:
                    return
                time.sleep(1.0)

    server = grpc.server(thread_pool_executor.shared_unbounded_instance(),
                         options=[("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0),
                                  # A second pool on the same port must fail to start, not share it silently.
                                  ("grpc.so_reuseport", 0)])
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(WorkerPool(), server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        sys.exit(f"the SDK worker pool cannot listen on {host}:{port}")
    server.start()
    logging.info("SDK worker pool listening on %s:%s", host, port)
    stopped = threading.Event()
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: stopped.set())
    stopped.wait()
    server.stop(5)
    with lock:
        for process, _ in [item for items in workers.values() for item in items]:
            _stop(process)


def _endpoint_open(url: str) -> bool:
    from core.services import port_in_use

    host, _, port = url.rpartition(":")
    return port_in_use(host, int(port))


def _stop(process: multiprocessing.Process) -> None:
    if not process.is_alive():
        return
    process.terminate()
    process.join(_STOP_GRACE_S)
    if process.is_alive():
        process.kill()
        process.join()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    serve(arguments.host, arguments.port)


if __name__ == "__main__":
    main()
