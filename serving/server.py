"""`./places serve`: a registered model behind the tutorial's endpoint, on serving.host (127.0.0.1).

    GET  /ping          200 {"status": "ok", "model": NAME, "version": VERSION}; never needs the API key
    GET  /metrics       Prometheus text: requests by route and status, latency, the model's version, images predicted
    GET  /openapi.json  the OpenAPI 3.1 document of every route here (serving/openapi.py)
    POST /invocations   {"inputs": [[[[r, g, b], ...]]]}           pixels [N, 128, 128, 3] in [0, 1] (the tutorial)
                        {"instances": [...]}                       the same pixels under MLflow's and TF Serving's name
                        {"images": ["<base64 JPEG or PNG>", ...]}  encoded images of any size
                        optional "params": {"class_names": true, "top_k": 3}   (MLflow's key for parameters)
                  200   {"predictions": [[10 probabilities], ...]}, plus "class_names" (the class keys in
                        column order) and "top_classes" ([[{"class", "display_name", "probability"}, ...], ...])
                        where the params ask for them
    /v2/...             the Open Inference Protocol (KServe v2, Triton's clients): serving/open_inference.py
    anything wrong      4xx {"error": "<what was wrong and what to send>"}; the server goes on serving

Access: with an API key in the environment variable serving.api_key_env, every route but /ping and
/v2/health/* needs `Authorization: Bearer <key>` (401 without it, 403 with another key); an address other than
loopback is refused without a key. With serving.tls_cert_file and tls_key_file, HTTPS only.

Why this server: standard-library http.server with orjson came closest to the in-process floor (decoding the body
and calling the SavedModel in the caller's process) in a one-off comparison with uvicorn, and needs nothing
installed. MLflow's own scoring server (`mlflow models serve`) parses the body with the standard json module,
converts it through its schema enforcement and calls the pyfunc, and answers NaN pixels with 200.
bench/serving_latency.py measures this server against the floor and MLflow's; the README gives the figures.

Each connection gets a thread, which reads and checks its request; the batcher (serving/batcher.py) joins the
requests that arrive together into model calls. TensorFlow releases the GIL while the model runs.
One log line per request (method, path, status, milliseconds), never a body. With serving.request_log, a sample of
the answered images goes to the request log (serving/request_log.py) once the answer is out.
"""

from __future__ import annotations

import contextlib
import gc
import hmac
import ipaddress
import logging
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
import typing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import orjson
import prometheus_client

from core.config import ServingConfig
from core.errors import UserError
from serving import inputs, open_inference, openapi
from serving.batcher import Batcher, ShuttingDown
from serving.inputs import INPUT_ERRORS, InvalidInput
from serving.model import ModelInput, SceneModel, checked_pixels, model_calls_at_once
from serving.request_log import RequestLog

_LOG = logging.getLogger(__name__)
# Python's json.dumps writes float("nan") and float("inf") as these bare words, which JSON does not have.
_NON_FINITE = re.compile(rb"(?<![\w\"])(NaN|-?Infinity)(?![\w\"])")
# The tutorial's name for the pixels, and MLflow's and TF Serving's for the same tensor.
_PIXEL_FIELDS = ("inputs", "instances")
_INPUT_FIELDS = (*_PIXEL_FIELDS, "images")
_FIELDS = (*_INPUT_FIELDS, "params")
_PARAMS = ("class_names", "top_k")
# The method each route answers; the metrics count every other path as "other", so a scan of random paths adds
# no label values.
_ROUTES = {"/ping": "GET", "/metrics": "GET", "/invocations": "POST", "/v2": "GET", openapi.OPENAPI_PATH: "GET",
           **{path: "GET" for path in open_inference.HEALTH}}
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_CHUNKED = -1  # _body_length's answer for a chunked body
# After answering, how long a closing connection goes on reading (and dropping) what its client still sends: a
# refused upload then reads the answer instead of a reset connection.
_LINGER_S = 5.0
# After a hot swap, when the objects alive are set aside from the garbage collector again (_freeze_what_is_loaded):
# by then no batch holds the old version.
_FREEZE_AFTER_SWITCH_S = 5.0


