"""Domain errors, each with the error code and HTTP status the API answers with."""

from http import HTTPStatus
from typing import ClassVar


class LeafWatchError(Exception):
    """Base of every error LeafWatch answers to a client; carries a stable code."""

    code = "error"
    status_code = HTTPStatus.BAD_REQUEST
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code

    def response_headers(self) -> dict[str, str]:
        """Headers the HTTP answer carries (the class's, unless an error knows more)."""
        return self.headers


class InvalidImage(LeafWatchError):
    """An upload that is not an image LeafWatch accepts; `code` says why."""

    STATUS_BY_CODE: ClassVar[dict[str, HTTPStatus]] = {
        "empty_file": HTTPStatus.BAD_REQUEST,
        "file_too_large": HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        "too_many_pixels": HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        "not_an_image": HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        "unsupported_format": HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        "corrupt_image": HTTPStatus.UNPROCESSABLE_ENTITY,
        "trailing_data": HTTPStatus.UNPROCESSABLE_ENTITY,
        "too_many_scans": HTTPStatus.UNPROCESSABLE_ENTITY,
    }

    def __init__(self, code: str, detail: str) -> None:
        if code not in self.STATUS_BY_CODE:
            raise ValueError(f"unknown image error code {code!r}")
        super().__init__(detail, code=code)
        self.status_code = self.STATUS_BY_CODE[code]


class RequestTooLarge(LeafWatchError):
    """A request body over the size limit, declared in its headers or counted as it arrived."""

    code = "request_too_large"
    status_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class BodyTimeout(LeafWatchError):
    """A request body that was still arriving when the request's time ran out."""

    code = "body_timeout"
    status_code = HTTPStatus.REQUEST_TIMEOUT


class RequestTimeout(LeafWatchError):
    """A request whose answer had not started when its time ran out."""

    code = "request_timeout"
    status_code = HTTPStatus.SERVICE_UNAVAILABLE


class PredictionNotFound(LeafWatchError):
    """No prediction has the given id."""

    code = "prediction_not_found"
    status_code = HTTPStatus.NOT_FOUND


class InvalidCursor(LeafWatchError):
    """A paging cursor that LeafWatch did not hand out."""

    code = "invalid_cursor"
    status_code = HTTPStatus.BAD_REQUEST


class InvalidFeedback(LeafWatchError):
    """Feedback whose fields contradict each other."""

    code = "invalid_feedback"
    status_code = HTTPStatus.UNPROCESSABLE_ENTITY


class ModelNotReady(LeafWatchError):
    """The model could not be loaded, so predictions cannot be served."""

    code = "model_not_ready"
    status_code = HTTPStatus.SERVICE_UNAVAILABLE


class Unauthorized(LeafWatchError):
    """A request without the credentials the endpoint requires."""

    code = "unauthorized"
    status_code = HTTPStatus.UNAUTHORIZED
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}


class Forbidden(LeafWatchError):
    """An endpoint that is switched off, or credentials that do not grant it."""

    code = "forbidden"
    status_code = HTTPStatus.FORBIDDEN


class ApiKeyNotFound(LeafWatchError):
    """No API key has the given id."""

    code = "api_key_not_found"
    status_code = HTTPStatus.NOT_FOUND


class RateLimited(LeafWatchError):
    """A client over its request rate; it may try again in `retry_after` seconds."""

    code = "rate_limited"
    status_code = HTTPStatus.TOO_MANY_REQUESTS

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def response_headers(self) -> dict[str, str]:
        """Retry-After, in whole seconds."""
        return {"Retry-After": str(self.retry_after)}


class StorageUnavailable(LeafWatchError):
    """Neither the database nor the local spool could take a record."""

    code = "database_unavailable"
    status_code = HTTPStatus.SERVICE_UNAVAILABLE


class ImageStoreUnavailable(LeafWatchError):
    """The image store (a local directory or an S3 bucket) could not take or give an image.

    `detail` is what a client is told; `reason`, for logs and the command line, names the store
    and what it said.
    """

    code = "image_store_unavailable"
    status_code = HTTPStatus.SERVICE_UNAVAILABLE

    def __init__(self, detail: str, *, reason: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason or detail


class DriftUnavailable(LeafWatchError):
    """Drift detection cannot run: no reference for the served version, or no report yet."""

    code = "drift_unavailable"
    status_code = HTTPStatus.CONFLICT


class NoDriftReport(LeafWatchError):
    """No drift run has been stored yet."""

    code = "no_drift_report"
    status_code = HTTPStatus.NOT_FOUND


class ModelRegistryError(LeafWatchError):
    """A registry operation that cannot be done (unknown version, nothing to roll back to)."""

    code = "model_registry_error"
    status_code = HTTPStatus.CONFLICT


class InvalidPeriod(LeafWatchError):
    """A `from`/`to` pair that does not make a period analytics can answer for."""

    code = "invalid_period"
    status_code = HTTPStatus.UNPROCESSABLE_ENTITY


class UnknownRoute(LeafWatchError):
    """A fault asked for a route the app does not have."""

    code = "unknown_route"
    status_code = HTTPStatus.UNPROCESSABLE_ENTITY


class FaultInjected(LeafWatchError):
    """A server error injected on purpose through the admin fault switch."""

    code = "injected_fault"
    status_code = HTTPStatus.INTERNAL_SERVER_ERROR


INVALID_IMAGE_CODES = tuple(InvalidImage.STATUS_BY_CODE)
