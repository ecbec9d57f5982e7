import uuid

from fastapi import APIRouter

from gateway import audit, crud, identity
from gateway.db import UnitOfWork
from gateway.deps import AdminDep, RequestContextDep, SessionDep
from gateway.errors import problems
from gateway.exceptions import NotFound
from gateway.models import ApiClient
from gateway.routes.organisations import organisation_or_404
from gateway.schemas import ClientCreate, ClientOut, ClientWithSecret

router = APIRouter(prefix="/clients", tags=["clients"], responses=problems(401, 403))


def _get_client_or_404(session: UnitOfWork, client_uuid: uuid.UUID) -> ApiClient:
    client = crud.get_client(session, client_uuid)
    if client is None:
        raise NotFound("client_not_found", f"there is no API client {client_uuid}")
    return client


def _with_secret(client: ApiClient, secret: str) -> ClientWithSecret:
    return ClientWithSecret.model_validate(ClientOut.model_validate(client).model_dump() | {"client_secret": secret})


@router.get("", response_model=list[ClientOut])
def list_clients(session: SessionDep, admin: AdminDep, context: RequestContextDep) -> list[ApiClient]:
    clients = crud.list_clients(session)
    audit.record(session, context, "client.list", "success", admin, detail=f"{len(clients)} clients")
    return clients


@router.post("", response_model=ClientWithSecret, status_code=201, responses=problems(404))
def create_client(
    session: SessionDep, admin: AdminDep, context: RequestContextDep, client_in: ClientCreate
) -> ClientWithSecret:
    """Register a hospital system; the response holds its secret, which is not shown again."""
    with audit.recorded(session, context, "client.create", admin) as event:
        organisation = organisation_or_404(session, client_in.organisation_id or admin.organisation_id)
        client, secret = identity.create_client(session, client_in.name, organisation.id)
        event.target = f"client:{client.id}"
    return _with_secret(client, secret)


@router.post("/{client_uuid}/disable", response_model=ClientOut, responses=problems(404))
def disable_client(
    session: SessionDep, admin: AdminDep, context: RequestContextDep, client_uuid: uuid.UUID
) -> ApiClient:
    """Disable a client; its tokens stop working at once."""
    with audit.recorded(session, context, "client.disable", admin, f"client:{client_uuid}"):
        return crud.set_active(session, _get_client_or_404(session, client_uuid), False)


@router.post("/{client_uuid}/secret", response_model=ClientWithSecret, responses=problems(404))
def rotate_client_secret(
    session: SessionDep, admin: AdminDep, context: RequestContextDep, client_uuid: uuid.UUID
) -> ClientWithSecret:
    """Replace a client's secret; the old one stops working and the new one is shown this once."""
    with audit.recorded(session, context, "client.rotate_secret", admin, f"client:{client_uuid}"):
        client = _get_client_or_404(session, client_uuid)
        secret = identity.rotate_client_secret(session, client)
    return _with_secret(client, secret)
