"""The v2 codec against the official client's own encoder and decoder (tritonclient)."""

import json

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.http._utils import _get_inference_request

from inference.codec import InferRequest, InferResult, decode_request, encode_response
from inference.errors import BadRequest

TENSORS = {
    "FP32": np.array([[0.5, -1.25, 3.0e8]], dtype=np.float32),
    "FP64": np.array([[1 / 3, -2.5]], dtype=np.float64),
    "FP16": np.array([[0.5, 2.0]], dtype=np.float16),
    "UINT8": np.array([[0, 7, 255]], dtype=np.uint8),
    "UINT16": np.array([[0, 65535]], dtype=np.uint16),
    "UINT32": np.array([[4_000_000_000]], dtype=np.uint32),
    "UINT64": np.array([[2**63]], dtype=np.uint64),
    "INT8": np.array([[-128, 127]], dtype=np.int8),
    "INT16": np.array([[-32768, 5]], dtype=np.int16),
    "INT32": np.array([[-(2**31), 2**31 - 1]], dtype=np.int32),
    "INT64": np.array([[-(2**62), 9]], dtype=np.int64),
    "BOOL": np.array([[True, False, True]], dtype=np.bool_),
    "BYTES": np.array([[b"chest", "x-ray \u00e9".encode(), b""]], dtype=object),
}


def client_request(arrays: dict[str, tuple[str, np.ndarray]], binary: bool, outputs=None, **kwargs):
    """The body and header length tritonclient sends for these tensors."""
    inputs = []
    for name, (datatype, array) in arrays.items():
        tensor = triton.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    body, json_size = _get_inference_request(inputs, kwargs.get("request_id", ""), outputs, 0, False, False, 0, None, None)
    return body if isinstance(body, bytes) else body.encode(), json_size


@pytest.mark.parametrize("datatype", sorted(TENSORS))
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_every_datatype_decodes_exactly_as_the_client_encoded_it(datatype, binary):
    body, json_size = client_request({"x": (datatype, TENSORS[datatype])}, binary)
    request = decode_request(body, None if json_size is None else str(json_size))
    decoded = request.inputs[0]
    assert decoded.datatype == datatype and decoded.array.shape == TENSORS[datatype].shape
    assert decoded.array.tolist() == TENSORS[datatype].tolist()


@pytest.mark.parametrize("datatype", sorted(TENSORS))
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_every_datatype_encodes_so_the_client_reads_it_back(datatype, binary):
    request = InferRequest(inputs=[], parameters={"binary_data_output": binary})
    body, header_length = encode_response(InferResult("m", "1", {"y": TENSORS[datatype]}, id="req-1"), request)
    result = triton.InferResult.from_response_body(body, header_length=header_length)
    assert result.get_response()["id"] == "req-1"
    expected = TENSORS[datatype]
    if datatype == "BYTES" and not binary:  # JSON carries BYTES as strings, and the client keeps them so
        expected = np.vectorize(bytes.decode, otypes=[object])(expected)
    assert result.as_numpy("y").tolist() == expected.tolist()
    assert (header_length is not None) == binary


def test_per_output_binary_flag_overrides_the_request_wide_one():
    outputs = [triton.InferRequestedOutput("a", binary_data=False), triton.InferRequestedOutput("b", binary_data=True)]
    body, json_size = client_request({"x": ("FP32", TENSORS["FP32"])}, True, outputs=outputs)
    request = decode_request(body, str(json_size))
    result = InferResult("m", "1", {"a": TENSORS["INT32"], "b": TENSORS["FP32"]})
    response, header_length = encode_response(result, request)
    header = response[:header_length].decode()
    assert '"name":"a"' in header and '"data":[' in header and '"binary_data_size":12' in header
    assert triton.InferResult.from_response_body(response, header_length=header_length).as_numpy("b").tolist() == (
        TENSORS["FP32"].tolist()
    )


