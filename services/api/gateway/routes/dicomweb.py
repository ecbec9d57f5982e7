from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse

from gateway import dicomweb
from gateway.classification import Classified, Upload
from gateway.db import unit_of_work
from gateway.deps import CurrentPrincipal, SessionFactoryDep, SettingsDep
from gateway.errors import problems
from gateway.exceptions import TooLarge
from gateway.routes.classify import ClassifierDep

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"], responses=problems(401))

_STORE_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "every instance stored", "content": {dicomweb.MEDIA_TYPE: {}}},
    202: {"description": "some instances refused (FailedSOPSequence)", "content": {dicomweb.MEDIA_TYPE: {}}},
    409: {"description": "no instance stored (FailedSOPSequence)", "content": {dicomweb.MEDIA_TYPE: {}}},
    **problems(413, 415, 503),
}


async def get_body(request: Request, settings: SettingsDep) -> bytes:
    """The request body, at most the upload limit."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > settings.max_upload_bytes:
            raise TooLarge("file_too_large", f"the body exceeds {settings.max_upload_bytes} bytes")
    return bytes(body)


@router.post("/studies", response_class=JSONResponse, responses=_STORE_ANSWERS)
def store_instances(
    request: Request,
    sessions: SessionFactoryDep,
    classifier: ClassifierDep,
    settings: SettingsDep,
    submitter: CurrentPrincipal,
    body: Annotated[bytes, Depends(get_body)],
    content_type: Annotated[str, Header(description='multipart/related; type="application/dicom"')],
) -> JSONResponse:
    """STOW-RS (DICOM PS3.18): each DICOM instance is classified as by POST /classify (intended use,
    de-identification, storage), in its own transaction; the same instance sent again answers its first
    result. The answer is the standard store response: `ReferencedSOPSequence` (each with the result's
    URL as `RetrieveURL`) and `FailedSOPSequence` (with `FailureReason`: 0122 outside the intended use,
    C000 not readable, 0111 the SOP Instance UID was sent before with other content, 0110 other refusals)."""

    def classify(upload: Upload) -> Classified:
        with unit_of_work(sessions) as session:
            return classifier(session, submitter, upload, note="stow-rs")

    files = dicomweb.instances(content_type, body)
    outcomes = dicomweb.store(files, classify, settings.deidentification_uid_secret)
    status, answer = dicomweb.response(outcomes, str(request.base_url))
    return JSONResponse(answer, status, media_type=dicomweb.MEDIA_TYPE)
