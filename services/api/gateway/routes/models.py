from fastapi import APIRouter

from gateway.deps import CurrentPrincipal, GateDep
from gateway.errors import problems
from gateway.schemas import ModelOut

router = APIRouter(prefix="/models", tags=["models"], responses=problems(401, 503))


@router.get("", response_model=list[ModelOut])
def list_models(_: CurrentPrincipal, gate: GateDep) -> list[ModelOut]:
    """The deployed models (their default versions), by name: what each is made for (intended use, population),
    its classes, metrics and known limits, as its model card states them."""
    return [ModelOut.of(model, gate.image_kind_model) for _, model in sorted(gate.catalog.models().items())]


@router.get("/{name}", response_model=ModelOut, responses=problems(404))
def get_model(_: CurrentPrincipal, gate: GateDep, name: str) -> ModelOut:
    return ModelOut.of(gate.catalog.get(name), gate.image_kind_model)
