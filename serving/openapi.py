"""The OpenAPI 3.1 document of serving/server.py's routes, answered at GET /openapi.json: built per request from
what the server itself uses (its route table, the model's name, version and classes, the image size,
serving.max_request_bytes, whether a key is configured), so it cannot drift from what the server answers.

Each status listed is one the server really sends on that route; the health checks never list 401/403, and where
no key is configured no route does. A method a path does not answer gets 405 with an Allow header, and a path
that is no route 404: both are said in the description, since OpenAPI has no operation to hang them on.
"""

from __future__ import annotations

import typing

from core.config import ServingConfig
from serving import open_inference
from serving.inputs import PIXELS_SHAPE
from serving.model import SceneModel

OPENAPI_PATH = "/openapi.json"
_SECURITY_SCHEME = "apiKey"
_ERROR = {"$ref": "#/components/schemas/Error"}
_BASE64_IMAGE = {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/*",
                 "description": "a JPEG or PNG image file's bytes, base64 (standard alphabet, with padding)"}
# An 8 x 8 PNG of one colour: a real image for the request examples that keeps the document short.
_EXAMPLE_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFUlEQVR42mOsWHCCARtgYsABBqcEAHoHAfCY5IuSAAAAAElFTkSu"
                "QmCC")
# The routes that never need the key.
_OPEN = frozenset({"/ping", *open_inference.HEALTH})
# The Open Inference Protocol's model routes (open_inference.route), and the method each answers.
_MODEL_ROUTES = {f"/v2/models/{{name}}{version}{action}": open_inference.method(action)
                 for version in ("", "/versions/{version}") for action in ("", "/ready", "/infer")}


def document(model: SceneModel, config: ServingConfig, keyed: bool, routes: typing.Mapping[str, str]) -> dict:
    """The OpenAPI document for a server with `routes` (path: method, the server's own table) and the
    Open Inference Protocol's model routes, serving `model`; `keyed` where an API key is configured."""
    operations = _operations(model, config)
    paths: dict[str, dict] = {}
    for path, method in {**routes, **_MODEL_ROUTES}.items():
        operation = operations[path]
        if keyed and path not in _OPEN:
            operation["responses"].update(_key_errors(config))
        elif keyed:
            operation["security"] = []
        paths[path] = {method.lower(): operation}
    components: dict[str, typing.Any] = {"schemas": _schemas(model)}
    result = {
        "openapi": "3.1.0",
        "info": {"title": f"places: {model.name}", "version": model.version,
                 "description": f"Scene classification by {model.name} version {model.version} "
                                f"({len(model.class_names)} classes): the tutorial's POST /invocations, and the Open "
                                "Inference Protocol (KServe v2) under /v2. Another method on a path here gets 405 "
                                "with an Allow header; a path not here gets 404. Every error is JSON: "
                                '{"error": "<what was wrong and what to send>"}.'},
        "paths": paths,
        "components": components,
    }
    if keyed:
        components["securitySchemes"] = {_SECURITY_SCHEME: {
            "type": "http", "scheme": "bearer",
            "description": f"The API key that the server's operator set in ${config.api_key_env} "
                           "(serving.api_key_env), sent as 'Authorization: Bearer <key>'."}}
        result["security"] = [{_SECURITY_SCHEME: []}]
    return result


def _operations(model: SceneModel, config: ServingConfig) -> dict[str, dict]:
    """The operation on each path, before the key's errors are added."""
    operations = {
        "/ping": _get("Health check: the model and version being served.", "#/components/schemas/Ping"),
        "/metrics": _get("Prometheus metrics: requests by route and status, latency, the model's version, images "
                         "predicted.", {"text/plain": {"schema": {"type": "string"}}}),
        "/invocations": _invocations(model, config),
        "/v2": _get("Open Inference Protocol: the server's metadata.", "#/components/schemas/ServerMetadata"),
        "/v2/health/live": _get("Open Inference Protocol: whether the server is live.",
                                "#/components/schemas/Live"),
        "/v2/health/ready": _get("Open Inference Protocol: whether the server is ready.",
                                 "#/components/schemas/Ready"),
        OPENAPI_PATH: _get("This document.", "#/components/schemas/OpenApiDocument"),
    }
    for path in _MODEL_ROUTES:
        operations[path] = _model_operation(model, config, path)
    return operations


def _get(summary: str, answer: str | dict) -> dict:
    """A GET operation answering 200 with the schema named `answer` in JSON, or with `answer`'s content."""
    ok = _json_answer("The answer.", answer) if isinstance(answer, str) else {"description": "The answer.",
                                                                              "content": answer}
    return {"summary": summary, "responses": {"200": ok}}


def _json_answer(description: str, schema: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": schema}}}}


def _errors(statuses: typing.Mapping[str, str]) -> dict:
    return {status: {"description": description, "content": {"application/json": {"schema": _ERROR}}}
            for status, description in statuses.items()}


def _key_errors(config: ServingConfig) -> dict:
    errors = _errors({"401": "No 'Authorization: Bearer <key>' header.",
                      "403": f"A key that is not the one in ${config.api_key_env}."})
    errors["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string", "const": 'Bearer realm="places"'}}}
    return errors


def _body_errors(config: ServingConfig) -> dict:
    """The statuses any request with a body can get before the body is looked at (serving/server.py's _body)."""
    return _errors({
        "400": "The body is not what the route takes (the error says what is wrong and what to send), it ended "
               "before its Content-Length, or it has both Content-Length and Transfer-Encoding.",
        "411": "The request has neither Content-Length nor Transfer-Encoding: chunked.",
        "413": f"The body is over serving.max_request_bytes ({config.max_request_bytes} bytes); the connection "
               "closes without reading it.",
        "500": "The model failed on this request (a bug); the server log has the details and the server goes on.",
        "501": "A Transfer-Encoding other than chunked.",
        "503": "The server is shutting down: the request was not answered; send it again once the server is back.",
    })


def _invocations(model: SceneModel, config: ServingConfig) -> dict:
    return {
        "summary": "The tutorial's endpoint: class probabilities for pixels or encoded images.",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/InvocationsRequest"},
            "examples": {"image": {"summary": "A PNG, with the class names and the top classes",
                                   "value": {"images": [_EXAMPLE_PNG],
                                             "params": {"class_names": True,
                                                        "top_k": min(3, len(model.class_names))}}}}}}},
        "responses": {"200": _json_answer("One row of probabilities per image, in the order sent.",
                                          "#/components/schemas/InvocationsAnswer"),
                      **_body_errors(config)},
    }


def _model_operation(model: SceneModel, config: ServingConfig, path: str) -> dict:
    parameters = [{"name": "name", "in": "path", "required": True,
                   "schema": {"type": "string", "examples": [model.name]},
                   "description": f"The model's name: this server has only {model.name}."}]
    if "{version}" in path:
        parameters.append({"name": "version", "in": "path", "required": True,
                           "schema": {"type": "string", "examples": [model.version]},
                           "description": "The version: this server has only the one it serves."})
    not_found = _errors({"404": "This server has no model of that name (or version); the error names the one it "
                                "serves."})
    if path.endswith("/ready"):
        return {"summary": "Open Inference Protocol: whether the model is ready.", "parameters": parameters,
                "responses": {"200": _json_answer("Ready.", "#/components/schemas/ModelReady"), **not_found}}
    if not path.endswith("/infer"):
        return {"summary": "Open Inference Protocol: the model's inputs and outputs.", "parameters": parameters,
                "responses": {"200": _json_answer("The model's metadata.", "#/components/schemas/ModelMetadata"),
                              **not_found}}
    parameters.append({
        "name": open_inference.HEADER_LENGTH, "in": "header", "required": False,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
        "description": "With the binary tensor data extension: the length of the JSON that starts the body."})
    image = {"name": "images", "datatype": "BYTES", "shape": [1], "data": [_EXAMPLE_PNG]}
    answer = _json_answer("The probabilities: JSON, or binary where the request asks (the JSON header, then "
                          "FP32 little-endian bytes).", "#/components/schemas/InferResponse")
    answer["content"]["application/octet-stream"] = {"schema": {"type": "string", "contentMediaType":
                                                                "application/octet-stream"}}
    answer["headers"] = {open_inference.HEADER_LENGTH: {
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
        "description": "In a binary answer: the length of the JSON header before the tensor bytes."}}
    return {
        "summary": "Open Inference Protocol: class probabilities for FP32 pixels or BYTES images.",
        "parameters": parameters,
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}, "examples": {
                "json": {"summary": "A PNG as BYTES, the answer in JSON", "value": {"inputs": [image]}},
                "binary": {"summary": "The same, the answer in binary form",
                           "value": {"inputs": [image], "parameters": {"binary_data_output": True}}}}},
            "application/octet-stream": {"schema": {
                "type": "string", "contentMediaType": "application/octet-stream",
                "description": f"The binary tensor data extension: the InferRequest JSON, its length in "
                               f"{open_inference.HEADER_LENGTH}, then each input's bytes (FP32 little-endian; "
                               "BYTES as a 4-byte little-endian length before each element), the input's "
                               "parameters.binary_data_size long."}}}},
        "responses": {"200": answer, **not_found, **_body_errors(config)},
    }


def _schemas(model: SceneModel) -> dict:
    size, _, channels = PIXELS_SHAPE
    classes = len(model.class_names)
    pixel = {"type": "number", "minimum": 0, "maximum": 1}
    row = {"type": "array", "minItems": size, "maxItems": size,
           "items": {"type": "array", "minItems": channels, "maxItems": channels, "items": pixel}}
    probabilities = {"type": "array", "minItems": classes, "maxItems": classes,
                     "items": {"type": "number", "minimum": 0, "maximum": 1}}
    class_key = {"type": "string", "enum": list(model.class_names)}
    return {
        "Error": {"type": "object", "required": ["error"], "additionalProperties": False,
                  "properties": {"error": {"type": "string", "description": "What was wrong, and what to send."}}},
        "Pixels": {"type": "array", "minItems": 1, "items": {"type": "array", "minItems": size, "maxItems": size,
                                                           "items": row},
                   "description": f"N images as RGB pixels scaled to [0, 1], shape [N, {size}, {size}, {channels}] "
                                  "(the tutorial's preprocess_image)."},
        "InvocationsRequest": {
            "type": "object", "additionalProperties": False,
            "oneOf": [{"required": ["inputs"]}, {"required": ["instances"]}, {"required": ["images"]}],
            "properties": {
                "inputs": {"$ref": "#/components/schemas/Pixels"},
                "instances": {"$ref": "#/components/schemas/Pixels",
                              "description": "The same pixels, under MLflow's and TF Serving's name."},
                "images": {"type": "array", "minItems": 1, "items": _BASE64_IMAGE,
                           "description": "JPEG or PNG images of any size."},
                "params": {"type": "object", "additionalProperties": False, "properties": {
                    "class_names": {"type": "boolean", "description": "Add class_names to the answer."},
                    "top_k": {"type": "integer", "minimum": 0, "maximum": classes,
                              "description": "Add each image's k most probable classes (0: none)."}}}}},
        "InvocationsAnswer": {
            "type": "object", "required": ["predictions"], "additionalProperties": False,
            "properties": {
                "predictions": {"type": "array", "items": probabilities},
                "class_names": {"const": list(model.class_names),
                                "description": "The class keys, in the predictions' column order."},
                "top_classes": {"type": "array", "items": {"type": "array", "maxItems": classes, "items": {
                    "type": "object", "required": ["class", "display_name", "probability"],
                    "additionalProperties": False,
                    "properties": {"class": class_key, "display_name": {"type": "string"},
                                   "probability": {"type": "number", "minimum": 0, "maximum": 1}}}}}}},
        "Ping": {"type": "object", "required": ["status", "model", "version"], "additionalProperties": False,
                 "properties": {"status": {"const": "ok"}, "model": {"const": model.name},
                                "version": {"type": "string", "examples": [model.version]}}},
        "Live": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
        "Ready": {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}},
        "OpenApiDocument": {"type": "object", "required": ["openapi", "info", "paths"]},
        "ServerMetadata": {"type": "object", "required": ["name", "version", "extensions"],
                           "properties": {"name": {"const": open_inference.SERVER_NAME},
                                          "version": {"type": "string"},
                                          "extensions": {"type": "array", "items": {"type": "string"}}}},
        "ModelReady": {"type": "object", "required": ["name", "ready"],
                       "properties": {"name": {"const": model.name}, "ready": {"type": "boolean"}}},
        "TensorMetadata": {"type": "object", "required": ["name", "datatype", "shape"],
                           "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                                          "shape": {"type": "array", "items": {"type": "integer"}}}},
        "ModelMetadata": {"type": "object", "required": ["name", "versions", "platform", "inputs", "outputs"],
                          "properties": {
                              "name": {"const": model.name}, "platform": {"type": "string"},
                              "versions": {"type": "array", "items": {"type": "string"}},
                              "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/TensorMetadata"}},
                              "outputs": {"type": "array",
                                          "items": {"$ref": "#/components/schemas/TensorMetadata"}}}},
        "InferRequest": _infer_request(size, channels),
        "InferResponse": {
            "type": "object", "required": ["model_name", "model_version", "outputs"],
            "properties": {
                "model_name": {"const": model.name}, "model_version": {"type": "string"},
                "id": {"description": "The request's id, as it was sent."},
                "outputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                    "type": "object", "required": ["name", "datatype", "shape"],
                    "properties": {
                        "name": {"const": "probabilities"}, "datatype": {"const": "FP32"},
                        "shape": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2,
                                  "maxItems": 2, "description": f"[N, {classes}]"},
                        "data": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1},
                                 "description": "Row-major [N, classes]; absent in a binary answer."},
                        "parameters": {"type": "object", "properties": {
                            "binary_data_size": {"type": "integer", "minimum": 0}}}}}}}},
    }


def _infer_request(size: int, channels: int) -> dict:
    binary_size = {"type": "object", "properties": {"binary_data_size": {
        "type": "integer", "minimum": 0, "description": "The input's bytes after the JSON, in binary form."}}}
    pixels = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
        "name": {"const": "pixels"}, "datatype": {"const": "FP32"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 4, "maxItems": 4,
                  "description": f"[N, {size}, {size}, {channels}]"},
        "data": {"type": "array", "minItems": 1,
                 "description": f"[N, {size}, {size}, {channels}] numbers in [0, 1], nested or flat (row-major)."},
        "parameters": binary_size}}
    images = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
        "name": {"const": "images"}, "datatype": {"const": "BYTES"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1, "maxItems": 1},
        "data": {"type": "array", "minItems": 1, "items": _BASE64_IMAGE}, "parameters": binary_size}}
    return {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"},
        "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {"oneOf": [pixels, images]}},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"const": "probabilities"},
            "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}}}}},
        "parameters": {"type": "object", "properties": {"binary_data_output": {
            "type": "boolean", "description": "Answer in binary form."}}}}}
