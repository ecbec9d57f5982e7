from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from gateway.deps import InferenceDep, SessionDep, StoreDep
from gateway.storage import StorageUnavailable

router = APIRouter(tags=["health"])


@router.get("/health/live")
@router.get("/healthz")
def live():
    return {"live": True}


@router.get("/health/ready")
@router.get("/readyz")
def ready(session: SessionDep, store: StoreDep, inference: InferenceDep):
    """Ready when the database, the object store and the inference service all answer."""
    checks = {"database": _database_ok(session), "storage": _storage_ok(store), "inference": inference.ready()}
    ok = all(checks.values())
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


def _database_ok(session) -> bool:
    try:
        session.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


def _storage_ok(store) -> bool:
    try:
        store.check()
        return True
    except StorageUnavailable:
        return False
