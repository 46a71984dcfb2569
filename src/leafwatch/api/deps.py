"""FastAPI dependencies: the runtime, a database session, the settings."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from leafwatch.config import Settings
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


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
