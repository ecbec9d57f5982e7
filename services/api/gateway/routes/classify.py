from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile

from gateway.classification import classify_upload
from gateway.deps import CurrentUser, InferenceDep, SessionDep, SettingsDep, StoreDep
from gateway.errors import ProblemError
from gateway.routes.results import result_out
from gateway.schemas import Problem, ResultOut

router = APIRouter(tags=["classify"])

_ERRORS = {code: {"model": Problem} for code in (400, 401, 404, 413, 415, 422, 503)}


@router.post("/classify", response_model=ResultOut, status_code=201, responses=_ERRORS)
def classify(
    response: Response,
    session: SessionDep,
    store: StoreDep,
    inference: InferenceDep,
    settings: SettingsDep,
    user: CurrentUser,
    file: Annotated[UploadFile, File(description="a JPEG or PNG chest X-ray")],
    model: Annotated[str | None, Form(pattern=r"^[A-Za-z0-9_.-]{1,128}$")] = None,
):
    """Classify one chest X-ray; the image and the result are stored and returned."""
    data = file.file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ProblemError(413, "file_too_large", f"the file exceeds {settings.max_upload_bytes} bytes")
    result = classify_upload(
        session, store, inference, user, data, model or settings.default_model, settings.retry_after_seconds
    )
    response.headers["Location"] = f"/results/{result.id}"
    return result_out(result)
