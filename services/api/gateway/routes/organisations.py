import uuid

from fastapi import APIRouter

from gateway import audit, crud
from gateway.db import UnitOfWork
from gateway.deps import AdminDep, RequestContextDep, SessionDep
from gateway.errors import problems
from gateway.exceptions import Conflict, NotFound
from gateway.models import Organisation
from gateway.schemas import OrganisationCreate, OrganisationOut

router = APIRouter(prefix="/organisations", tags=["organisations"], responses=problems(401, 403))


def organisation_or_404(session: UnitOfWork, organisation_id: uuid.UUID) -> Organisation:
    organisation = crud.get_organisation(session, organisation_id)
    if organisation is None:
        raise NotFound("organisation_not_found", f"there is no organisation {organisation_id}")
    return organisation


@router.get("", response_model=list[OrganisationOut])
def list_organisations(session: SessionDep, admin: AdminDep, context: RequestContextDep) -> list[Organisation]:
    organisations = crud.list_organisations(session)
    audit.record(session, context, "organisation.list", "success", admin)
    return organisations


@router.post("", response_model=OrganisationOut, status_code=201, responses=problems(409, 422))
def create_organisation(
    session: SessionDep, admin: AdminDep, context: RequestContextDep, organisation_in: OrganisationCreate
) -> Organisation:
    """A hospital or group: its users and API clients (created with its `organisation_id`) see only its results."""
    with audit.recorded(
        session, context, "organisation.create", admin, f"organisation:{organisation_in.name}"
    ) as event:
        if crud.get_organisation_by_name(session, organisation_in.name):
            raise Conflict("organisation_exists", f"the organisation '{organisation_in.name}' exists")
        organisation = crud.add_organisation(session, organisation_in.name)
        event.target = f"organisation:{organisation.id}"
    return organisation
