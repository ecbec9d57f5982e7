"""Classify one upload: check it, ask the inference service, store image and result.

Order matters: nothing is written until inference has accepted the image, and the
object is removed again if the database write fails, so a rejected or failed request
leaves neither a row nor an object behind.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import datetime, timezone

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from gateway import crud
from gateway.errors import ProblemError, ServiceUnavailable
from gateway.inference_client import InferenceClient, InferenceRejected, InferenceUnavailable
from gateway.models import Image, Result, User
from gateway.storage import ObjectStore, StorageUnavailable

log = logging.getLogger(__name__)

# Magic bytes decide the type; the file name and the client's Content-Type are not trusted.
_SIGNATURES = {b"\xff\xd8\xff": ("image/jpeg", "jpg"), b"\x89PNG\r\n\x1a\n": ("image/png", "png")}


def detect_image_type(data: bytes) -> tuple[str, str]:
    """(media type, file extension) of a JPEG or PNG upload; a 4xx problem otherwise."""
    if not data:
        raise ProblemError(400, "empty_file", "the uploaded file is empty")
    for signature, kind in _SIGNATURES.items():
        if data.startswith(signature):
            return kind
    raise ProblemError(415, "unsupported_media_type", "the file is not a JPEG or PNG image")


def classify_upload(
    session: Session,
    store: ObjectStore,
    inference: InferenceClient,
    user: User,
    data: bytes,
    model: str,
    retry_after: int,
) -> Result:
    media_type, extension = detect_image_type(data)
    try:
        prediction = inference.classify(data, media_type, model)
    except InferenceUnavailable as exc:
        raise ServiceUnavailable("inference_unavailable", str(exc), retry_after) from exc
    except InferenceRejected as exc:
        status = 404 if exc.status == 404 else 422
        raise ProblemError(status, exc.code, exc.message) from exc

    now = datetime.now(timezone.utc)
    image = Image(
        id=uuid.uuid4(),
        content_type=media_type,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        uploaded_by_id=user.id,
        created_at=now,
    )
    image.object_key = f"images/{now:%Y/%m/%d}/{image.id}.{extension}"
    result = Result(
        image=image,
        model_name=prediction.model_name,
        model_version=prediction.model_version,
        label=prediction.label,
        probabilities=prediction.probabilities,
        threshold=prediction.threshold,
        created_by=user,
        created_at=now,
    )
    try:
        store.put(image.object_key, data, media_type)
    except StorageUnavailable as exc:
        raise ServiceUnavailable("storage_unavailable", "the object store is unavailable; retry later", retry_after) from exc
    try:
        return crud.add_result(session, image, result)
    except SQLAlchemyError as exc:
        session.rollback()
        _remove_orphan(store, image.object_key)
        raise ServiceUnavailable("database_unavailable", "the database is unavailable; retry later", retry_after) from exc


def _remove_orphan(store: ObjectStore, key: str) -> None:
    try:
        store.delete(key)
    except StorageUnavailable:
        log.error("could not remove object %s after a failed database write", key)
