from typing import Annotated

from fastapi import APIRouter, Form, Header, Response

from gateway import audit
from gateway.classification import Upload, classify_upload
from gateway.deps import (
    CurrentPrincipal,
    InferenceDep,
    MetricsDep,
    RequestContextDep,
    SessionDep,
    SettingsDep,
    StoreDep,
    UploadDep,
)
from gateway.errors import problems
from gateway.schemas import ClassifyOut, Timings

router = APIRouter(tags=["classify"])

_REFERENCE = r"^[A-Za-z0-9_.:/-]{1,64}$"


@router.post(
    "/classify", response_model=ClassifyOut, status_code=201, responses=problems(400, 401, 404, 409, 413, 415, 422, 503)
)
def classify(
    response: Response,
    session: SessionDep,
    store: StoreDep,
    inference: InferenceDep,
    settings: SettingsDep,
    submitter: CurrentPrincipal,
    context: RequestContextDep,
    metrics: MetricsDep,
    data: UploadDep,
    model: Annotated[str | None, Form(pattern=r"^[A-Za-z0-9_.-]{1,128}$")] = None,
    accession_number: Annotated[
        str | None, Form(pattern=_REFERENCE, description="the caller's order reference; never a patient identifier")
    ] = None,
    external_id: Annotated[
        str | None, Form(pattern=_REFERENCE, description="the caller's own reference; never a patient identifier")
    ] = None,
    idempotency_key: Annotated[str | None, Header(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")] = None,
) -> ClassifyOut:
    """Classify one chest X-ray; DICOM is de-identified first; the image and the result are stored and returned.

    A retry with the same `Idempotency-Key` and the same request returns the first answer (200).
    """
    upload = Upload(data, model or settings.default_model, accession_number, external_id, idempotency_key)
    with audit.recorded(session, context, "result.classify", submitter) as event:
        classified = classify_upload(
            session, store, inference, submitter, upload, settings.deidentification_uid_secret, context.request_id
        )
        result = classified.result
        event.target, event.detail = f"result:{result.id}", "idempotent replay" if classified.replayed else None
    if classified.replayed:
        response.status_code = 200
    else:
        counter = metrics.classifications.labels(result.model_name, result.label)
        session.on_commit(counter.inc)
    response.headers["Location"] = f"/results/{result.id}"
    timings = (
        Timings(**{f"{name}_ms": ms for name, ms in classified.timings_ms.items()}) if classified.timings_ms else None
    )
    return ClassifyOut.of(result, timings=timings)
