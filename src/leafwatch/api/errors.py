"""The one place that turns errors into HTTP answers `{"error": code, "detail": message}`."""

from http import HTTPStatus

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from leafwatch.errors import LeafWatchError
from leafwatch.observe.logs import mark_logged
from leafwatch.schemas import ErrorOut

log = structlog.stdlib.get_logger(__name__)

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in {
        400: "Bad request",
        404: "Not found",
        413: "Upload too large",
        415: "Not an accepted image",
        422: "Invalid fields or image",
        503: "Not ready: the model, the database or the image store",
    }.items()
}


def error_body(code: str, detail: str) -> dict[str, str]:
    """The JSON body of every error answer."""
    return {"error": code, "detail": detail}


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on an app."""

    @app.exception_handler(LeafWatchError)
    async def _domain(_request: Request, exc: LeafWatchError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.detail),
            status_code=int(exc.status_code),
            headers=exc.response_headers() or None,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            error_body("invalid_request", _describe(exc)),
            status_code=HTTPStatus.UNPROCESSABLE_ENTITY,
        )

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        log.exception("database error", path=request.url.path)
        mark_logged(exc)
        return JSONResponse(
            error_body("database_unavailable", "the database could not be reached; try again"),
            status_code=HTTPStatus.SERVICE_UNAVAILABLE,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        mark_logged(exc)
        return JSONResponse(
            error_body("internal_error", "the server failed to answer; the error is logged"),
            status_code=HTTPStatus.INTERNAL_SERVER_ERROR,
        )


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(item) for item in error.get("loc", ()) if item != "body")
        message = str(error.get("msg", "invalid"))
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts) or "invalid request"