class ScoringServer(ThreadingHTTPServer):
    """The HTTP server; `serve_forever()` answers until `shutdown()` (or Ctrl-C in the thread running it).

    `api_key` (see api_key()) is required on every route but /ping where given, and on any host but loopback.
    `request_log` is handed every answered model request; closing the server closes it (its last file is written).
    """

    daemon_threads = True  # a client holding its connection open never keeps the process from exiting
    # Connections waiting to be accepted (socketserver's default is 5): dozens of clients connecting at once while
    # the model keeps the CPU busy overflow a short queue, and the kernel resets the connections that do not fit.
    request_queue_size = 128

    def __init__(self, model: SceneModel, config: ServingConfig, port: int, api_key: str | None = None,
                 request_log: RequestLog | None = None):
        _refuse_open_exposure(config, api_key)
        self.model = model
        self.config = config
        self.api_key = None if api_key is None else api_key.encode()
        self.metrics = _Metrics(model)
        self.request_log = request_log
        if request_log is not None:
            self.metrics.registry.register(request_log)
        self.tls = _tls_context(config)
        # Before the socket: the base class closes the server (and so the batcher) where binding fails.
        self.batcher = Batcher(lambda: self.model, config, self.metrics.batch_size.observe, self.metrics.waited)
        if ":" in config.host:
            self.address_family = socket.AF_INET6
        try:
            super().__init__((config.host, port), _Handler)
        except OSError as error:
            raise UserError(f"cannot listen on {config.host}:{port} ({error.strerror}): stop the program using the "
                            "port, or choose another with --port or serving.port (or the address with --host or "
                            "serving.host)") from None
        if self.tls is not None:
            # The TLS handshake happens in each connection's own thread (_Handler.setup), so a slow or plain-HTTP
            # client never holds up accepting the next one.
            self.socket = self.tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def server_close(self) -> None:
        super().server_close()
        self.batcher.close()
        if self.request_log is not None:
            self.request_log.close()

    def switch(self, model: SceneModel) -> None:
        """Answer with `model` from now on. Handlers read self.model once per request, so one assignment switches
        atomically: a request under way finishes with the model it began with."""
        old, self.model = self.model, model
        self.metrics.switched(old, model)

    def shutdown_request(self, request) -> None:
        """A lingering close: the answer's end is signalled (SHUT_WR), then what the client still sends is read and
        dropped until it closes, or for _LINGER_S. Closing with unread bytes makes the kernel reset the connection,
        and a client in the middle of sending a body refused before it was read (401, 404, 405, 413) would get that
        reset, not the answer. A client that closes first costs one read that returns at once."""
        try:
            request.shutdown(socket.SHUT_WR)  # on an SSLSocket this also drops TLS: what follows is discarded raw
            deadline = time.monotonic() + _LINGER_S
            while (left := deadline - time.monotonic()) > 0:
                request.settimeout(min(left, 1.0))
                if not request.recv(65536):
                    break
        except OSError:  # already reset or closed by the client, or a timeout: nothing more to wait for
            pass
        self.close_request(request)

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.server_address[1]}"

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):  # the client went away mid-request
            _LOG.warning("connection from %s:%s ended early: %s", *client_address[:2], error)
        elif isinstance(error, ssl.SSLError):  # e.g. plain HTTP to the HTTPS port, or a certificate it refused
            _LOG.warning("TLS with %s:%s failed: %s", *client_address[:2], error.reason or error)
        else:
            _LOG.exception("connection from %s:%s failed", *client_address[:2])


def _method_of(path: str) -> str | None:
    """The method `path` answers, or None where it is no route."""
    if path in _ROUTES:
        return _ROUTES[path]
    model_route = open_inference.route(path)
    return None if model_route is None else open_inference.method(model_route[1])


