"""`./places serve`: a registered model behind the tutorial's endpoint, on 127.0.0.1.

    GET  /ping          200 {"status": "ok", "model": NAME, "version": VERSION}
    POST /invocations   {"inputs": [[[[r, g, b], ...]]]}           pixels [N, 128, 128, 3] in [0, 1] (the tutorial)
                        {"images": ["<base64 JPEG or PNG>", ...]}  encoded images of any size
                        optional "params": {"class_names": true, "top_k": 3}   (MLflow's key for parameters)
                  200   {"predictions": [[10 probabilities], ...]}, plus "class_names" (the class keys in
                        column order) and "top_classes" ([[{"class", "display_name", "probability"}, ...], ...])
                        where the params ask for them
    anything wrong      4xx {"error": "<what was wrong and what to send>"}; the server goes on serving

Why this server: standard-library http.server with orjson came closest to the in-process floor (decoding the body
and calling the SavedModel in the caller's process) in a one-off comparison with uvicorn, and needs nothing
installed. MLflow's own scoring server (`mlflow models serve`) parses the body with the standard json module,
converts it through its schema enforcement and calls the pyfunc, and answers NaN pixels with 200.
bench/serving_latency.py measures this server against the floor and MLflow's; the README gives the figures.

Each connection gets a thread; TensorFlow releases the GIL while the model runs, so requests overlap there.
One log line per request (method, path, status, milliseconds), never a body.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import re
import signal
import sys
import threading
import time
import typing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

from core.config import ServingConfig
from core.errors import UserError
from serving.inputs import INPUT_ERRORS, InvalidInput
from serving.model import SceneModel

HOST = "127.0.0.1"
_LOG = logging.getLogger(__name__)
# Python's json.dumps writes float("nan") and float("inf") as these bare words, which JSON does not have.
_NON_FINITE = re.compile(rb"(?<![\w\"])(NaN|-?Infinity)(?![\w\"])")
_FIELDS = ("inputs", "images", "params")
_PARAMS = ("class_names", "top_k")


class ScoringServer(ThreadingHTTPServer):
    """The HTTP server; `serve_forever()` answers until `shutdown()` (or Ctrl-C in the thread running it)."""

    daemon_threads = True  # a client holding its connection open never keeps the process from exiting

    def __init__(self, model: SceneModel, config: ServingConfig, port: int):
        self.model = model
        self.config = config
        try:
            super().__init__((HOST, port), _Handler)
        except OSError as error:
            raise UserError(f"cannot listen on {HOST}:{port} ({error.strerror}): stop the program using the port, "
                            "or choose another with --port or serving.port") from None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}"

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):  # the client went away mid-request
            _LOG.warning("connection from %s:%s ended early: %s", *client_address, error)
        else:
            _LOG.exception("connection from %s:%s failed", *client_address)


def answer(model: SceneModel, body: bytes) -> bytes:
    """The JSON answer to a POST /invocations `body`; InvalidInput says what is wrong with it."""
    request = _parse_json(body)
    if not isinstance(request, dict):
        raise InvalidInput(f"the body is a JSON {type(request).__name__}, not an object: send "
                           '{"inputs": [...]} or {"images": [...]}')
    unknown = sorted(set(request) - set(_FIELDS))
    if unknown:
        raise InvalidInput(f"unknown field {', '.join(map(repr, unknown))}: send 'inputs' (pixels, the tutorial's "
                           "format) or 'images' (base64 JPEG/PNG), and optionally 'params'")
    if ("inputs" in request) == ("images" in request):
        raise InvalidInput("send exactly one of 'inputs' (pixels [N, 128, 128, 3] in [0, 1], the tutorial's format) "
                           "and 'images' (a list of base64 JPEG or PNG images)")
    class_names, top_k = _params(request.get("params", {}), len(model.class_names))
    if "inputs" in request:
        probabilities = model.predict_pixels(request["inputs"])
    else:
        probabilities = model.predict_images(_decoded_images(request["images"]))
    result: dict[str, typing.Any] = {"predictions": probabilities}
    if class_names:
        result["class_names"] = model.class_names
    if top_k:
        result["top_classes"] = [[{"class": top.key, "display_name": top.display_name, "probability": top.probability}
                                  for top in row] for row in model.top_classes(probabilities, top_k)]
    return orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)


def _parse_json(body: bytes):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if _NON_FINITE.search(body):
            raise InvalidInput("the body holds NaN or Infinity, which JSON has no numbers for (Python's json.dumps "
                               "writes them for float('nan') and float('inf')): send finite pixel values in "
                               "[0, 1]") from None
        raise InvalidInput(f"the body is not valid JSON ({error}): send {{\"inputs\": [...]}} as JSON") from None


def _params(params, classes: int) -> tuple[bool, int]:
    """(class_names, top_k) from the request's "params"."""
    if not isinstance(params, dict):
        raise InvalidInput('params must be an object, e.g. {"class_names": true, "top_k": 3}')
    unknown = sorted(set(params) - set(_PARAMS))
    if unknown:
        raise InvalidInput(f"unknown params {', '.join(map(repr, unknown))}: this endpoint knows "
                           f"{' and '.join(_PARAMS)}")
    class_names, top_k = params.get("class_names", False), params.get("top_k", 0)
    if not isinstance(class_names, bool):
        raise InvalidInput(f"params.class_names must be true or false, not {class_names!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k <= classes:
        raise InvalidInput(f"params.top_k must be a whole number from 1 to {classes} (the model's classes), "
                           f"not {top_k!r}")
    return class_names, top_k


def _decoded_images(images) -> list[bytes]:
    if not isinstance(images, list):
        raise InvalidInput("images must be a list of base64 strings, one JPEG or PNG image each")
    decoded = []
    for index, text in enumerate(images):
        if not isinstance(text, str):
            raise InvalidInput(f"images[{index}] is a JSON {type(text).__name__}, not a base64 string")
        try:
            decoded.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError) as error:
            raise InvalidInput(f"images[{index}] is not valid base64 ({error}): send the image file's bytes "
                               "base64-encoded (standard alphabet, with padding)") from None
    return decoded


