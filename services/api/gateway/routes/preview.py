from fastapi import APIRouter, Response

from gateway.deps import CurrentPrincipal, DecodingDep, UploadDep
from gateway.errors import problems
from gateway.preview import preview_of

router = APIRouter(tags=["preview"])


@router.post(
    "/preview",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}, **problems(400, 401, 413, 415, 422, 503)},
)
def preview_upload(_: CurrentPrincipal, data: UploadDep, decoding: DecodingDep) -> Response:
    """How an upload will look, before it is classified: DICOM rendered to PNG. Nothing is stored or recorded.
    At most MAX_IMAGE_PIXELS (422 `image_too_large`); 503 `decoding_busy` while too many images are decoded."""
    rendered = preview_of(data, decoding)
    return Response(rendered.data, media_type=rendered.media_type, headers={"Cache-Control": "no-store"})
