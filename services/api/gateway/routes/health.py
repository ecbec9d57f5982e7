from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from gateway.deps import EngineDep, GateDep, InferenceDep, StoreDep
from gateway.exceptions import Unavailable
from gateway.routing import Gate
from gateway.storage import ObjectStore, StorageUnavailable

router = APIRouter(tags=["health"])


@router.get("/health/live")
@router.get("/healthz")
def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready")
@router.get("/readyz")
def ready(engine: EngineDep, store: StoreDep, inference: InferenceDep, gate: GateDep) -> JSONResponse:
    """Ready when the database, the object store and the inference service all answer, and the image-kind
    model (without which no image is classified) and at least one classifier are deployed."""
    checks = {
        "database": _database_ok(engine),
        "storage": _storage_ok(store),
        "inference": inference.ready(),
        "models": _models_ok(gate),
    }
    ok = all(checks.values())
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


def _models_ok(gate: Gate) -> bool:
    try:
        models = gate.catalog.models()
    except Unavailable:
        return False
    classifiers = [model for model in models.values() if model.intended_use is not None]
    return gate.image_kind_model in models and bool(classifiers)


def _database_ok(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except SQLAlchemyError:
        return False


def _storage_ok(store: ObjectStore) -> bool:
    try:
        store.check()
        return True
    except StorageUnavailable:
        return False