class _Handler(BaseHTTPRequestHandler):
    server: ScoringServer
    protocol_version = "HTTP/1.1"  # keep-alive: a client's next request skips the TCP handshake
    # The headers and the body go out in two writes; with Nagle's algorithm the second waits for the client's
    # delayed ACK of the first, 40 ms on Linux.
    disable_nagle_algorithm = True
    timeout = 60  # seconds a connection may sit idle, or a body take to arrive, before it is closed

    def do_GET(self) -> None:
        self._started = time.perf_counter()
        if self.path == "/ping":
            model = self.server.model
            self._send(200, orjson.dumps({"status": "ok", "model": model.name, "version": model.version}))
        else:
            self._send_error(404, f"there is no GET {self.path}: use GET /ping or POST /invocations")

    def do_POST(self) -> None:
        self._started = time.perf_counter()
        if self.path != "/invocations":
            self._send_error(404, f"there is no POST {self.path}: use POST /invocations", close=True)
            return
        length = self._content_length()
        if length is None:
            return
        body = self.rfile.read(length)
        if len(body) < length:
            self._send_error(400, f"the body ended after {len(body)} of the {length} bytes Content-Length announced",
                             close=True)
            return
        try:
            self._send(200, answer(self.server.model, body))
        except INPUT_ERRORS as error:
            self._send_error(400, str(error))
        except Exception as error:  # a bug or a model failure: this request fails, the server goes on
            _LOG.exception("POST /invocations failed")
            self._send_error(500, f"the model failed on this request ({type(error).__name__}); the server log has "
                                  "the details")

    def _content_length(self) -> int | None:
        """The announced body size, or None once the request has been answered with why it is refused."""
        header = self.headers.get("Content-Length")
        if header is None:
            self._send_error(411, "the request has no Content-Length header: send the JSON body with its length "
                                  "(not chunked)", close=True)
            return None
        try:
            length = int(header)
            if length < 0:
                raise ValueError(header)
        except ValueError:
            self._send_error(400, f"Content-Length '{header}' is not a byte count", close=True)
            return None
        limit = self.server.config.max_request_bytes
        if length > limit:
            # Refused unread: the connection closes rather than drain a body this large.
            self._send_error(413, f"the body is {length} bytes, more than serving.max_request_bytes ({limit}): "
                                  "send fewer images per request", close=True)
            return None
        return length

    def handle_expect_100(self) -> bool:
        # curl asks before sending a body over 1 MB; an oversized one is refused before it is sent.
        return self._content_length() is not None and super().handle_expect_100()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (a garbled request line, an unsupported method), in JSON like ours.
        self._started = getattr(self, "_started", time.perf_counter())
        self._send_error(code, message or explain or "bad request", close=True)

    def _send_error(self, status: int, message: str, close: bool = False) -> None:
        self._send(status, orjson.dumps({"error": message}), close)

    def _send(self, status: int, body: bytes, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        # Logged before the body goes out, so the line is there by the time the client has its answer. A request
        # line too garbled to parse leaves no command or path.
        _LOG.info("%s %s %d %.1f ms", getattr(self, "command", None) or "-", getattr(self, "path", "-"), status,
                  (time.perf_counter() - self._started) * 1e3)
        self.wfile.write(body)

    def log_request(self, code="-", size="-") -> None:
        pass  # _send logs each request once, with its duration

    def log_message(self, format: str, *args) -> None:
        _LOG.warning("%s: %s", self.address_string(), format % args)


@contextlib.contextmanager
def running(model: SceneModel, config: ServingConfig, port: int = 0) -> typing.Iterator[ScoringServer]:
    """The server answering from a background thread while the block runs (port 0: a free port; see .url)."""
    server = ScoringServer(model, config, port)
    thread = threading.Thread(target=server.serve_forever, name="scoring-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def serve(model: SceneModel, config: ServingConfig, echo: typing.Callable[[str], None]) -> None:
    """Answer at serving.port, in this thread, until Ctrl-C."""
    _LOG.setLevel(logging.INFO)
    server = ScoringServer(model, config, config.port)
    echo(f"serving {model.reference} at {server.url} (POST /invocations, GET /ping); Ctrl-C stops")
    _stop_on(signal.SIGINT, signal.SIGTERM)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        echo("stopping")
    finally:
        server.server_close()


def _stop_on(*signals: signal.Signals) -> None:
    """Ctrl-C and `kill` (SIGTERM, what systemd and `docker stop` send) both end serve() cleanly.

    Set explicitly: a process that a script starts in the background inherits SIGINT ignored, and Python's
    default handles SIGTERM by dying on the spot.
    """
    def stop(signum, frame):
        raise KeyboardInterrupt
    for stop_signal in signals:
        signal.signal(stop_signal, stop)