def test_several_binary_inputs_are_cut_at_their_sizes():
    body, json_size = client_request({"a": ("UINT8", TENSORS["UINT8"]), "b": ("BYTES", TENSORS["BYTES"])}, True)
    a, b = decode_request(body, str(json_size)).inputs
    assert a.array.tolist() == TENSORS["UINT8"].tolist() and b.array.tolist() == TENSORS["BYTES"].tolist()


def test_base64_bytes_in_json_carry_binary_files():
    body = b'{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","parameters":{"content_type":"base64"},"data":["/9j/"]}]}'
    assert decode_request(body, None).inputs[0].array.tolist() == [b"\xff\xd8\xff"]


def binary_body(datatype: str, shape: list[int], size: int, data: bytes) -> tuple[bytes, str]:
    header = json.dumps({"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": size}}]})
    return header.encode() + data, str(len(header))


@pytest.mark.parametrize(
    ("body", "header_length", "message"),
    [
        (b'{"inputs": [', None, "invalid request"),
        (b'{"inputs": []}', None, "invalid request"),
        (b'{"inputs":[{"name":"x","shape":[2],"datatype":"INT32","data":[1]}]}', None, "has 1 values"),
        (b'{"inputs":[{"name":"x","shape":[1],"datatype":"COMPLEX","data":[1]}]}', None, "unsupported datatype"),
        (b'{"inputs":[{"name":"x","shape":[-1],"datatype":"INT32","data":[1]}]}', None, "negative dimension"),
        (b'{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","data":[1]}]}', None, "must be JSON strings"),
        (b'{"inputs":[{"name":"x","shape":[1],"datatype":"INT32"}]}', None, "neither data nor"),
        (*binary_body("INT32", [2], 4, b"\x01\0\0\0"), "needs 8"),
        (*binary_body("INT32", [1], 8, b"\x01\0\0\0"), "does not fit"),
        (*binary_body("INT32", [1], 4, b"\x01\0\0\0\0"), "no input claims"),
        (*binary_body("BYTES", [1], 4, b"\x09\0\0\0"), "longer than"),
        (*binary_body("BYTES", [1], 2, b"\x09\0"), "cut off"),
        (b'{"inputs": []}', "x12", "not a length"),
        (b'{"inputs": []}', "999", "not a length"),
    ],
)
def test_malformed_requests_are_bad_requests(body, header_length, message):
    with pytest.raises(BadRequest) as error:
        decode_request(body, header_length)
    assert message in error.value.message


def test_fields_the_protocol_does_not_name_are_ignored_and_the_model_fields_kept():
    body = json.dumps(
        {
            "id": "r-1",
            "model_name": "m",
            "model_version": "3",
            "trace_context": {"span": 1},
            "inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [7], "annotations": ["a"]}],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}, "note": "n"}],
        }
    ).encode()
    request = decode_request(body, None)
    assert (request.id, request.model_name, request.model_version) == ("r-1", "m", "3")
    assert request.inputs[0].array.tolist() == [7]
    assert [(output.name, output.parameters) for output in request.outputs] == [("y", {"binary_data": True})]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1, 2]", "must be a JSON object"),
        (b'{"inputs": [7]}', "inputs.0: must be an object"),
        (b'{"inputs": [{"shape": [1], "datatype": "INT32", "data": [1]}]}', "inputs.0.name: must be a string"),
        (b'{"inputs": [{"name": "x", "shape": [1.5], "datatype": "INT32", "data": [1]}]}', "shape: must be a list of integers"),
        (b'{"inputs": [{"name": "x", "shape": [true], "datatype": "INT32", "data": [1]}]}', "shape: must be a list of integers"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": 5, "data": [1]}]}', "datatype: must be a string"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": 1}]}', "inputs.0.data: must be a list"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1], "parameters": []}]}', "parameters: must be an object"),
        (b'{"parameters": 3, "inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1]}]}', "parameters: must be an object"),
        (b'{"outputs": {}, "inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1]}]}', "outputs: must be a list"),
        (b"\xff{", "invalid request"),
    ],
)
def test_fields_of_the_wrong_kind_are_bad_requests(body, message):
    with pytest.raises(BadRequest) as error:
        decode_request(body, None)
    assert message in error.value.message and error.value.message.startswith("invalid request")
