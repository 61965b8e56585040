"""The Open Inference Protocol (KServe v2, what Triton and KServe clients speak) over the served model, for
serving/server.py: metadata, and inference on FP32 pixels or BYTES images, in JSON or with the binary tensor
data extension (tritonclient's default).

    GET  /v2/health/live, /v2/health/ready      {"live": true}, {"ready": true}; never need the API key
    GET  /v2                                    the server's name, version and extensions
    GET  /v2/models/NAME[/versions/V]           inputs, outputs, their datatypes and shapes
    GET  /v2/models/NAME[/versions/V]/ready     {"name": NAME, "ready": true}
    POST /v2/models/NAME[/versions/V]/infer     one input: "pixels" FP32 [N, 128, 128, 3] in [0, 1], or "images"
                                                BYTES [N] (JPEG or PNG; base64 strings in JSON, raw in binary)
                                            ->  "probabilities" FP32 [N, classes]

In binary form (the extension) the JSON header comes first, its length in the Inference-Header-Content-Length
header, then each binary input's bytes in order; FP32 little-endian, BYTES as a 4-byte little-endian length
before each element. The answer is binary where the request asks (parameters.binary_data_output, or an output's
parameters.binary_data).
"""

from __future__ import annotations

import re
import struct
import typing

import numpy as np
import orjson

from serving import inputs
from serving.inputs import InvalidInput
from serving.model import ModelInput, SceneModel, checked_pixels

SERVER_NAME = "places"
HEADER_LENGTH = "Inference-Header-Content-Length"
HEALTH = {"/v2/health/live": {"live": True}, "/v2/health/ready": {"ready": True}}
_MODEL_PATH = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<action>/ready|/infer)?")
_OUTPUT = "probabilities"
_NO_ID = object()


class UnknownModel(Exception):
    """A /v2/models path that names another model or version; the message says which this server has."""


def route(path: str) -> tuple[str, str | None] | None:
    """("/v2/models/{name}" + "/ready" or "/infer" or "", the action or None) for a model path, checked against
    nothing yet; None for any other path."""
    match = _MODEL_PATH.fullmatch(path)
    if match is None:
        return None
    action = match["action"]
    return f"/v2/models/{{name}}{action or ''}", action


def method(action: str | None) -> str:
    """The method a model route with `action` (see route()) answers: POST for /infer, GET for the rest."""
    return "POST" if action == "/infer" else "GET"


def check_model(model: SceneModel, path: str) -> None:
    """UnknownModel unless the model path names `model` (and its version, where it names one)."""
    match = _MODEL_PATH.fullmatch(path)
    if match["name"] != model.name or match["version"] not in (None, model.version):
        asked = match["name"] + (f" version {match['version']}" if match["version"] else "")
        raise UnknownModel(f"this server has no model {asked}: it serves {model.name} version {model.version}")


def server_metadata(version: str) -> dict:
    return {"name": SERVER_NAME, "version": version, "extensions": ["binary_tensor_data"]}


