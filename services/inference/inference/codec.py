"""KServe v2 REST bodies <-> numpy tensors: JSON tensors and the binary tensor data extension.

A binary request is a JSON header of `Inference-Header-Content-Length` bytes followed by
the raw tensors, in input order, each `parameters.binary_data_size` bytes long. BYTES
elements are encoded as a 4-byte little-endian length followed by the bytes.

The request's JSON is parsed with orjson and checked here, field by field, as the protocol
describes it: `id`, `parameters`, `inputs` (at least one), `outputs`, and the `model_name` and
`model_version` some clients (KServe's) repeat from the path. Fields the protocol does not name
are ignored, as the protocol's own servers (Triton, KServe, MLServer) do.
"""

from __future__ import annotations

import base64
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from inference.errors import BadRequest

HEADER_LENGTH = "Inference-Header-Content-Length"

# v2 protocol datatype <-> numpy dtype; BYTES tensors are object arrays of `bytes`
DATATYPES = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_DATATYPE_OF = {dtype: name for name, dtype in DATATYPES.items()}
_LITTLE_ENDIAN = {name: dtype.newbyteorder("<") for name, dtype in DATATYPES.items()}  # the binary extension's order


@dataclass(slots=True)
class Tensor:
    name: str
    datatype: str
    array: np.ndarray


@dataclass(slots=True)
class RequestedOutput:
    """An entry of the request's `outputs`: which output, and its `parameters` (`binary_data`)."""

    name: str
    parameters: dict[str, Any] | None = None


@dataclass(slots=True)
class InferRequest:
    """A decoded inference request: its tensors as numpy arrays."""

    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None = None
    id: str | None = None
    parameters: dict = field(default_factory=dict)
    model_name: str | None = None  # as the body names it (KServe's client does), else None
    model_version: str | None = None


@dataclass(slots=True)
class InferResult:
    model_name: str
    model_version: str
    outputs: dict[str, np.ndarray]
    id: str | None = None


def datatype_of(array: np.ndarray) -> str:
    try:
        return _DATATYPE_OF[array.dtype]
    except KeyError:
        raise BadRequest(f"the model produced an unsupported tensor type {array.dtype}") from None


# -- requests ----------------------------------------------------------------------------


def decode_request(body: bytes, header_length: str | None) -> InferRequest:
    header, binary = _split_body(body, header_length)
    try:
        document = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"invalid request: body: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest("invalid request: body: must be a JSON object")
    items = document.get("inputs")
    if not isinstance(items, list) or not items:
        raise BadRequest("invalid request: inputs: must be a list of at least one tensor")
    inputs, offset = [], 0
    for index, item in enumerate(items):
        name, shape, datatype, parameters, data = _input_fields(item, index)
        size = None if parameters is None else parameters.get("binary_data_size")
        if size is None:
            array = _from_json(name, shape, datatype, parameters, data)
        else:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise BadRequest(f"input '{name}': binary_data_size {size} does not fit the binary body")
            array = _from_binary(name, shape, datatype, data, binary[offset : offset + size])
            offset += size
        inputs.append(Tensor(name, datatype, array))
    if offset != len(binary):
        raise BadRequest(f"the binary body has {len(binary) - offset} bytes that no input claims")
    return InferRequest(
        inputs=inputs,
        outputs=_requested_outputs(document.get("outputs")),
        id=_optional(document, "id", str),
        parameters=_optional(document, "parameters", dict) or {},
        model_name=_optional(document, "model_name", str),
        model_version=_optional(document, "model_version", str),
    )


_TYPE_NAMES: dict[type, str] = {str: "a string", dict: "an object", list: "a list"}


def _optional(document: dict, key: str, kind: type, where: str = "") -> Any:
    value = document.get(key)
    if value is not None and not isinstance(value, kind):
        raise BadRequest(f"invalid request: {where}{key}: must be {_TYPE_NAMES[kind]}")
    return value


def _input_fields(item: Any, index: int) -> tuple[str, list[int], str, dict | None, list | None]:
    where = f"inputs.{index}."
    if not isinstance(item, dict):
        raise BadRequest(f"invalid request: inputs.{index}: must be an object")
    name, shape, datatype = item.get("name"), item.get("shape"), item.get("datatype")
    if not isinstance(name, str):
        raise BadRequest(f"invalid request: {where}name: must be a string")
    if not isinstance(datatype, str):
        raise BadRequest(f"invalid request: {where}datatype: must be a string")
    if not isinstance(shape, list) or any(type(dim) is not int for dim in shape):
        raise BadRequest(f"invalid request: {where}shape: must be a list of integers")
    return name, shape, datatype, _optional(item, "parameters", dict, where), _optional(item, "data", list, where)


def _requested_outputs(items: Any) -> list[RequestedOutput] | None:
    if items is None:
        return None
    if not isinstance(items, list):
        raise BadRequest("invalid request: outputs: must be a list")
    outputs = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest(f"invalid request: outputs.{index}: must be an object with a name")
        outputs.append(RequestedOutput(item["name"], _optional(item, "parameters", dict, f"outputs.{index}.")))
    return outputs


