import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

from gateway import audit, crud, export, heatmap
from gateway.classification import delete_with_image, overlay_png
from gateway.db import UnitOfWork
from gateway.deps import (
    AdminDep,
    CurrentPrincipal,
    RequestContextDep,
    SessionDep,
    SessionFactoryDep,
    SettingsDep,
    StoreDep,
)
from gateway.errors import problems
from gateway.exceptions import InvalidInput, NotFound
from gateway.models import Image, Result
from gateway.preview import preview_of
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
) -> ResultPage:
    """Results newest first (or as `sort` says); API clients see only their own."""
    offset = (page - 1) * limit if page else offset
    where = crud.ResultFilter(label, model, since, until, submitted_by, ood, sort)
    results, total = crud.list_results(session, viewer, where, limit, offset)
    filters = (("label", label), ("model", model), ("submitted_by", submitted_by))
    searched = {name: value for name, value in filters if value}
    answer = ResultPage(items=[ResultOut.of(r) for r in results], total=total, limit=limit, offset=offset)
    # recorded last: the audit chain's head stays locked from here until the commit
    audit.record(session, context, "result.list", "success", viewer, detail=json.dumps(searched) if searched else None)
    return answer


@router.get(
    "/export.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}, **problems(403, 422)},
)
def export_results(
    session: SessionDep,
    sessions: SessionFactoryDep,
    settings: SettingsDep,
    admin: AdminDep,
    context: RequestContextDep,
    label: Annotated[str | None, Query(max_length=64)] = None,
    model: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[datetime | None, Query(description="created at or after")] = None,
    until: Annotated[datetime | None, Query(description="created before")] = None,
    submitted_by: Annotated[str | None, Query(max_length=128, description="a username or an API client's name")] = None,
    ood: Annotated[bool | None, Query(description="true: only images flagged as unlike the training data")] = None,
    sort: Annotated[str, Query(pattern=f"^({_SORTS})$")] = "-created_at",
) -> StreamingResponse:
    """The results GET /results would list with these filters, as one CSV file (administrators; at
    most EXPORT_MAX_ROWS rows, else 422 `export_too_large`). Recorded in the audit trail."""
    where = crud.ResultFilter(label, model, since, until, submitted_by, ood, sort)
    filters = {"label": label, "model": model, "since": since, "until": until, "submitted_by": submitted_by, "ood": ood}
    with audit.recorded(session, context, "result.export", admin) as event:
        total = crud.count_results(session, admin, where)
        searched = {name: str(value) for name, value in filters.items() if value is not None}
        event.detail = json.dumps({"rows": total, **searched})
        if total > settings.export_max_rows:
            raise InvalidInput(
                "export_too_large",
                f"{total} results match; narrow the filters (e.g. the dates) to {settings.export_max_rows} or fewer",
            )
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


@router.get("/{result_id}/preview", response_class=Response, responses=_IMAGE_ANSWERS | problems(404, 422, 503))
def get_result_preview(
    session: SessionDep, store: StoreDep, viewer: CurrentPrincipal, context: RequestContextDep, result_id: uuid.UUID
) -> Response:
    """The stored image as a browser can show it: JPEG and PNG as stored, DICOM rendered to PNG."""
    with audit.recorded(session, context, "result.image_view", viewer, f"result:{result_id}") as event:
        event.detail = "preview"
        rendered = preview_of(_stored_image(store, _get_or_404(session, viewer, result_id).image))
    return Response(rendered.data, media_type=rendered.media_type, headers=_IMAGE_HEADERS)


@router.delete("/{result_id}", status_code=204, response_class=Response, responses=problems(403, 404))
def delete_result(
    session: SessionDep, store: StoreDep, admin: AdminDep, context: RequestContextDep, result_id: uuid.UUID
) -> None:
    """Delete a result with its image row and stored object (administrators)."""
    with audit.recorded(session, context, "result.delete", admin, f"result:{result_id}"):
        delete_with_image(session, store, _get_or_404(session, admin, result_id))
