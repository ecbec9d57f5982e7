from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Form, Header, Response

from gateway import audit
from gateway.classification import Upload, classify_upload
from gateway.deps import (
    CurrentPrincipal,
    GateDep,
    InferenceDep,
    MetricsDep,
    RequestContextDep,
    SessionDep,
    SettingsDep,
    StoreDep,
    UploadDep,
)
from gateway.errors import problems
from gateway.exceptions import OutsideIntendedUse
from gateway.observability import Metrics
from gateway.schemas import ClassifyOut, IntendedUseProblem, Problem, Timings

router = APIRouter(tags=["classify"])

_INTENDED_USE_REFUSALS = """The image cannot be classified. An image outside the intended use of the model it would go
to (checked before any classifier runs; nothing is stored) is an `IntendedUseProblem` whose `code` is the first reason:

- `unsupported_image_kind`: the image-kind model saw an image no deployed model is made for (or not the kind the
  named model reads: chest X-ray, chest CT slice)
- `unsupported_modality`: the DICOM Modality is not one the model accepts (e.g. MR, US, CT for an X-ray model)
- `unsupported_body_part`: the DICOM BodyPartExamined is not one the model accepts (e.g. EXTREMITY)
- `unsupported_view`: the DICOM ViewPosition is not one the model accepts (e.g. LL for a frontal-view model)
- `unsupported_image_type`: the DICOM ImageType names a kind of image the model never saw (e.g. LOCALIZER)
- `unsupported_photometric_interpretation`: e.g. a colour image for a greyscale model
- `image_too_small`: the image's shorter side is below the model's minimum source resolution
- `population_mismatch`: the patient's age is outside the model's population (refused only when
  `REFUSE_OTHER_POPULATION` is set; otherwise the result carries it in `warnings`)

`found` is what the image is, `accepted` what the model accepts, `model` the model it was checked against,
`image_kind` what the image-kind model saw, and `refusals` lists every reason. Other codes: `no_intended_use`
(the named model states none), `corrupt_image`, `dicom_without_pixel_data`, `unsupported_transfer_syntax`,
`image_too_large`, `invalid_request`."""
_CLASSIFY_ANSWERS = problems(400, 401, 404, 409, 413, 415, 503) | {
    422: {"model": IntendedUseProblem | Problem, "description": _INTENDED_USE_REFUSALS}
}

_REFERENCE = r"^[A-Za-z0-9_.:/-]{1,64}$"


@contextmanager
def _counted_refusals(metrics: Metrics) -> Iterator[None]:
    try:
        yield
    except OutsideIntendedUse as refused:
        metrics.intended_use_refusals.labels(refused.code).inc()
        raise


@router.post("/classify", response_model=ClassifyOut, status_code=201, responses=_CLASSIFY_ANSWERS)
def classify(
    response: Response,
    session: SessionDep,
    store: StoreDep,
    inference: InferenceDep,
    gate: GateDep,
    settings: SettingsDep,
    submitter: CurrentPrincipal,
    context: RequestContextDep,
    metrics: MetricsDep,
    data: UploadDep,
    model: Annotated[
        str | None,
        Form(
            pattern=r"^[A-Za-z0-9_.-]{1,128}$",
            description="a deployed model (GET /models); without it, the model made for the image's kind",
        ),
    ] = None,
    accession_number: Annotated[
        str | None, Form(pattern=_REFERENCE, description="the caller's order reference; never a patient identifier")
    ] = None,
    external_id: Annotated[
        str | None, Form(pattern=_REFERENCE, description="the caller's own reference; never a patient identifier")
    ] = None,
    idempotency_key: Annotated[str | None, Header(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")] = None,
) -> ClassifyOut:
    """Classify one chest image; DICOM is de-identified first; the image and the result are stored and returned.

    The image-kind model runs first and the image is checked against the intended use (modality, body part,
    view, image type, photometric interpretation, size, population) of the model made for its kind, or of
    `model` when given: an image outside it is refused (422, see below) before any classifier runs, and
    nothing is stored. The result carries `image_kind`, `warnings` (e.g. `population_mismatch`) and `age_band`.

    A retry with the same `Idempotency-Key` and the same request returns the first answer (200).
    """
    upload = Upload(data, model, accession_number, external_id, idempotency_key)
    with audit.recorded(session, context, "result.classify", submitter) as event, _counted_refusals(metrics):
        classified = classify_upload(
            session,
            store,
            inference,
            gate,
            submitter,
            upload,
            settings.deidentification_uid_secret,
            context.request_id,
        )
        result = classified.result
        event.target, event.detail = f"result:{result.id}", "idempotent replay" if classified.replayed else None
    if classified.replayed:
        response.status_code = 200
    else:
        session.on_commit(metrics.count_classification(result.model_name, result.label, result.ood))
    response.headers["Location"] = f"/results/{result.id}"
    timings = (
        Timings(**{f"{name}_ms": ms for name, ms in classified.timings_ms.items()}) if classified.timings_ms else None
    )
    return ClassifyOut.of(result, timings=timings)