def api_key(config: ServingConfig, environ: typing.Mapping[str, str] = os.environ) -> str | None:
    """The API key in the environment variable serving.api_key_env, or None where it is unset or empty;
    UserError where serving.host is not loopback and there is none."""
    key = environ.get(config.api_key_env) or None
    _refuse_open_exposure(config, key)
    return key


def _refuse_open_exposure(config: ServingConfig, key: str | None) -> None:
    if key is None and not _is_loopback(config.host):
        raise UserError(f"serving.host is {config.host!r}, which other machines can reach, and no API key is set: "
                        f"set the environment variable {config.api_key_env} (serving.api_key_env) to a secret that "
                        "clients send as 'Authorization: Bearer <key>', or serve on 127.0.0.1 behind a reverse "
                        "proxy (README, Serving)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name, or "" (every address)
        return False


def _tls_context(config: ServingConfig) -> ssl.SSLContext | None:
    if not config.tls_cert_file and not config.tls_key_file:
        return None
    if not (config.tls_cert_file and config.tls_key_file):
        raise UserError("HTTPS needs both serving.tls_cert_file and serving.tls_key_file: set the one missing "
                        "(the certificate chain and its private key, PEM), or neither for plain HTTP")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    except ssl.SSLError as error:
        raise UserError(f"serving.tls_cert_file {config.tls_cert_file} and serving.tls_key_file "
                        f"{config.tls_key_file} are not a PEM certificate and its private key ({error.reason}): "
                        "give the certificate chain and the key it was issued for") from None
    except OSError as error:
        raise UserError(f"cannot read serving.tls_cert_file {config.tls_cert_file} or serving.tls_key_file "
                        f"{config.tls_key_file} ({error.strerror}): set both to readable PEM files") from None
    return context


class _Metrics:
    """The server's Prometheus metrics, in a registry of its own (two servers in one process count apart)."""

    def __init__(self, model: SceneModel):
        self.registry = prometheus_client.CollectorRegistry()
        self.requests = prometheus_client.Counter(
            "places_serving_requests", "HTTP requests answered, by route and status.", ["route", "status"],
            registry=self.registry)
        self.latency = prometheus_client.Histogram(
            "places_serving_request_duration_seconds", "From the request's headers to its answer, by route.",
            ["route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.images = prometheus_client.Counter(
            "places_serving_images_predicted", "Images answered with probabilities.", registry=self.registry)
        self.model_info = prometheus_client.Gauge(
            "places_serving_model_info", "The registered model being served (always 1).", ["name", "version"],
            registry=self.registry)
        self.model_info.labels(model.name, model.version).set(1)
        self.batch_size = prometheus_client.Histogram(
            "places_serving_batch_size", "Images in each model call (serving.max_batch_size at most).",
            registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.batch_wait = prometheus_client.Histogram(
            "places_serving_batch_wait_seconds", "From a checked request joining the queue to its batch's model call.",
            registry=self.registry, buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                             0.25, 0.5, 1))

    def waited(self, seconds: list[float]) -> None:
        for wait in seconds:
            self.batch_wait.observe(wait)

    def switched(self, old: SceneModel, new: SceneModel) -> None:
        self.model_info.labels(new.name, new.version).set(1)
        self.model_info.remove(old.name, old.version)

    def observe(self, path: str, status: int, seconds: float) -> None:
        if path in _ROUTES:
            route = path
        else:
            model_route = open_inference.route(path)
            route = model_route[0] if model_route else "other"
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def text(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


class Invocation(typing.NamedTuple):
    """A checked POST /invocations body: what it asks the model, and how the answer is to look."""
    model_input: ModelInput
    class_names: bool
    top_k: int

    def answer(self, probabilities: np.ndarray, model: SceneModel) -> tuple[bytes, dict[str, str]]:
        """The JSON answer, `probabilities` coming from `model`, and no headers of its own."""
        result: dict[str, typing.Any] = {"predictions": probabilities}
        if self.class_names:
            result["class_names"] = model.class_names
        if self.top_k:
            result["top_classes"] = [[{"class": top.key, "display_name": top.display_name,
                                       "probability": top.probability}
                                      for top in row] for row in model.top_classes(probabilities, self.top_k)]
        return orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY), {}


def invocation(model: SceneModel, body: bytes) -> Invocation:
    """A POST /invocations `body`, parsed and checked against `model`; InvalidInput says what is wrong with it."""
    request = _parse_json(body)
    if not isinstance(request, dict):
        raise InvalidInput(f"the body is a JSON {type(request).__name__}, not an object: send "
                           '{"inputs": [...]} or {"images": [...]}')
    unknown = sorted(set(request) - set(_FIELDS))
    if unknown:
        raise InvalidInput(f"unknown field {', '.join(map(repr, unknown))}: send 'inputs' (pixels, the tutorial's "
                           "format; 'instances' is taken as the same) or 'images' (base64 JPEG/PNG), and optionally "
                           "'params'")
    given = [name for name in _INPUT_FIELDS if name in request]
    if len(given) != 1:
        raise InvalidInput("send exactly one of 'inputs' (pixels [N, 128, 128, 3] in [0, 1], the tutorial's format), "
                           "'instances' (the same pixels, as MLflow and TF Serving name them) and 'images' (a list "
                           f"of base64 JPEG or PNG images){'; this body has ' + ' and '.join(given) if given else ''}")
    class_names, top_k = _params(request.get("params", {}), len(model.class_names))
    if given[0] in _PIXEL_FIELDS:
        model_input = checked_pixels(request[given[0]], given[0])
    else:
        model_input = model.checked_images(inputs.base64_images(request["images"]))
    return Invocation(model_input, class_names, top_k)


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


class _Handler(BaseHTTPRequestHandler):
    server: ScoringServer
    protocol_version = "HTTP/1.1"  # keep-alive: a client's next request skips the TCP handshake
    # The headers and the body go out in two writes; with Nagle's algorithm the second waits for the client's
    # delayed ACK of the first, 40 ms on Linux.
    disable_nagle_algorithm = True
    timeout = 60  # seconds a connection may sit idle, or a body take to arrive, before it is closed

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()  # under the connection's timeout, set by super().setup()

    def do_GET(self) -> None:
        self._started = time.perf_counter()
        if self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers:
            # A body on a GET (HTTP gives it no meaning) is left unread, where it would be taken for the
            # connection's next request: the connection closes after the answer (a lingering close).
            self.close_connection = True
        if self.path == "/ping":
            model = self.server.model
            self._send(200, orjson.dumps({"status": "ok", "model": model.name, "version": model.version}))
        elif self.path in open_inference.HEALTH:
            self._send(200, orjson.dumps(open_inference.HEALTH[self.path]))
        elif not self._authorized():
            return
        elif self.path == "/metrics":
            self._send(200, self.server.metrics.text(), content_type=prometheus_client.CONTENT_TYPE_LATEST)
        elif self.path == "/v2":
            self._send(200, orjson.dumps(open_inference.server_metadata(self.server.model.version)))
        elif self.path == openapi.OPENAPI_PATH:
            self._send(200, orjson.dumps(openapi.document(self.server.model, self.server.config,
                                                          self.server.api_key is not None, _ROUTES)))
        elif (model_route := open_inference.route(self.path)) is not None:
            self._model_get(model_route[1])
        elif self.path in _ROUTES:
            self._send_wrong_method(_ROUTES[self.path])
        else:
            self._send_error(404, f"there is no GET {self.path}: use GET /ping, GET /metrics, POST /invocations or "
                                  "the Open Inference Protocol's /v2 routes")

    def _model_get(self, action: str | None) -> None:
        model = self.server.model
        try:
            open_inference.check_model(model, self.path)
        except open_inference.UnknownModel as error:
            self._send_error(404, str(error))
            return
        if action == "/infer":
            self._send_wrong_method("POST")
        elif action == "/ready":
            self._send(200, orjson.dumps({"name": model.name, "ready": True}))
        else:
            self._send(200, orjson.dumps(open_inference.model_metadata(model)))

    def do_POST(self) -> None:
        self._started = time.perf_counter()
        if not self._authorized():
            return
        model_route = None if self.path == "/invocations" else open_inference.route(self.path)
        infers = model_route is not None and model_route[1] == "/infer"
        if self.path != "/invocations" and not infers:
            self._refuse_method("POST /invocations or POST /v2/models/NAME/infer")
            return
        with self.server.batcher.request() as predict:
            self._answer_model_request(infers, predict)

    def _answer_model_request(self, infers: bool, predict: typing.Callable[[ModelInput],
                                                                            tuple[np.ndarray, SceneModel]]) -> None:
        body = self._body()
        if body is None:
            return
        try:
            model = self.server.model
            if infers:
                open_inference.check_model(model, self.path)
                parsed = open_inference.inference(model, body, self.headers.get(open_inference.HEADER_LENGTH))
            else:
                parsed = invocation(model, body)
            probabilities, model = predict(parsed.model_input)
            result, headers = parsed.answer(probabilities, model)
        except open_inference.UnknownModel as error:
            self._send_error(404, str(error))
            return
        except INPUT_ERRORS as error:
            self._send_error(400, str(error))
            return
        except ShuttingDown:
            self._send_error(503, "the server is shutting down: send the request again once it is back", close=True)
            return
        except Exception as error:  # a bug or a model failure: this request fails, the server goes on
            _LOG.exception("POST %s failed", self.path)
            self._send_error(500, f"the model failed on this request ({type(error).__name__}); the server log has "
                                  "the details")
            return
        self.server.metrics.images.inc(len(probabilities))
        self._send(200, result, content_type="application/octet-stream" if headers else "application/json",
                   headers=headers)
        if self.server.request_log is not None:  # after the answer went out: the client never waits for it
            self.server.request_log.add(parsed.model_input, probabilities, model)

    def _other_method(self) -> None:
        """The standard methods no route answers (http.server would say 501, not implemented): 405 with the one
        the path answers, as for a POST to a GET route."""
        self._started = time.perf_counter()
        if self._authorized():
            self._refuse_method("GET /ping, GET /openapi.json (every route) or POST /invocations")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_QUERY = _other_method

    def _authorized(self) -> bool:
        """Whether the request may go on; where not, it has been answered 401 or 403 and the connection closes
        (unread, the body cannot be told from the next request)."""
        key = self.server.api_key
        if key is None:
            return True
        header = self.headers.get("Authorization")
        scheme, _, token = (header or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            said = "has no Authorization header" if header is None else "has an Authorization header without a key"
            status, message = 401, (f"the request {said}: this server needs 'Authorization: Bearer <key>', with the "
                                    "API key its operator gave you")
        # The header's text is its bytes read as Latin-1 (http.client), so this gives back the bytes sent.
        elif not hmac.compare_digest(token.encode("latin-1", "replace"), key):
            status, message = 403, ("the API key in the Authorization header is not this server's: send the key its "
                                    "operator gave you")
        else:
            return True
        self._send_error(status, message, close=True,
                         headers={"WWW-Authenticate": 'Bearer realm="places"'} if status == 401 else None)
        return False

    def _refuse_method(self, instead: str) -> None:
        """405 with the method the path answers, or 404 where it is no route (`instead`: what to ask for); the
        connection closes, its body unread."""
        allowed = _method_of(self.path)
        if allowed is not None:
            self._send_wrong_method(allowed, close=True)
        else:
            self._send_error(404, f"there is no {self.command} {self.path}: use {instead}", close=True)

    def _send_wrong_method(self, allowed: str, close: bool = False) -> None:
        self._send_error(405, f"{self.path} answers {allowed} only, not {self.command}", close=close,
                         headers={"Allow": allowed})

    def _body(self) -> bytes | None:
        """The request's body, or None once the request has been answered with why it is refused."""
        length = self._body_length()
        if length is None:
            return None
        if length == _CHUNKED:
            return self._chunked_body()
        body = self.rfile.read(length)
        if len(body) < length:
            self._send_error(400, f"the body ended after {len(body)} of the {length} bytes Content-Length announced",
                             close=True)
            return None
        return body

    def _body_length(self) -> int | None:
        """The announced body size (_CHUNKED for a chunked body), or None once the request has been answered with
        why it is refused."""
        header = self.headers.get("Content-Length")
        coding = self.headers.get("Transfer-Encoding")
        if coding is not None:
            if coding.strip().lower() != "chunked":
                self._send_error(501, f"Transfer-Encoding '{coding}' is not understood here: send the body as it is "
                                      "with Content-Length, or chunked", close=True)
                return None
            if header is not None:
                # Two lengths that proxies may read differently: the way requests are smuggled past them.
                self._send_error(400, "the request has both Content-Length and Transfer-Encoding: chunked: send "
                                      "one of them", close=True)
                return None
            return _CHUNKED
        if header is None:
            self._send_error(411, "the request has no Content-Length header: send the JSON body with its length, or "
                                  "chunked", close=True)
            return None
        try:
            length = int(header)
            if length < 0:
                raise ValueError(header)
        except ValueError:
            self._send_error(400, f"Content-Length '{header}' is not a byte count", close=True)
            return None
        if length > self.server.config.max_request_bytes:
            # Refused unread: the connection closes (lingering: shutdown_request) rather than read a body this large.
            self._send_too_large(f"the body is {length} bytes")
            return None
        return length

    def _chunked_body(self) -> bytes | None:
        """A chunked body (RFC 9112, section 7.1), read up to serving.max_request_bytes; trailers are skipped."""
        chunks, size = [], 0
        while True:
            line = self.rfile.readline(1024)
            chunk_size = _CHUNK_SIZE.match(line)
            if not line.endswith(b"\n") or chunk_size is None:
                self._send_error(400, "the chunked body is cut short or garbled: each chunk starts with its size in "
                                      "hexadecimal on a line of its own, and a chunk of size 0 ends the body",
                                 close=True)
                return None
            length = int(chunk_size.group(), 16)
            if length == 0:
                break
            size += length
            if size > self.server.config.max_request_bytes:
                self._send_too_large(f"the chunked body is over {size - length} bytes")
                return None
            chunk = self.rfile.read(length)
            if len(chunk) < length or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                self._send_error(400, "the chunked body ended inside a chunk: send each chunk's full size", close=True)
                return None
            chunks.append(chunk)
        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass
        return b"".join(chunks)

    def _send_too_large(self, what: str) -> None:
        self._send_error(413, f"{what}, more than serving.max_request_bytes ({self.server.config.max_request_bytes}): "
                              "send fewer images per request", close=True)

    def handle_expect_100(self) -> bool:
        # curl asks before sending a body over 1 MB: a request without the key, or an oversized one, is refused
        # before the body is sent.
        self._started = time.perf_counter()
        return self._authorized() and self._body_length() is not None and super().handle_expect_100()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (a garbled request line, an unsupported method), in JSON like ours.
        self._started = getattr(self, "_started", time.perf_counter())
        self._send_error(code, message or explain or "bad request", close=True)

    def _send_error(self, status: int, message: str, close: bool = False, headers: dict[str, str] | None = None
                    ) -> None:
        self._send(status, orjson.dumps({"error": message}), close, headers=headers)

    def _send(self, status: int, body: bytes, close: bool = False, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close or self.close_connection:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        # Logged and counted before the body goes out, so both are there by the time the client has its answer. A
        # request line too garbled to parse leaves no command or path.
        seconds = time.perf_counter() - self._started
        path = getattr(self, "path", "-")
        _LOG.info("%s %s %d %.1f ms", getattr(self, "command", None) or "-", path, status, seconds * 1e3)
        self.server.metrics.observe(path, status, seconds)
        self.wfile.write(body)

    def log_request(self, code="-", size="-") -> None:
        pass  # _send logs each request once, with its duration

    def log_message(self, format: str, *args) -> None:
        _LOG.warning("%s: %s", self.address_string(), format % args)


# serving.model.follow with its config and reference bound: watches the registry, calls switch with each new model.
Follow = typing.Callable[[SceneModel, typing.Callable[[SceneModel], None], threading.Event], None]


@contextlib.contextmanager
def running(model: SceneModel, config: ServingConfig, port: int = 0, api_key: str | None = None,
            follow: Follow | None = None, request_log: RequestLog | None = None) -> typing.Iterator[ScoringServer]:
    """The server answering from a background thread while the block runs (port 0: a free port; see .url)."""
    server = ScoringServer(model, config, port, api_key, request_log)
    thread = threading.Thread(target=server.serve_forever, name="scoring-server", daemon=True)
    thread.start()
    stop = _following(server, follow)
    try:
        yield server
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join()


def _following(server: ScoringServer, follow: Follow | None,
               switch: typing.Callable[[SceneModel], None] | None = None) -> threading.Event:
    """`follow` running in a background thread, switching `server`'s model (with `switch`, default server.switch),
    until the event answered is set."""
    stop = threading.Event()
    if follow is not None:
        threading.Thread(target=follow, args=(server.model, switch or server.switch, stop), name="model-reload",
                         daemon=True).start()
    return stop


def _freeze_what_is_loaded() -> None:
    """Set every object alive now (the model's graph, TensorFlow and the other libraries) aside from the garbage
    collector's full passes. Those passes walk every tracked object, and TensorFlow keeps hundreds of thousands:
    parsing one tutorial request (tens of thousands of nested JSON lists) sets one off now and then, and the
    request that does waits for a large fraction of a second. Objects set aside are still freed when no longer
    referenced; one full pass first frees what is already garbage (after a hot swap, the old version)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def serve(model: SceneModel, config: ServingConfig, key: str | None, echo: typing.Callable[[str], None],
          follow: Follow | None = None, request_log: RequestLog | None = None) -> None:
    """Answer at serving.host and serving.port, in this thread, until Ctrl-C; `key` from api_key(); `follow`
    (see running()) swaps in new versions; `request_log` keeps a sample of the requests."""
    _LOG.setLevel(logging.INFO)
    logging.getLogger("serving.model").setLevel(logging.INFO)
    server = ScoringServer(model, config, config.port, key, request_log)

    def switch(new: SceneModel) -> None:
        server.switch(new)
        # The old version is still referenced for a moment (the loader's cache, a batch in flight): set aside now,
        # its cycles would never be freed. Back in view it is collected; the new one is set aside a little later.
        gc.unfreeze()
        later = threading.Timer(_FREEZE_AFTER_SWITCH_S, _freeze_what_is_loaded)
        later.daemon = True  # never keeps a stopping server waiting
        later.start()

    _freeze_what_is_loaded()
    stop = _following(server, follow, switch)
    access = f"the API key in ${config.api_key_env} needed" if key else "no API key"
    batching = (f"batches of up to {config.max_batch_size} images, {model_calls_at_once(config)} model calls at once"
                if config.max_batch_size else "no batching")
    echo(f"serving {model.reference} at {server.url} (POST /invocations, GET /ping, GET /metrics, "
         f"GET /openapi.json; {access}; {batching}); Ctrl-C stops")
    if request_log is not None:
        echo(f"logging {request_log.percent} % of the images sent, with the answers, under {request_log.prefix} "
             "(serving.request_log) for `./places monitor`")
    _stop_on(signal.SIGINT, signal.SIGTERM)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        echo("stopping")
    finally:
        stop.set()
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
