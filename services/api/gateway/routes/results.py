import uuid
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response, StreamingResponse

from cxr_model.images import DICOM
from gateway import audit, crud, export, fhir, heatmap, structured_report
from gateway.classification import delete_with_image, overlay_png
from gateway.db import UnitOfWork
from gateway.deps import (
    AdminDep,
    CurrentPrincipal,
    DecodingDep,
    RequestContextDep,
    ResultFiltersDep,
    ResultPageDep,
    SessionDep,
    SessionFactoryDep,
    SettingsDep,
    StoreDep,
)
from gateway.errors import problems
from gateway.exceptions import NotFound
from gateway.models import Image, Result
from gateway.preview import stored_preview
from gateway.principals import Principal
from gateway.schemas import ResultOut, ResultPage
from gateway.storage import ObjectNotFound, ObjectStore

router = APIRouter(prefix="/results", tags=["results"], responses=problems(401))


def _get_or_404(session: UnitOfWork, viewer: Principal, result_id: uuid.UUID) -> Result:
    """The result if this viewer may see it; another client's result is as absent as a missing one."""
    result = crud.get_result(session, result_id, viewer)
    if result is None:
        raise NotFound("result_not_found", f"there is no result {result_id}")
    return result


@router.get("", response_model=ResultPage, responses=problems(400))
def list_results(
    session: SessionDep,
    viewer: CurrentPrincipal,
    context: RequestContextDep,
    settings: SettingsDep,
    query: ResultPageDep,
) -> ResultPage:
    """Results newest first (or as `sort` says); API clients see only their own. A hospital finds its own
    with `accession_number`, `external_id` or the image's `sop_instance_uid`; unknown parameters are 400."""
    where = query.where(settings.deidentification_uid_secret)
    results, total = crud.list_results(session, viewer, where, query.limit, query.start)
    answer = ResultPage(items=[ResultOut.of(r) for r in results], total=total, limit=query.limit, offset=query.start)
    audit.record_search(session, context, "result.list", viewer, where.searched())
    return answer


@router.get(
    "/export.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}, **problems(400, 403, 422)},
)
def export_results(
    session: SessionDep,
    sessions: SessionFactoryDep,
    settings: SettingsDep,
    admin: AdminDep,
    context: RequestContextDep,
    where: ResultFiltersDep,
) -> StreamingResponse:
    """The results GET /results would list with these filters, as one CSV file (administrators; at
    most EXPORT_MAX_ROWS rows, else 422 `export_too_large`). Recorded in the audit trail."""
    with audit.recorded(session, context, "result.export", admin) as event:
        total = export.checked_size(crud.count_results(session, admin, where), where.searched(), settings, event)
    return StreamingResponse(
        export.results_csv(sessions, admin, where, settings.export_max_rows),
        media_type=export.MEDIA_TYPE,
        headers=export.download_headers("results", total),
    )


@router.get("/{result_id}", response_model=ResultOut, responses=problems(404))
def get_result(
    session: SessionDep, viewer: CurrentPrincipal, context: RequestContextDep, result_id: uuid.UUID
) -> ResultOut:
    with audit.recorded(session, context, "result.view", viewer, f"result:{result_id}"):
        result = _get_or_404(session, viewer, result_id)
    return ResultOut.of(result)


_IMAGE_HEADERS = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}
_IMAGE_ANSWERS: dict[int | str, dict[str, Any]] = {200: {"content": {"image/jpeg": {}, "image/png": {}}}}


def _stored_image(store: ObjectStore, image: Image) -> bytes:
    try:
        return store.get(image.object_key)
    except ObjectNotFound as exc:
        raise NotFound("image_not_found", "the stored image is missing") from exc


@router.get("/{result_id}/image", response_class=Response, responses=_IMAGE_ANSWERS | problems(404, 503))
def get_result_image(
    session: SessionDep, store: StoreDep, viewer: CurrentPrincipal, context: RequestContextDep, result_id: uuid.UUID
) -> Response:
    with audit.recorded(session, context, "result.image_view", viewer, f"result:{result_id}"):
        image = _get_or_404(session, viewer, result_id).image
        data = _stored_image(store, image)
    return Response(data, media_type=image.content_type, headers=_IMAGE_HEADERS)


