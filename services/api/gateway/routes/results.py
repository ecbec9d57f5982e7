import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from gateway import crud
from gateway.deps import CurrentUser, SessionDep, SettingsDep, StoreDep
from gateway.errors import ProblemError, ServiceUnavailable
from gateway.models import Result
from gateway.schemas import ImageOut, Problem, ResultOut, ResultPage
from gateway.storage import ObjectNotFound, StorageUnavailable

router = APIRouter(prefix="/results", tags=["results"], responses={401: {"model": Problem}})


def result_out(result: Result) -> ResultOut:
    image = result.image
    return ResultOut(
        id=result.id,
        created_at=result.created_at,
        created_by=result.created_by.username,
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
        ),
    )


def _get_or_404(session, result_id: uuid.UUID) -> Result:
    result = crud.get_result(session, result_id)
    if result is None:
        raise ProblemError(404, "result_not_found", f"there is no result {result_id}")
    return result


@router.get("", response_model=ResultPage)
def list_results(
    session: SessionDep,
    _: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
):
    results, total = crud.list_results(session, limit, offset)
    return ResultPage(items=[result_out(r) for r in results], total=total, limit=limit, offset=offset)


@router.get("/{result_id}", response_model=ResultOut, responses={404: {"model": Problem}})
def get_result(session: SessionDep, _: CurrentUser, result_id: uuid.UUID):
    return result_out(_get_or_404(session, result_id))


@router.get(
    "/{result_id}/image",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}, 404: {"model": Problem}, 503: {"model": Problem}},
)
def get_result_image(session: SessionDep, store: StoreDep, settings: SettingsDep, _: CurrentUser, result_id: uuid.UUID):
    image = _get_or_404(session, result_id).image
    try:
        data = store.get(image.object_key)
    except ObjectNotFound as exc:
        raise ProblemError(404, "image_not_found", "the stored image is missing") from exc
    except StorageUnavailable as exc:
        raise ServiceUnavailable("storage_unavailable", "the object store is unavailable", settings.retry_after_seconds) from exc
    headers = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}
    return Response(data, media_type=image.content_type, headers=headers)
