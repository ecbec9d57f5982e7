from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Header, Response

from gateway import audit, structured_report
from gateway.classification import Classified, Upload, classify_upload
from gateway.db import UnitOfWork
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
from gateway.inference_client import InferenceClient
from gateway.observability import Metrics
from gateway.principals import Principal, RequestContext
from gateway.pseudonyms import accession_digest
from gateway.routing import Gate
from gateway.schemas import ClassifyOut, IntendedUseProblem, Problem, Timings
from gateway.storage import ObjectStore

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
- `burned_in_annotation`: a DICOM whose pixels may carry burned-in text (BurnedInAnnotation YES, or absent for
  modalities that burn text in); refused unless `BURNED_IN_ANNOTATION=warn`, which stores it with this warning

`found` is what the image is, `accepted` what the model accepts, `model` the model it was checked against,
`image_kind` what the image-kind model saw, and `refusals` lists every reason. Other codes: `no_intended_use`
(the named model states none), `corrupt_image`, `dicom_without_pixel_data`, `unsupported_transfer_syntax`,
`image_too_large`, `polyglot_image` (a JPEG or PNG that carries a DICOM header), `invalid_request`."""
_CLASSIFY_ANSWERS = problems(400, 401, 404, 406, 409, 413, 415, 503) | {
    201: {"content": {"application/json": {}, structured_report.MEDIA_TYPE: {}}},
    422: {"model": IntendedUseProblem | Problem, "description": _INTENDED_USE_REFUSALS},
}

_REFERENCE = r"^[A-Za-z0-9_.:/-]{1,64}$"


@contextmanager
def _counted_refusals(metrics: Metrics) -> Iterator[None]:
    try:
        yield
    except OutsideIntendedUse as refused:
        metrics.intended_use_refusals.labels(refused.code).inc()
        raise


@dataclass(frozen=True)
class AuditedClassifier:
    """Classifies one upload in a unit of work, audited (`result.classify`) and counted: for /classify and
    for each instance of a STOW-RS request."""

    store: ObjectStore
    inference: InferenceClient
    gate: Gate
    uid_secret: str
    context: RequestContext
    metrics: Metrics

    def __call__(
        self, session: UnitOfWork, submitter: Principal, upload: Upload, note: str | None = None
    ) -> Classified:
        with audit.recorded(session, self.context, "result.classify", submitter) as event:
            with _counted_refusals(self.metrics):
                classified = classify_upload(
                    session,
                    self.store,
                    self.inference,
                    self.gate,
                    submitter,
                    upload,
                    self.uid_secret,
                    self.context.request_id,
                )
            result = classified.result
            notes = [part for part in (note, "idempotent replay" if classified.replayed else None) if part]
            event.target, event.detail = f"result:{result.id}", "; ".join(notes) or None
        if not classified.replayed:
            session.on_commit(self.metrics.count_classification(result.model_name, result.label, result.ood))
        return classified


async def get_classifier(  # async: it only assembles what the app holds (no thread hop)
    store: StoreDep,
    inference: InferenceDep,
    gate: GateDep,
    settings: SettingsDep,
    context: RequestContextDep,
    metrics: MetricsDep,
) -> AuditedClassifier:
    return AuditedClassifier(store, inference, gate, settings.deidentification_uid_secret, context, metrics)


ClassifierDep = Annotated[AuditedClassifier, Depends(get_classifier)]


@router.post("/classify", response_model=ClassifyOut, status_code=201, responses=_CLASSIFY_ANSWERS)
def classify(
    response: Response,
    session: SessionDep,
    classifier: ClassifierDep,
    settings: SettingsDep,
    submitter: CurrentPrincipal,
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
    accept: Annotated[str | None, Header(description="`application/dicom`: answer a DICOM SR (DICOM uploads)")] = None,
) -> ClassifyOut | Response:
    """Classify one chest image; DICOM is de-identified first; the image and the result are stored and returned.

    The image-kind model runs first and the image is checked against the intended use (modality, body part,
    view, image type, photometric interpretation, size, population) of the model made for its kind, or of
    `model` when given: an image outside it is refused (422, see below) before any classifier runs, and
    nothing is stored. The result carries `image_kind`, `warnings` (e.g. `population_mismatch`) and `age_band`.

    A retry with the same `Idempotency-Key` and the same request returns the first answer (200).

    With `Accept: application/dicom` (DICOM uploads; else 406 `sr_needs_dicom`) the answer is the result as
    a DICOM Structured Report (TID 1500 after IHE AIR) filed in the hospital's own study and referencing its
    image: made from the original header in this request, never stored. `Location` names the stored result.
    """
    source = structured_report.source_of(data) if structured_report.MEDIA_TYPE in (accept or "") else None
    # kept only as its keyed digest (PS3.15 removes accession numbers): found by value, never shown
    keyed_accession = (
        accession_digest(accession_number, settings.deidentification_uid_secret) if accession_number else None
    )
    upload = Upload(data, model, keyed_accession, external_id, idempotency_key)
    classified = classifier(session, submitter, upload)
    result = classified.result
    if classified.replayed:
        response.status_code = 200
    response.headers["Location"] = f"/results/{result.id}"
    if source is not None:
        report = structured_report.report(result, source)
        status = 200 if classified.replayed else 201
        return Response(report, status, {"Location": f"/results/{result.id}"}, structured_report.MEDIA_TYPE)
    timings = (
        Timings(**{f"{name}_ms": ms for name, ms in classified.timings_ms.items()}) if classified.timings_ms else None
    )
    return ClassifyOut.of(result, created_by=None if classified.replayed else submitter.name, timings=timings)
