"""FastAPI dependencies: the runtime, a database session, the settings."""

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from leafwatch.config import Settings
from leafwatch.errors import Forbidden, Unauthorized
from leafwatch.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    """The runtime the lifespan opened (async: FastAPI would run a plain def in a thread)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    """A database session for one request."""
    with runtime.sessions() as session:
        yield session


def get_settings(runtime: RuntimeDep) -> Settings:
    """The settings the app was built with."""
    return runtime.settings


def require_admin(
    runtime: RuntimeDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    """Let through only callers with the admin bearer token; refuse all when none is set."""
    token = runtime.settings.resolved_admin_token()
    if token is None:
        raise Forbidden("admin endpoints are off: set LEAFWATCH_ADMIN_TOKEN to use them")
    if not bearer_matches(authorization, token):
        raise Unauthorized("this endpoint needs the header 'Authorization: Bearer <admin token>'")


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an Authorization header carries exactly this bearer token."""
    scheme, _, credentials = (authorization or "").partition(" ")
    # Bytes: compare_digest refuses non-ASCII text, which a header may carry.
    given = credentials.strip().encode("utf-8", "surrogateescape")
    return scheme.lower() == "bearer" and hmac.compare_digest(given, token.encode("utf-8"))


SessionDep = Annotated[Session, Depends(get_session)]
AdminDep = Annotated[None, Depends(require_admin)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
