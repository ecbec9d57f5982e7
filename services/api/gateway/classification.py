"""Classify one upload: check it, de-identify DICOM, ask the inference service, store image and result.

Before any classifier runs, the image passes the intended-use gate (`routing`): the image-kind
model says what the image shows (its answer is kept with every result), the DICOM header's facts
(read before de-identification) and the image's size are checked against the intended use of the
model made for that kind, or of the model the caller named; an image outside it is refused with a
specific code and nothing is stored. Only the age band of the patient the check used is kept.

Order matters: nothing is written until inference has accepted the image. The object is stored
before the rows, and removed again whenever the rows are known not to be stored (their insert
or the flush of the request's audit event failed, or the request was refused after all): the
request's unit of work runs the removal on rollback. A commit whose outcome is unknown (the
database went away during it) keeps the object, since removing it could leave a row without its
image; objects orphaned that way, or by a crash between the two writes or an object store that
refused a delete, are removed by `reaper`.

Object keys (no patient data in them): `images/<yyyy>/<mm>/<dd>/<image uuid>.<jpg|png|dcm>`, referenced
from images.object_key, so one request leaves one row and one object. The model's answer, its
explanation heatmap (a few dozen numbers) included, is kept in the result row, and the heatmap is
drawn as an overlay when it is asked for.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy.exc import IntegrityError

from cxr_model.answer import Classification, RoutedClassification
from cxr_model.images import DICOM, EXTENSIONS, MediaType, media_type_of
from cxr_model.intended_use import ImageFacts, Refusal, assess
from gateway import crud, dicom, heatmap, intake, routing
from gateway.db import UnitOfWork
from gateway.exceptions import Conflict, InvalidInput, NotFound, OutsideIntendedUse, Unavailable
from gateway.inference_client import INFERENCE_UNAVAILABLE, InferenceClient
from gateway.intake import Decoding
from gateway.models import Image, Result
from gateway.principals import Principal
from gateway.routing import Gate
from gateway.storage import ObjectStore, remove_or_log


@dataclass(frozen=True)
class Upload:
    """One classification request as the caller sent it."""

    data: bytes
    model: str | None  # None: the model made for the image's kind
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
    media_type: MediaType
    dicom: dicom.DeidentifiedDicom | None = None


def _prepare(data: bytes, uid_secret: str, decoding: Decoding) -> _Prepared:
    """Magic bytes decide the type; the file name and the client's Content-Type are not trusted. Within the
    pixel limit, JPEG and PNG without their metadata, DICOM de-identified (`intake`, `dicom`)."""
    data = intake.admitted(data, decoding)
    media_type = media_type_of(data)
    if media_type != DICOM:
        return _Prepared(data, media_type)
    clean = dicom.deidentify(data, uid_secret)
    return _Prepared(clean.data, media_type, clean)


def _displayed_size(prepared: _Prepared) -> tuple[int | None, int | None]:
    """(width, height) as displayed, read after the inference service decoded the image."""
    if prepared.dicom:
        return prepared.dicom.width, prepared.dicom.height
    try:
        return heatmap.image_size(prepared.data)
    except (OSError, ValueError, SyntaxError):  # not expected once decoded; the result then has no overlay
        return None, None


def _facts(prepared: _Prepared) -> ImageFacts:
    """What is known of the image before any model sees it: its header's facts (DICOM) and its size."""
    facts = prepared.dicom.facts if prepared.dicom else ImageFacts()
    width, height = _displayed_size(prepared)
    return facts.model_copy(update={"width": width, "height": height})


@dataclass(frozen=True)
class _Gated:
    kind: Classification  # the image-kind model's answer
    facts: ImageFacts
    target: routing.Route
    answer: Classification  # the answer of the model routed to


def _gated(
    inference: InferenceClient,
    gate: Gate,
    prepared: _Prepared,
    upload: Upload,
    request_id: str | None,
    timings: dict[str, float],
) -> _Gated:
    """The image-kind model's answer, what is known of the image, the model it goes to and that model's
    answer; `OutsideIntendedUse` when no model may read it (a DICOM whose header rules out every model,
    before the image-kind model runs). Where each kind would go is decided first, so that the image-kind
    model and the model its answer picks run in one inference call."""
    with _timed(timings, "gate"):
        requested = gate.catalog.get(upload.model) if upload.model is not None else None
        models = gate.catalog.models()
        if prepared.dicom:
            routing.screen_header(prepared.dicom.facts, models, requested, gate.refuse_other_population)
        burned_in = _burned_in_text(prepared, gate)
        facts = _facts(prepared)
        routes = routing.routes_by_kind(facts, models, requested, gate.refuse_other_population, _kinds(gate))
    with _timed(timings, "inference"):
        routed = _routed(inference, prepared, gate, routes, upload, request_id)
    kind = routed.routing
    facts = facts.model_copy(update={"image_kind": kind.label})
    target = routes.get(kind.label)
    if target is None or routed.routed is None:
        try:
            routing.route(facts, models, requested, gate.refuse_other_population, _kind_name(kind))
        except OutsideIntendedUse as refused:
            refused.image_kind = _kind_seen(kind)
            raise
        raise Unavailable(INFERENCE_UNAVAILABLE, "the inference service did not run the model the image goes to")
    if burned_in:
        warnings = [*target.assessment.warnings, *burned_in]
        target = routing.Route(target.model, target.assessment.model_copy(update={"warnings": warnings}))
    return _Gated(kind, facts, target, routed.routed)


