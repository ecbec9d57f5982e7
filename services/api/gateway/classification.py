"""Classify one upload: check it, de-identify DICOM, ask the inference service, store image and result.

Order matters: nothing is written until inference has accepted the image, and the
object is removed again if inserting the rows fails, so a rejected or failed request
leaves neither a row nor an object behind. Objects orphaned anyway (a crash between the
two writes, an object store that refused a delete, a commit whose outcome is unknown
because the database went away during it) are removed by `reaper`.

Object keys (no patient data in them): `images/<yyyy>/<mm>/<dd>/<image uuid>.<jpg|png|dcm>`, referenced
from images.object_key, so one request leaves one row and one object. The model's explanation heatmap
(a few dozen numbers) is kept in the result row and drawn as an overlay when it is asked for.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from gateway import audit, crud, dicom, heatmap
from gateway.errors import ProblemError, ServiceUnavailable
from gateway.inference_client import InferenceClient, InferenceRejected, InferenceUnavailable, Prediction
from gateway.models import Image, Result
from gateway.principals import Principal
from gateway.storage import ObjectStore, StorageUnavailable

log = logging.getLogger(__name__)

# Magic bytes decide the type; the file name and the client's Content-Type are not trusted.
_SIGNATURES = {b"\xff\xd8\xff": ("image/jpeg", "jpg"), b"\x89PNG\r\n\x1a\n": ("image/png", "png")}


@dataclass(frozen=True)
class Upload:
    """One classification request as the caller sent it."""

    data: bytes
    model: str
    accession_number: str | None = None
    external_id: str | None = None
    idempotency_key: str | None = None

    def fingerprint(self) -> str:
        """What identifies the request body, for replays under one Idempotency-Key."""
        digest = hashlib.sha256(self.data)
        for part in (self.model, self.accession_number, self.external_id):
            digest.update(b"\0" + (part or "").encode())
        return digest.hexdigest()


@dataclass
class Classified:
    result: Result
    replayed: bool = False  # an earlier answer to the same Idempotency-Key
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Prepared:
    """The bytes that are sent and stored (DICOM de-identified), with what is known of them."""

    data: bytes
    media_type: str
    extension: str
    dicom: dicom.DeidentifiedDicom | None = None


def detect_image_type(data: bytes) -> tuple[str, str]:
    """(media type, file extension) of a JPEG, PNG or DICOM upload; a 4xx problem otherwise."""
    if not data:
        raise ProblemError(400, "empty_file", "the uploaded file is empty")
    for signature, kind in _SIGNATURES.items():
        if data.startswith(signature):
            return kind
    if dicom.is_dicom(data):
        return dicom.MEDIA_TYPE, "dcm"
    raise ProblemError(415, "unsupported_media_type", "the file is not a JPEG, PNG or DICOM image")


def _prepare(data: bytes, uid_secret: str) -> _Prepared:
    media_type, extension = detect_image_type(data)
    if media_type != dicom.MEDIA_TYPE:
        return _Prepared(data, media_type, extension)
    clean = dicom.deidentify(data, uid_secret)
    return _Prepared(clean.data, media_type, extension, clean)


def _displayed_size(prepared: _Prepared) -> tuple[int | None, int | None]:
    """(width, height) as displayed, read after the inference service decoded the image."""
    if prepared.dicom:
        return prepared.dicom.width, prepared.dicom.height
    try:
        return heatmap.image_size(prepared.data)
    except (OSError, ValueError, SyntaxError):  # not expected once decoded; the result then has no overlay
        return None, None


@contextmanager
def _timed(timings: dict[str, float], name: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round((time.perf_counter() - started) * 1000, 1)


def _scoped_key(submitter: Principal, key: str) -> str:
    return f"{submitter.kind}:{submitter.id}:{key}"


def _replay(session: Session, submitter: Principal, upload: Upload) -> Classified | None:
    """The earlier answer to this Idempotency-Key, if any; 409 when the key came with another body."""
    if not upload.idempotency_key:
        return None
    earlier = crud.get_result_by_idempotency_key(session, _scoped_key(submitter, upload.idempotency_key))
    if earlier is None:
        return None
    if earlier.request_sha256 != upload.fingerprint():
        raise ProblemError(409, "idempotency_key_reused", "this Idempotency-Key was used with a different request")
    return Classified(earlier, replayed=True)


def classify_upload(
    session: Session,
    store: ObjectStore,
    inference: InferenceClient,
    submitter: Principal,
    upload: Upload,
    uid_secret: str,
    retry_after: int,
    request_id: str | None = None,
    audit_event: audit.PendingEvent | None = None,
) -> Classified:
    """`audit_event`, when given, is stored in the same transaction as the new rows (not for a replay)."""
    if replay := _replay(session, submitter, upload):
        return replay
    prepared = _prepare(upload.data, uid_secret)
    timings: dict[str, float] = {}
    with _timed(timings, "inference"):
        try:
            prediction = inference.classify(prepared.data, prepared.media_type, upload.model, request_id)
        except InferenceUnavailable as exc:
            raise ServiceUnavailable("inference_unavailable", str(exc), retry_after) from exc
        except InferenceRejected as exc:
            status = 404 if exc.status == 404 else 422
            raise ProblemError(status, exc.code, exc.message) from exc

    image, result = _new_rows(submitter, upload, prepared, prediction)
    with _timed(timings, "storage"):
        _store_image(store, image, prepared, retry_after)
    with _timed(timings, "database"):
        try:
            crud.add_result(session, image, result, submitter)
            if audit_event is not None:
                audit_event.target = f"result:{result.id}"
                audit_event.stage_success()
        except SQLAlchemyError as exc:
            session.rollback()
            _remove_object(store, image.object_key)
            if isinstance(exc, IntegrityError) and (replay := _replay(session, submitter, upload)):
                return replay  # a concurrent request with the same Idempotency-Key committed first
            raise _database_unavailable(retry_after) from exc
        try:
            saved = crud.commit_result(session, result)
        except SQLAlchemyError as exc:
            # The commit may have reached the database before the connection broke, so the object stays
            # (removing it could leave a row without its image); the reaper removes it if no row refers to it.
            session.rollback()
            raise _database_unavailable(retry_after) from exc
    return Classified(saved, timings_ms=timings)


def _database_unavailable(retry_after: int) -> ServiceUnavailable:
    return ServiceUnavailable("database_unavailable", "the database is unavailable; retry later", retry_after)


def _store_image(store: ObjectStore, image: Image, prepared: _Prepared, retry_after: int) -> None:
    try:
        store.put(image.object_key, prepared.data, prepared.media_type)
    except StorageUnavailable as exc:
        raise ServiceUnavailable(
            "storage_unavailable", "the object store is unavailable; retry later", retry_after
        ) from exc


def _new_rows(
    submitter: Principal, upload: Upload, prepared: _Prepared, prediction: Prediction
) -> tuple[Image, Result]:
    now = datetime.now(timezone.utc)
    meta = prepared.dicom
    width, height = _displayed_size(prepared)
    image = Image(
        id=uuid.uuid4(),
        content_type=prepared.media_type,
        size_bytes=len(prepared.data),
        sha256=hashlib.sha256(prepared.data).hexdigest(),
        modality=meta.modality if meta else None,
        body_part=meta.body_part if meta else None,
        view_position=meta.view_position if meta else None,
        width=width,
        height=height,
        created_at=now,
    )
    image.object_key = f"images/{now:%Y/%m/%d}/{image.id}.{prepared.extension}"
    result = Result(
        image=image,
        model_name=prediction.model_name,
        model_version=prediction.model_version,
        label=prediction.label,
        probabilities=prediction.probabilities,
        threshold=prediction.threshold,
        calibration_temperature=prediction.calibration_temperature,
        ood=prediction.ood.flagged if prediction.ood else None,
        ood_score=prediction.ood.score if prediction.ood else None,
        explanation_method=prediction.explanation.method if prediction.explanation else None,
        explanation_class=prediction.explanation.class_name if prediction.explanation else None,
        explanation_region=prediction.explanation.region if prediction.explanation else None,
        explanation_heatmap=_rounded(prediction.explanation.heatmap) if prediction.explanation else None,
        accession_number=upload.accession_number,
        external_id=upload.external_id,
        idempotency_key=_scoped_key(submitter, upload.idempotency_key) if upload.idempotency_key else None,
        request_sha256=upload.fingerprint() if upload.idempotency_key else None,
        created_at=now,
    )
    if submitter.is_client:
        image.uploaded_by_client_id = result.created_by_client_id = submitter.id
    else:
        image.uploaded_by_id = result.created_by_id = submitter.id
    return image, result


def _rounded(heatmap: list[list[float]]) -> list[list[float]]:
    """Four decimals: finer than the 256 levels an overlay shows, and a small row."""
    return [[round(value, 4) for value in row] for row in heatmap]


def overlay_png(result: Result) -> bytes | None:
    """The result's explanation heatmap drawn as an overlay of its whole image, or None without one."""
    image = result.image
    if result.explanation_heatmap is None or not image.width or not image.height:
        return None
    region = result.explanation_region or "none"
    return heatmap.render_overlay(result.explanation_heatmap, region, image.width, image.height)


def delete_result(session: Session, store: ObjectStore, result: Result) -> None:
    """Remove the rows first, then the object; an object left by a storage failure is an orphan the reaper removes."""
    object_key = result.image.object_key
    crud.delete_result(session, result)
    _remove_object(store, object_key)


def _remove_object(store: ObjectStore, key: str) -> None:
    try:
        store.delete(key)
    except StorageUnavailable:
        log.error("could not remove object %s; the orphan reaper will", key)
