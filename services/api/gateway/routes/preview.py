from fastapi import APIRouter, Response

from gateway.deps import CurrentPrincipal, UploadDep
from gateway.errors import problems
from gateway.preview import preview_of

router = APIRouter(tags=["preview"])


@router.post(
    "/preview",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}, **problems(400, 401, 413, 415, 422)},
)
def preview_upload(_: CurrentPrincipal, data: UploadDep) -> Response:
    """How an upload will look, before it is classified: DICOM rendered to PNG. Nothing is stored or recorded."""
    rendered = preview_of(data)
    return Response(rendered.data, media_type=rendered.media_type, headers={"Cache-Control": "no-store"})