def _kinds(gate: Gate) -> list[str]:
    """The image-kind model's labels. Without that model no image is classified."""
    try:
        return [item.label for item in gate.catalog.get(gate.image_kind_model).classes]
    except NotFound as exc:
        raise _image_kind_unavailable(gate) from exc


def _image_kind_unavailable(gate: Gate) -> Unavailable:
    return Unavailable("image_kind_unavailable", f"the image-kind model '{gate.image_kind_model}' is not deployed")


def _routed(
    inference: InferenceClient,
    prepared: _Prepared,
    gate: Gate,
    routes: dict[str, routing.Route],
    upload: Upload,
    request_id: str | None,
) -> RoutedClassification:
    targets = {kind: route.model.name for kind, route in routes.items()}
    try:
        return inference.route(prepared.data, prepared.media_type, gate.image_kind_model, targets, request_id)
    except NotFound:
        gate.catalog.invalidate()  # a model went away since the catalog was read
        if gate.image_kind_model not in gate.catalog.models():
            raise _image_kind_unavailable(gate) from None
        if upload.model is not None:
            raise
        raise Unavailable(INFERENCE_UNAVAILABLE, "a model the image could go to is no longer deployed") from None


def _with_followups(
    inference: InferenceClient,
    gate: Gate,
    prepared: _Prepared,
    gated: _Gated,
    request_id: str | None,
    timings: dict[str, float],
) -> Classification:
    """The answer with those of the models that follow its model on its label (`routing.followers`: a
    severity grade after a COVID-19 finding), run in the same request; a follower whose intended use
    refuses the image, or that went away since the catalog was read, is left out."""
    followers = [
        model
        for model in routing.followers(gated.answer, gate.catalog.models(), gate.followup_models)
        if model.intended_use is not None
        and assess(gated.facts, model.intended_use, gate.refuse_other_population).accepted
    ]
    answers = []
    with _timed(timings, "inference"):
        for model in followers:
            try:
                answers.append(_rounded(inference.classify(prepared.data, prepared.media_type, model.name, request_id)))
            except NotFound:
                gate.catalog.invalidate()
    return gated.answer.model_copy(update={"followups": answers}) if answers else gated.answer


def _burned_in_text(prepared: _Prepared, gate: Gate) -> list[Refusal]:
    """A DICOM whose pixels may carry burned-in text (`dicom.burned_in_text`): refused (422
    `burned_in_annotation`) before any model sees it, or, with BURNED_IN_ANNOTATION=warn, its warning."""
    reason = prepared.dicom.burned_in_text if prepared.dicom else None
    if reason is None:
        return []
    detail = f"the image may carry burned-in text such as names or dates ({reason}); it is not de-identified"
    if gate.burned_in_annotation == "refuse":
        raise InvalidInput("burned_in_annotation", detail)
    return [Refusal(code="burned_in_annotation", detail=detail, found=reason, accepted=["BurnedInAnnotation NO"])]


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(timings.get(name, 0.0) + (time.perf_counter() - started) * 1000, 1)  # adds up


def _scoped_key(submitter: Principal, key: str) -> str:
    return f"{submitter.kind}:{submitter.id}:{key}"


def _replay(session: UnitOfWork, submitter: Principal, upload: Upload) -> Classified | None:
    """The earlier answer to this Idempotency-Key, if any; a conflict when the key came with another body."""
    if not upload.idempotency_key:
        return None
    earlier = crud.get_result_by_idempotency_key(session, _scoped_key(submitter, upload.idempotency_key))
    if earlier is None:
        return None
    if earlier.request_sha256 != upload.fingerprint():
        raise Conflict("idempotency_key_reused", "this Idempotency-Key was used with a different request")
    return Classified(earlier, replayed=True)


