"""One-shot start-up step: migrate the database to head and make sure an administrator exists.

Run as `python -m gateway.prestart` before the gateway starts (compose runs it as a
one-shot service, Kubernetes as a Job). The first administrator's credentials come from
FIRST_ADMIN_USERNAME / FIRST_ADMIN_PASSWORD. Outside development the password must be given: a
generated one would be printed, and a job's output ends up in the cluster's logs. In development
(the local run) one is generated and printed once to the terminal. No fixed password exists
anywhere, and a given one is never printed.
"""

import secrets
from importlib.resources import files

from alembic import command
from alembic.config import Config

from gateway import crud
from gateway.db import make_engine, make_session_factory
from gateway.schemas import UserCreate
from gateway.settings import PrestartSettings


def alembic_config(database_url: str) -> Config:
    config = Config(str(files("gateway") / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def migrate(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "head")


def ensure_first_admin(settings: PrestartSettings) -> str | None:
    """Create the first administrator if there are no users; returns a generated password."""
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            if crud.count_users(session) > 0:
                return None
            if settings.environment != "development" and not settings.first_admin_password:
                raise SystemExit(
                    "FIRST_ADMIN_PASSWORD must be set to create the first administrator outside development"
                    " (a generated one would have to be printed, into the logs)"
                )
            password = settings.first_admin_password or secrets.token_urlsafe(18)
            user = UserCreate(username=settings.first_admin_username, password=password, role="admin")
            crud.create_user(session, user)
            session.commit()
            return None if settings.first_admin_password else password
    finally:
        engine.dispose()


def main() -> None:
    settings = PrestartSettings()
    migrate(settings.database_url)
    generated = ensure_first_admin(settings)
    if generated:
        print(f"Created administrator '{settings.first_admin_username}' with password: {generated}", flush=True)
        print("This password is shown only once; sign in and keep it safe.", flush=True)


if __name__ == "__main__":
    main()
