"""Account care from the command line, for when no administrator can sign in.

    python -m gateway.accounts reset-password <username>   # prints a temporary password once
    python -m gateway.accounts enable <username>

The same as an administrator's reset and enable in the web app (`POST /users/{id}/password`,
`POST /users/{id}/enable`): the user's sessions end, a reset user must choose a new password at
the next sign-in, and the change is recorded in the audit trail (actor "command line"). Needs only
the database (DATABASE_URL, PGPASSWORD).
"""

from __future__ import annotations

import argparse
import sys

from gateway import crud, identity
from gateway.db import make_engine, make_session_factory
from gateway.models import AuditEvent
from gateway.settings import DatabaseSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["reset-password", "enable"])
    parser.add_argument("username")
    arguments = parser.parse_args()
    engine = make_engine(DatabaseSettings().database_url)
    try:
        with make_session_factory(engine)() as session:
            user = crud.get_user_by_username(session, arguments.username)
            if user is None:
                print(f"there is no user {arguments.username}", file=sys.stderr, flush=True)
                sys.exit(2)
            if arguments.action == "enable":
                identity.set_user_active(session, user, True)
                action, temporary = "user.enable", None
            else:
                temporary = identity.reset_password(session, user, None)
                action = "user.password_reset"
            event = AuditEvent(actor_kind="system", actor_name="command line", action=action, outcome="success")
            event.target, event.detail = f"user:{user.id}", "generated" if temporary else None
            crud.add_audit_event(session, event)
            session.commit()
    finally:
        engine.dispose()
    if temporary:
        print(f"Temporary password for '{arguments.username}': {temporary}", flush=True)
        print("Shown only once; the user chooses a new password at the next sign-in.", flush=True)
    else:
        print(f"'{arguments.username}' is enabled; the sessions from before stay ended.", flush=True)


if __name__ == "__main__":
    main()
