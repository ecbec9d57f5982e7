"""KServe v2 / Open Inference Protocol REST types: the answers this server documents.

Inference requests are read by `codec.decode_request`, which checks them itself (no model
validation on the hot path) and, as the protocol's own servers do, ignores fields it does not
know.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict


class ErrorResponse(BaseModel):
    """The body of every error answer: KServe v2's `error` message, plus a `code` for some."""

    error: str
    code: str | None = None


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class MetadataServerResponse(BaseModel):
    name: str
    version: str
    extensions: list[str]


class MetadataModelResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    parameters: dict[str, Any] = {}
