from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile

from gateway.deps import CurrentPrincipal, SettingsDep
from gateway.errors import ProblemError
from gateway.preview import preview_of
from gateway.schemas import Problem

router = APIRouter(tags=["preview"])

_ERRORS = {code: {"model": Problem} for code in (400, 401, 413, 415, 422)}


@router.post(
    "/preview",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}, **_ERRORS},
)
def preview_upload(
    settings: SettingsDep,
    _: CurrentPrincipal,
    file: Annotated[UploadFile, File(description="a JPEG, PNG or DICOM chest X-ray")],
):
    """How an upload will look, before it is classified: DICOM rendered to PNG. Nothing is stored or recorded."""
    data = file.file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ProblemError(413, "file_too_large", f"the file exceeds {settings.max_upload_bytes} bytes")
    rendered = preview_of(data)
    return Response(rendered.data, media_type=rendered.media_type, headers={"Cache-Control": "no-store"})
