from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Response, UploadFile

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
)
from gateway.errors import ProblemError
from gateway.routes.results import result_out
from gateway.schemas import ClassifyOut, Problem, Timings

router = APIRouter(tags=["classify"])

_ERRORS = {code: {"model": Problem} for code in (400, 401, 404, 409, 413, 415, 422, 503)}
_REFERENCE = r"^[A-Za-z0-9_.:/-]{1,64}$"


@router.post("/classify", response_model=ClassifyOut, status_code=201, responses=_ERRORS)
def classify(
    response: Response,
    session: SessionDep,
    store: StoreDep,
    inference: InferenceDep,
    settings: SettingsDep,
    submitter: CurrentPrincipal,
    context: RequestContextDep,
    metrics: MetricsDep,
    file: Annotated[UploadFile, File(description="a JPEG, PNG or DICOM chest X-ray")],
    model: Annotated[str | None, Form(pattern=r"^[A-Za-z0-9_.-]{1,128}$")] = None,
    accession_number: Annotated[
        str | None, Form(pattern=_REFERENCE, description="the caller's order reference; never a patient identifier")
    ] = None,
    external_id: Annotated[
        str | None, Form(pattern=_REFERENCE, description="the caller's own reference; never a patient identifier")
    ] = None,
    idempotency_key: Annotated[str | None, Header(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")] = None,
):
    """Classify one chest X-ray; DICOM is de-identified first; the image and the result are stored and returned.

    A retry with the same `Idempotency-Key` and the same request returns the first answer (200).
    """
    data = file.file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ProblemError(413, "file_too_large", f"the file exceeds {settings.max_upload_bytes} bytes")
    upload = Upload(data, model or settings.default_model, accession_number, external_id, idempotency_key)
    with audit.recorded(session, context, "result.classify", submitter) as event:
        classified = classify_upload(
            session,
            store,
            inference,
            submitter,
            upload,
            settings.deidentification_uid_secret,
            settings.retry_after_seconds,
            context.request_id,
            audit_event=event,  # committed with the result's rows
        )
        result = classified.result
        event.target, event.detail = f"result:{result.id}", "idempotent replay" if classified.replayed else None
    if classified.replayed:
        response.status_code = 200
    else:
        metrics.classifications.labels(result.model_name, result.label).inc()
    response.headers["Location"] = f"/results/{result.id}"
    timings = (
        Timings(**{f"{name}_ms": ms for name, ms in classified.timings_ms.items()}) if classified.timings_ms else None
    )
    return ClassifyOut(**result_out(result).model_dump(), timings=timings)