def classify_upload(
    session: UnitOfWork,
    store: ObjectStore,
    inference: InferenceClient,
    gate: Gate,
    submitter: Principal,
    upload: Upload,
    uid_secret: str,
    request_id: str | None = None,
) -> Classified:
    """The new result's rows, flushed in the session (its unit of work commits them), or an earlier answer.

    `OutsideIntendedUse` (nothing stored) when no deployed model is made for the image, or the model named is not."""
    if replay := _replay(session, submitter, upload):
        return replay
    prepared = _prepare(upload.data, uid_secret, gate.decoding)
    timings: dict[str, float] = {}
    gated = _gated(inference, gate, prepared, upload, request_id, timings)
    answer = _with_followups(inference, gate, prepared, gated, request_id, timings)
    image, result = _new_rows(submitter, upload, prepared, gated.facts, answer, gated.kind, gated.target)
    with _timed(timings, "storage"):
        store.put(image.object_key, prepared.data, prepared.media_type)
    session.on_rollback(partial(remove_or_log, store, image.object_key))
    with _timed(timings, "database"):
        try:
            crud.add_result(session, image, result, submitter)
        except IntegrityError:
            session.rollback()  # which removes the object
            if replay := _replay(session, submitter, upload):
                return replay  # a concurrent request with the same Idempotency-Key committed first
            raise
    return Classified(result, timings_ms=timings)


def _new_rows(
    submitter: Principal,
    upload: Upload,
    prepared: _Prepared,
    facts: ImageFacts,
    answer: Classification,
    kind: Classification,
    target: routing.Route,
) -> tuple[Image, Result]:
    now = datetime.now(UTC)
    meta = prepared.dicom
    image = Image(
        id=uuid.uuid4(),
        content_type=prepared.media_type,
        size_bytes=len(prepared.data),
        sha256=hashlib.sha256(prepared.data).hexdigest(),
        modality=meta.modality if meta else None,
        body_part=meta.body_part if meta else None,
        view_position=meta.view_position if meta else None,
        study_instance_uid=meta.study_instance_uid if meta else None,
        sop_instance_uid=meta.sop_instance_uid if meta else None,
        width=facts.width,
        height=facts.height,
        created_at=now,
    )
    image.object_key = f"images/{now:%Y/%m/%d}/{image.id}.{EXTENSIONS[prepared.media_type]}"
    result = Result(
        image=image,
        classification=_rounded(answer),
        image_kind=_kind_seen(kind),
        warnings=[warning.model_dump(mode="json") for warning in target.assessment.warnings],
        age_band=target.assessment.age_band,
        accession_number=upload.accession_number,
        external_id=upload.external_id,
        idempotency_key=_scoped_key(submitter, upload.idempotency_key) if upload.idempotency_key else None,
        request_sha256=upload.fingerprint() if upload.idempotency_key else None,
        created_by_id=None if submitter.is_client else submitter.id,
        created_by_client_id=submitter.id if submitter.is_client else None,
        created_at=now,
    )
    return image, result


def _kind_seen(kind: Classification) -> dict[str, Any]:
    """What the image-kind model saw, as kept with the result: its label, in words, its probability, the model."""
    return {
        "label": kind.label,
        "name": _kind_name(kind) or kind.label,
        "probability": round(kind.probabilities.get(kind.label, 0.0), 4),
        "model": f"{kind.model_name}/{kind.model_version}",
    }


def _kind_name(kind: Classification) -> str | None:
    """The kind in words, as the image-kind model's card gives them."""
    return kind.describe(kind.label).name if kind.label in kind.labels else None


def _rounded(answer: Classification) -> Classification:
    """The heatmap to four decimals: finer than the 256 levels an overlay shows, and a small row."""
    if answer.explanation is None:
        return answer
    grid = [[round(value, 4) for value in row] for row in answer.explanation.heatmap]
    return answer.model_copy(update={"explanation": answer.explanation.model_copy(update={"heatmap": grid})})


def overlay_png(result: Result) -> bytes | None:
    """The result's explanation heatmap drawn as an overlay of its whole image, or None without one."""
    explanation, image = result.classification.explanation, result.image
    if explanation is None or not image.width or not image.height:
        return None
    return heatmap.render_overlay(explanation.heatmap, explanation.region, image.width, image.height)


def delete_with_image(session: UnitOfWork, store: ObjectStore, result: Result) -> None:
    """Delete a result: its rows now, its image object once they are committed (an object the store
    then refuses to remove is an orphan the reaper removes)."""
    crud.delete_rows(session, result)
    session.on_commit(partial(remove_or_log, store, result.image.object_key))
