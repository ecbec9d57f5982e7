"""What is checked of a request before its body is read: the caller's token, and the body's size as it arrives.

Plain ASGI middleware: FastAPI reads (and spools) a whole multipart body before any dependency runs, so
a check made in a dependency would come after an anonymous caller had sent its 20 MB.
"""

from __future__ import annotations

import contextlib

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth_cache import RecentAuthentications
from gateway.db import UnitOfWork, unit_of_work
from gateway.deps import authenticate, get_request_context, oauth2_scheme
from gateway.errors import problem_response
from gateway.exceptions import Unauthenticated, Unavailable
from gateway.settings import Settings

MULTIPART_OVERHEAD_BYTES = 64 * 1024
_WITH_BODY = {"POST", "PUT", "PATCH"}
_SIGN_IN = {"/auth/token", "/auth/refresh"}  # the only requests with a body that carry no bearer token


class AuthenticateBeforeBody:
    """A request with a body, to anything but the sign-in endpoints, is authenticated (as its route's
        dependency would: token, revocation, account; a refused token is audited) before a byte of its body
        is read; without a valid token it gets 401 at once. Its route's dependency takes the principal found
        here (`request.state.authentication`) rather than reading the database again a moment later. A token
    accepted a moment ago (`auth_cache`) is not read from the database at all."""

    def __init__(
        self, app: ASGIApp, settings: Settings, sessions: sessionmaker[UnitOfWork], recent: RecentAuthentications
    ):
        self.app, self.settings, self.sessions, self.recent = app, settings, sessions, recent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY or scope["path"] in _SIGN_IN:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        token = await oauth2_scheme(request)
        request.state.authentication = self.recent.get(token)
        if request.state.authentication is not None:
            await self.app(scope, receive, send)
            return
        context = await get_request_context(request)

        def check_token() -> None:
            with unit_of_work(self.sessions) as session:
                authenticated = authenticate(request, session, token, self.settings, context)
                # a refusal commits its audit event (it ends the request); an accepted token wrote nothing, and
                # the route's unit of work is the request's one transaction
                session.rollback()
            request.state.authentication = authenticated  # the route's own dependency takes it from here

        try:
            await run_in_threadpool(check_token)
        except Unauthenticated as refused:
            answer = problem_response(401, refused.code, refused.message, {"WWW-Authenticate": "Bearer"})
            await answer(scope, receive, send)
            return
        except (Unavailable, SQLAlchemyError):
            retry = {"Retry-After": str(self.settings.retry_after_seconds)}
            await problem_response(503, "database_unavailable", "the database is unavailable; retry later", retry)(
                scope, receive, send
            )
            return
        await self.app(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """Refuses a body over the upload limit (plus multipart overhead) with 413: at once when its
    Content-Length says so, else as soon as the bytes that have arrived pass it (a chunked body has no
    Content-Length); the rest is never read."""

    def __init__(self, app: ASGIApp, max_upload_bytes: int):
        self.app = app
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send)
            return
        received, exceeded, answered = 0, False, False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def send_unless_cut(message: Message) -> None:
            nonlocal answered
            if exceeded:
                return  # the app's answer to a body cut short (FastAPI: a 400) is replaced by the 413
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        with contextlib.suppress(_BodyTooLarge):  # the app let it through: the 413 is sent below
            await self.app(scope, counted_receive, send_unless_cut)
        if exceeded and not answered:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = problem_response(413, "file_too_large", f"the body exceeds {self.max_upload_bytes} bytes")
        await refused(scope, receive, send)