def model_metadata(model: SceneModel) -> dict:
    size, channels = inputs.PIXELS_SHAPE[0], inputs.PIXELS_SHAPE[2]
    return {"name": model.name, "versions": [model.version], "platform": "tensorflow_savedmodel",
            "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [-1, size, size, channels]},
                       {"name": "images", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": _OUTPUT, "datatype": "FP32", "shape": [-1, len(model.class_names)]}]}


class Inference(typing.NamedTuple):
    """A checked POST .../infer request: what it asks the model, and how the answer is to look."""
    model_input: ModelInput
    binary_output: bool
    request_id: typing.Any  # the request's "id", echoed in the answer; _NO_ID where it has none

    def answer(self, probabilities: np.ndarray, model: SceneModel) -> tuple[bytes, dict[str, str]]:
        """The answer, `probabilities` coming from `model`, and its headers."""
        output = {"name": _OUTPUT, "datatype": "FP32", "shape": list(probabilities.shape)}
        answer = {"model_name": model.name, "model_version": model.version, "outputs": [output]}
        if self.request_id is not _NO_ID:
            answer["id"] = self.request_id
        if not self.binary_output:
            output["data"] = probabilities.reshape(-1)
            return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY), {}
        data = probabilities.astype("<f4").tobytes()
        output["parameters"] = {"binary_data_size": len(data)}
        header = orjson.dumps(answer)
        return header + data, {HEADER_LENGTH: str(len(header))}


def inference(model: SceneModel, body: bytes, header_length: str | None) -> Inference:
    """A POST .../infer `body`, parsed and checked against `model`; InvalidInput says what is wrong with it."""
    request, binary = _split(body, header_length)
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or len(request["inputs"]) != 1:
        raise InvalidInput('the request needs "inputs": [one tensor], named "pixels" (FP32 [N, 128, 128, 3]) or '
                           '"images" (BYTES [N], JPEG or PNG)')
    tensor = request["inputs"][0]
    if not isinstance(tensor, dict):
        raise InvalidInput("inputs[0] must be an object with name, datatype, shape and data")
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if (name, datatype) not in (("pixels", "FP32"), ("images", "BYTES")):
        raise InvalidInput(f"inputs[0] is {name!r} {datatype!r}: send 'pixels' as FP32 or 'images' as BYTES")
    if not (isinstance(shape, list) and shape and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise InvalidInput(f"inputs[0].shape must be a list of sizes, not {shape!r}")
    raw = _binary_input(tensor, binary)
    if name == "pixels":
        model_input = checked_pixels(_pixels(tensor, shape, raw), "pixels")
    else:
        model_input = model.checked_images(_images(tensor, shape, raw),
                                           [f"images[{index}]" for index in range(shape[0])])
    return Inference(model_input, _binary_output(request), request.get("id", _NO_ID))


def _split(body: bytes, header_length: str | None) -> tuple[typing.Any, bytes]:
    """The JSON header, parsed, and the binary data after it."""
    length = len(body)
    if header_length is not None:
        # isdigit alone passes '²', which int() refuses: a header's bytes are read as Latin-1.
        if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(body):
            raise InvalidInput(f"{HEADER_LENGTH} '{header_length}' is not a byte count within the body's "
                               f"{len(body)} bytes")
        length = int(header_length)
    try:
        return orjson.loads(body[:length]), body[length:]
    except orjson.JSONDecodeError as error:
        raise InvalidInput(f"the request's JSON is not valid ({error})") from None


def _binary_input(tensor: dict, binary: bytes) -> bytes | None:
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is None:
        if binary:
            raise InvalidInput("the body has binary data after its JSON, but the input has no "
                               "parameters.binary_data_size")
        return None
    if size != len(binary):
        raise InvalidInput(f"the input's binary_data_size is {size}, but {len(binary)} bytes follow the JSON")
    return binary


def _pixels(tensor: dict, shape: list[int], raw: bytes | None) -> np.ndarray:
    if raw is not None:
        if len(raw) != 4 * int(np.prod(shape)):
            raise InvalidInput(f"pixels has {len(raw)} bytes, not the {4 * int(np.prod(shape))} of FP32 {shape}")
        return np.frombuffer(raw, "<f4").reshape(shape)
    try:
        # As nested or flat lists, both of which the protocol allows; checked_pixels checks the values.
        data = np.asarray(tensor.get("data"))
    except ValueError:
        raise InvalidInput("pixels' data is ragged: its lists are not all of one length") from None
    if data.size != int(np.prod(shape)):
        raise InvalidInput(f"pixels has {data.size} values, not the {int(np.prod(shape))} of shape {shape}")
    return data.reshape(shape)


def _images(tensor: dict, shape: list[int], raw: bytes | None) -> list[bytes]:
    if len(shape) != 1:
        raise InvalidInput(f"images must have shape [N], one element an image, not {shape}")
    if raw is not None:
        images, offset = [], 0
        while offset + 4 <= len(raw):
            (size,) = struct.unpack_from("<I", raw, offset)
            images.append(raw[offset + 4:offset + 4 + size])
            offset += 4 + size
        if offset != len(raw) or len(images) != shape[0]:
            raise InvalidInput(f"the binary images are not {shape[0]} elements, each a 4-byte length and its bytes")
        return images
    data = tensor.get("data")
    if not isinstance(data, list) or len(data) != shape[0]:
        raise InvalidInput(f"images' data must be {shape[0]} base64 strings, one JPEG or PNG image each")
    return inputs.base64_images(data, "images")


def _binary_output(request: dict) -> bool:
    """Whether the answer is to be binary (the extension); InvalidInput where the outputs ask for another tensor."""
    requested = request.get("outputs") or [{"name": _OUTPUT}]
    if not isinstance(requested, list) or any(not isinstance(output, dict) or output.get("name") != _OUTPUT
                                              for output in requested):
        raise InvalidInput(f"outputs may only ask for {_OUTPUT!r}")
    return bool((request.get("parameters") or {}).get("binary_data_output")) or any(
        (output.get("parameters") or {}).get("binary_data") for output in requested)