def json_length(body: bytes, header_length: str | None) -> int:
    """How many bytes of the body are JSON: the header's declared length, or the whole body."""
    return int(header_length) if header_length is not None and header_length.isdigit() else len(body)


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise BadRequest(f"{HEADER_LENGTH} {header_length!r} is not a length within the {len(body)}-byte body")
    return body[: int(header_length)], body[int(header_length) :]


def _checked_shape(name: str, shape: list[int], datatype: str) -> int:
    """The datatype is known and the shape is valid; returns the element count."""
    if datatype not in DATATYPES:
        raise BadRequest(f"input '{name}' has unsupported datatype {datatype}")
    if any(dim < 0 for dim in shape):
        raise BadRequest(f"input '{name}' has a negative dimension in shape {shape}")
    return math.prod(shape)


def _from_json(name: str, shape: list[int], datatype: str, parameters: dict | None, data: list | None) -> np.ndarray:
    count = _checked_shape(name, shape, datatype)
    if data is None:
        raise BadRequest(f"input '{name}' has neither data nor parameters.binary_data_size")
    try:
        if datatype == "BYTES":
            base64_encoded = (parameters or {}).get("content_type") == "base64"
            values = np.asarray(data, dtype=object).ravel()
            array = np.array([_json_bytes(value, base64_encoded) for value in values], dtype=object)
        else:
            array = np.asarray(data, dtype=DATATYPES[datatype]).ravel()
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadRequest(f"input '{name}' data is not {datatype}: {exc}") from exc
    if array.size != count:
        raise BadRequest(f"input '{name}' has {array.size} values; shape {shape} needs {count}")
    return array.reshape(shape)


def _json_bytes(value, base64_encoded: bool) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"BYTES elements must be JSON strings, got {type(value).__name__}")
    return base64.b64decode(value, validate=True) if base64_encoded else value.encode("utf-8")


def _from_binary(name: str, shape: list[int], datatype: str, data: list | None, chunk: bytes) -> np.ndarray:
    count = _checked_shape(name, shape, datatype)
    if data is not None:
        raise BadRequest(f"input '{name}' has both JSON data and binary_data_size")
    if datatype == "BYTES":
        array = np.array(_unpack_bytes(name, chunk), dtype=object)
    else:
        dtype = DATATYPES[datatype]
        if len(chunk) != count * dtype.itemsize:
            raise BadRequest(
                f"input '{name}' has {len(chunk)} bytes; shape {shape} of {datatype} needs {count * dtype.itemsize}"
            )
        array = np.frombuffer(chunk, dtype=_LITTLE_ENDIAN[datatype])
    if array.size != count:
        raise BadRequest(f"input '{name}' has {array.size} values; shape {shape} needs {count}")
    return array.reshape(shape)


def _unpack_bytes(name: str, chunk: bytes) -> list[bytes]:
    elements, offset = [], 0
    while offset < len(chunk):
        if offset + 4 > len(chunk):
            raise BadRequest(f"input '{name}': a BYTES element length prefix is cut off")
        (length,) = struct.unpack_from("<I", chunk, offset)
        offset += 4
        if offset + length > len(chunk):
            raise BadRequest(f"input '{name}': a BYTES element is longer than the binary data")
        elements.append(chunk[offset : offset + length])
        offset += length
    return elements


# -- responses ---------------------------------------------------------------------------


def encode_response(result: InferResult, request: InferRequest) -> tuple[bytes, int | None]:
    """The response body, and the JSON header length when any output is sent as binary."""
    binary_names = _binary_outputs(request, list(result.outputs))
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, array in result.outputs.items():
        output: dict[str, Any] = {"name": name, "datatype": datatype_of(array), "shape": list(array.shape)}
        if name in binary_names:
            chunk = _to_binary(array)
            output["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            output["data"] = _to_json(array)
        outputs.append(output)
    response = {"model_name": result.model_name, "model_version": result.model_version, "outputs": outputs}
    if result.id is not None:
        response["id"] = result.id
    header = orjson.dumps(response)
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)


def _binary_outputs(request: InferRequest, names: list[str]) -> set[str]:
    """Per-output `binary_data` wins over the request-wide `binary_data_output`."""
    default = bool(request.parameters.get("binary_data_output", False))
    chosen = {output.name: (output.parameters or {}).get("binary_data", default) for output in request.outputs or []}
    return {name for name in names if chosen.get(name, default)}


def _to_json(array: np.ndarray) -> list:
    if array.dtype == object:
        return [value.decode("utf-8", errors="replace") for value in array.ravel()]
    return array.ravel().tolist()


def _to_binary(array: np.ndarray) -> bytes:
    if array.dtype == object:
        return b"".join(struct.pack("<I", len(value)) + value for value in array.ravel())
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
