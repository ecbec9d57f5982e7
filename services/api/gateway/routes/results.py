import json
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from gateway import audit, crud, heatmap
from gateway.classification import delete_result as delete_stored_result
from gateway.classification import overlay_png
from gateway.deps import AdminDep, CurrentPrincipal, RequestContextDep, SessionDep, SettingsDep, StoreDep
from gateway.errors import ProblemError, ServiceUnavailable
from gateway.models import Result
from gateway.preview import preview_of
from gateway.principals import Principal
from gateway.schemas import CalibrationOut, ExplanationOut, ImageOut, Problem, ResultOut, ResultPage
from gateway.storage import ObjectNotFound, StorageUnavailable

router = APIRouter(prefix="/results", tags=["results"], responses={401: {"model": Problem}})


def result_out(result: Result) -> ResultOut:
    image = result.image
    return ResultOut(
        id=result.id,
        created_at=result.created_at,
        created_by=result.submitter_name,
        label=result.label,
        probabilities=result.probabilities,
        threshold=result.threshold,
        model_name=result.model_name,
        model_version=result.model_version,
        image=ImageOut(
            id=image.id,
            content_type=image.content_type,
            size_bytes=image.size_bytes,
            sha256=image.sha256,
            url=f"/results/{result.id}/image",
            width=image.width,
            height=image.height,
            modality=image.modality,
            body_part=image.body_part,
            view_position=image.view_position,
        ),
        accession_number=result.accession_number,
        external_id=result.external_id,
        ood=result.ood,
        ood_score=result.ood_score,
        calibration=_calibration_out(result),
        explanation=_explanation_out(result),
    )


def _calibration_out(result: Result) -> CalibrationOut | None:
    temperature = result.calibration_temperature
    return CalibrationOut(temperature=temperature) if temperature is not None else None


def _explanation_out(result: Result) -> ExplanationOut | None:
    if result.explanation_heatmap is None:
        return None
    return ExplanationOut(
        method=result.explanation_method or "",
        class_=result.explanation_class or "",
        heatmap_url=f"/results/{result.id}/heatmap",
    )


def _get_or_404(session, viewer: Principal, result_id: uuid.UUID) -> Result:
    """The result if this viewer may see it; another client's result is as absent as a missing one."""
    result = crud.get_result(session, result_id, viewer)
    if result is None:
        raise ProblemError(404, "result_not_found", f"there is no result {result_id}")
    return result


_SORTS = "|".join(f"-?{name}" for name in crud.RESULT_SORTS)


@router.get("", response_model=ResultPage)
def list_results(
    session: SessionDep,
    viewer: CurrentPrincipal,
    context: RequestContextDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    page: Annotated[int | None, Query(ge=1, description="1-based page of `limit` items; overrides `offset`")] = None,
    label: Annotated[str | None, Query(max_length=64)] = None,
    model: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[datetime | None, Query(description="created at or after")] = None,
    until: Annotated[datetime | None, Query(description="created before")] = None,
    submitted_by: Annotated[str | None, Query(max_length=128, description="a username or an API client's name")] = None,
    ood: Annotated[bool | None, Query(description="true: only images flagged as unlike the training data")] = None,
    sort: Annotated[str, Query(pattern=f"^({_SORTS})$")] = "-created_at",
):
    """Results newest first (or as `sort` says); API clients see only their own."""
    offset = (page - 1) * limit if page else offset
    where = crud.ResultFilter(label, model, since, until, submitted_by, ood, sort)
    results, total = crud.list_results(session, viewer, where, limit, offset)
    filters = (("label", label), ("model", model), ("submitted_by", submitted_by))
    searched = {name: value for name, value in filters if value}
    audit.record(session, context, "result.list", "success", viewer, detail=json.dumps(searched) if searched else None)
    return ResultPage(items=[result_out(r) for r in results], total=total, limit=limit, offset=offset)


@router.get("/{result_id}", response_model=ResultOut, responses={404: {"model": Problem}})
def get_result(session: SessionDep, viewer: CurrentPrincipal, context: RequestContextDep, result_id: uuid.UUID):
    with audit.recorded(session, context, "result.view", viewer, f"result:{result_id}"):
        result = _get_or_404(session, viewer, result_id)
    return result_out(result)


_IMAGE_HEADERS = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}


def _stored_image(session, store, settings, viewer: Principal, result_id: uuid.UUID) -> tuple[bytes, str]:
    """The stored image's bytes and media type, if this viewer may see the result."""
    image = _get_or_404(session, viewer, result_id).image
    try:
        return store.get(image.object_key), image.content_type
    except ObjectNotFound as exc:
        raise ProblemError(404, "image_not_found", "the stored image is missing") from exc
    except StorageUnavailable as exc:
        raise ServiceUnavailable(
            "storage_unavailable", "the object store is unavailable", settings.retry_after_seconds
        ) from exc


@router.get(
    "/{result_id}/image",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}, 404: {"model": Problem}, 503: {"model": Problem}},
)
def get_result_image(
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    viewer: CurrentPrincipal,
    context: RequestContextDep,
    result_id: uuid.UUID,
):
    with audit.recorded(session, context, "result.image_view", viewer, f"result:{result_id}"):
        data, media_type = _stored_image(session, store, settings, viewer, result_id)
    return Response(data, media_type=media_type, headers=_IMAGE_HEADERS)


@router.get(
    "/{result_id}/heatmap",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, 404: {"model": Problem}, 503: {"model": Problem}},
)
def get_result_heatmap(
    session: SessionDep, viewer: CurrentPrincipal, context: RequestContextDep, result_id: uuid.UUID
):
    """The explanation heatmap as an RGBA PNG with the image's aspect ratio, to lay over the whole image."""
    with audit.recorded(session, context, "result.heatmap_view", viewer, f"result:{result_id}"):
        data = overlay_png(_get_or_404(session, viewer, result_id))
        if data is None:
            raise ProblemError(404, "heatmap_not_found", "this result has no explanation heatmap")
    return Response(data, media_type=heatmap.PNG, headers=_IMAGE_HEADERS)


@router.get(
    "/{result_id}/preview",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}, "image/png": {}}},
        404: {"model": Problem},
        422: {"model": Problem},
        503: {"model": Problem},
    },
)
def get_result_preview(
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    viewer: CurrentPrincipal,
    context: RequestContextDep,
    result_id: uuid.UUID,
):
    """The stored image as a browser can show it: JPEG and PNG as stored, DICOM rendered to PNG."""
    with audit.recorded(session, context, "result.image_view", viewer, f"result:{result_id}") as event:
        event.detail = "preview"
        rendered = preview_of(_stored_image(session, store, settings, viewer, result_id)[0])
    return Response(rendered.data, media_type=rendered.media_type, headers=_IMAGE_HEADERS)


@router.delete(
    "/{result_id}",
    status_code=204,
    response_class=Response,
    responses={403: {"model": Problem}, 404: {"model": Problem}},
)
def delete_result(
    session: SessionDep, store: StoreDep, admin: AdminDep, context: RequestContextDep, result_id: uuid.UUID
):
    """Delete a result with its image row and stored object (administrators)."""
    with audit.recorded(session, context, "result.delete", admin, f"result:{result_id}"):
        delete_stored_result(session, store, _get_or_404(session, admin, result_id))
