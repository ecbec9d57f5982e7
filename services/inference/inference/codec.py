"""KServe v2 REST bodies <-> numpy tensors: JSON tensors and the binary tensor data extension.

A binary request is a JSON header of `Inference-Header-Content-Length` bytes followed by
the raw tensors, in input order, each `parameters.binary_data_size` bytes long. BYTES
elements are encoded as a 4-byte little-endian length followed by the bytes.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from inference.errors import BadRequest
from inference.protocol import InferenceRequest, RequestInput, RequestOutput

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


@dataclass
class Tensor:
    name: str
    datatype: str
    array: np.ndarray


@dataclass
class InferRequest:
    """A decoded inference request: its tensors as numpy arrays."""

    inputs: list[Tensor]
    outputs: list[RequestOutput] | None = None
    id: str | None = None
    parameters: dict = field(default_factory=dict)


@dataclass
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
        request = InferenceRequest.model_validate_json(header)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise BadRequest(f"invalid request: {problems}") from exc
    inputs, offset = [], 0
    for item in request.inputs:
        size = (item.parameters or {}).get("binary_data_size")
        if size is None:
            array = _from_json(item)
        else:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise BadRequest(f"input '{item.name}': binary_data_size {size} does not fit the binary body")
            array = _from_binary(item, binary[offset : offset + size])
            offset += size
        inputs.append(Tensor(item.name, item.datatype, array))
    if offset != len(binary):
        raise BadRequest(f"the binary body has {len(binary) - offset} bytes that no input claims")
    return InferRequest(inputs=inputs, outputs=request.outputs, id=request.id, parameters=request.parameters or {})


def json_length(body: bytes, header_length: str | None) -> int:
    """How many bytes of the body are JSON: the header's declared length, or the whole body."""
    return int(header_length) if header_length is not None and header_length.isdigit() else len(body)


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise BadRequest(f"{HEADER_LENGTH} {header_length!r} is not a length within the {len(body)}-byte body")
    return body[: int(header_length)], body[int(header_length) :]


def _checked_shape(item: RequestInput) -> int:
    """The datatype is known and the shape is valid; returns the element count."""
    if item.datatype not in DATATYPES:
        raise BadRequest(f"input '{item.name}' has unsupported datatype {item.datatype}")
    if any(dim < 0 for dim in item.shape):
        raise BadRequest(f"input '{item.name}' has a negative dimension in shape {item.shape}")
    return int(np.prod(item.shape))


def _from_json(item: RequestInput) -> np.ndarray:
    count = _checked_shape(item)
    if item.data is None:
        raise BadRequest(f"input '{item.name}' has neither data nor parameters.binary_data_size")
    try:
        if item.datatype == "BYTES":
            base64_encoded = (item.parameters or {}).get("content_type") == "base64"
            values = np.asarray(item.data, dtype=object).ravel()
            array = np.array([_json_bytes(value, base64_encoded) for value in values], dtype=object)
        else:
            array = np.asarray(item.data, dtype=DATATYPES[item.datatype]).ravel()
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadRequest(f"input '{item.name}' data is not {item.datatype}: {exc}") from exc
    if array.size != count:
        raise BadRequest(f"input '{item.name}' has {array.size} values; shape {item.shape} needs {count}")
    return array.reshape(item.shape)


def _json_bytes(value, base64_encoded: bool) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"BYTES elements must be JSON strings, got {type(value).__name__}")
    return base64.b64decode(value, validate=True) if base64_encoded else value.encode("utf-8")


def _from_binary(item: RequestInput, chunk: bytes) -> np.ndarray:
    count = _checked_shape(item)
    if item.data is not None:
        raise BadRequest(f"input '{item.name}' has both JSON data and binary_data_size")
    if item.datatype == "BYTES":
        array = np.array(_unpack_bytes(item.name, chunk), dtype=object)
    else:
        dtype = DATATYPES[item.datatype]
        if len(chunk) != count * dtype.itemsize:
            raise BadRequest(
                f"input '{item.name}' has {len(chunk)} bytes; shape {item.shape} of {item.datatype} needs "
                f"{count * dtype.itemsize}"
            )
        array = np.frombuffer(chunk, dtype=dtype.newbyteorder("<"))
    if array.size != count:
        raise BadRequest(f"input '{item.name}' has {array.size} values; shape {item.shape} needs {count}")
    return array.reshape(item.shape)


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
    header = json.dumps(response, separators=(",", ":")).encode()
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