@router.get(
    "/{result_id}/heatmap",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **problems(404, 503)},
)
def get_result_heatmap(
    session: SessionDep, viewer: CurrentPrincipal, context: RequestContextDep, result_id: uuid.UUID
) -> Response:
    """The explanation heatmap as an RGBA PNG with the image's aspect ratio, to lay over the whole image."""
    with audit.recorded(session, context, "result.heatmap_view", viewer, f"result:{result_id}"):
        data = overlay_png(_get_or_404(session, viewer, result_id))
        if data is None:
            raise NotFound("heatmap_not_found", "this result has no explanation heatmap")
    return Response(data, media_type=heatmap.PNG, headers=_IMAGE_HEADERS)


@router.get(
    "/{result_id}/sr",
    response_class=Response,
    responses={200: {"content": {structured_report.MEDIA_TYPE: {}}}, **problems(404, 503)},
)
def get_result_sr(
    session: SessionDep, store: StoreDep, viewer: CurrentPrincipal, context: RequestContextDep, result_id: uuid.UUID
) -> Response:
    """The result as a DICOM Structured Report (TID 1500 after IHE AIR) referencing the de-identified image
    (results of DICOM images; 404 `sr_not_available` for others). The SR that references the hospital's own
    UIDs is answered only by POST /classify with `Accept: application/dicom`."""
    with audit.recorded(session, context, "result.sr_view", viewer, f"result:{result_id}"):
        result = _get_or_404(session, viewer, result_id)
        if result.image.content_type != DICOM:
            raise NotFound("sr_not_available", "only results of DICOM images have a DICOM Structured Report")
        evidence = structured_report.evidence_of(_stored_image(store, result.image))
    return Response(structured_report.report(result, evidence), media_type=DICOM, headers=_IMAGE_HEADERS)


@router.get(
    "/{result_id}/fhir",
    response_class=JSONResponse,
    responses={200: {"content": {fhir.MEDIA_TYPE: {}}}, **problems(404)},
)
def get_result_fhir(
    session: SessionDep, viewer: CurrentPrincipal, context: RequestContextDep, result_id: uuid.UUID
) -> JSONResponse:
    """The result as a FHIR R4 DiagnosticReport with its Observation, Device and Media contained."""
    with audit.recorded(session, context, "result.fhir_view", viewer, f"result:{result_id}"):
        report = fhir.diagnostic_report(_get_or_404(session, viewer, result_id))
    return JSONResponse(report, media_type=fhir.MEDIA_TYPE, headers=_IMAGE_HEADERS)


@router.get("/{result_id}/preview", response_class=Response, responses=_IMAGE_ANSWERS | problems(404, 422, 503))
def get_result_preview(
    session: SessionDep,
    store: StoreDep,
    viewer: CurrentPrincipal,
    context: RequestContextDep,
    decoding: DecodingDep,
    result_id: uuid.UUID,
) -> Response:
    """The stored image as a browser can show it: JPEG and PNG as stored, DICOM rendered to PNG (503
    `decoding_busy` while too many images are decoded)."""
    with audit.recorded(session, context, "result.image_view", viewer, f"result:{result_id}") as event:
        event.detail = "preview"
        image = _get_or_404(session, viewer, result_id).image
        rendered = stored_preview(image.content_type, lambda: _stored_image(store, image), decoding)
    return Response(rendered.data, media_type=rendered.media_type, headers=_IMAGE_HEADERS)


@router.delete("/{result_id}", status_code=204, response_class=Response, responses=problems(403, 404))
def delete_result(
    session: SessionDep, store: StoreDep, admin: AdminDep, context: RequestContextDep, result_id: uuid.UUID
) -> None:
    """Delete a result with its image row and stored object (administrators)."""
    with audit.recorded(session, context, "result.delete", admin, f"result:{result_id}"):
        delete_with_image(session, store, _get_or_404(session, admin, result_id))
