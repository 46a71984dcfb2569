"""Limits on every HTTP request: the body's size, counted as it arrives, and the time to answer.

The body limit is checked against Content-Length when the app first reads the body, and then
counted chunk by chunk (chunked bodies have no Content-Length), so a request over it is answered
413 before the multipart parser spools the rest to disk; an upload form over it is a file too large
(and counted as a rejected upload). The time limit answers 408 while the body is still arriving
(a slow client), else 503. A request past either limit is answered here, with the usual JSON
error, and whatever the app sends afterwards is dropped.

Work already running in a thread cannot be stopped: it runs to its end after the 503 (a
prediction is still stored), and holds its thread until then.
"""

import asyncio

import structlog
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leafwatch.api.errors import error_body
from leafwatch.errors import (
    BodyTimeout,
    InvalidImage,
    LeafWatchError,
    RequestTimeout,
    RequestTooLarge,
)
from leafwatch.observe.metrics import Metrics

log = structlog.stdlib.get_logger(__name__)
_DISCONNECT: Message = {"type": "http.disconnect"}


class LimitsMiddleware:
    """Answer 413 past `max_body_bytes`, and 408 or 503 past `timeout_s` (0: no time limit)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        timeout_s: float,
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        guard = _Guard(scope, receive, send, self)
        timer = None
        if self.timeout_s > 0:
            timer = asyncio.get_running_loop().call_later(self.timeout_s, guard.time_up)
        try:
            await self.app(scope, guard.receive, guard.send)
        except Exception:
            if guard.answered is None:
                raise
            # The app failed after a limit had answered for it (its body was cut off): expected.
            log.debug("request failed after a limit answered it", exc_info=True)
        finally:
            if timer is not None:
                timer.cancel()
            if guard.answering is not None:
                await guard.answering


class _Guard:
    """One request's receive and send, watched against the limits."""

    __slots__ = (
        "_receive",
        "_send",
        "answered",
        "answering",
        "body_done",
        "declared",
        "limits",
        "received",
        "scope",
        "started",
        "waiting_for_body",
    )

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, limits: LimitsMiddleware
    ) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.limits = limits
        self.declared = _content_length(scope)
        self.received = 0
        self.body_done = False
        self.waiting_for_body = False
        self.started = False  # the app's answer has started: the limits no longer apply
        self.answered: LeafWatchError | None = None  # a limit answered instead of the app
        self.answering: asyncio.Task[None] | None = None

    async def receive(self) -> Message:
        if self.answered is not None:
            return _DISCONNECT  # the answer is out: the app is to stop reading
        if self.declared is not None and self.declared > self.limits.max_body_bytes:
            await self.refuse(f"the request declares a body of {self.declared} bytes")
            return _DISCONNECT
        self.waiting_for_body = not self.body_done
        try:
            message = await self._receive()
        finally:
            self.waiting_for_body = False
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.body_done = not message.get("more_body", False)
            if self.received > self.limits.max_body_bytes and self.answered is None:
                await self.refuse(f"the request body passed {self.received} bytes")
                return _DISCONNECT
        return message

    async def refuse(self, what: str) -> None:
        """Answer 413, unless the app's own answer has started."""
        if self.started:
            return
        detail = f"{what}; the limit is {self.limits.max_body_bytes}"
        error: LeafWatchError = RequestTooLarge(detail)
        if _is_upload(self.scope):
            error = InvalidImage("file_too_large", detail)
            if self.limits.metrics is not None:
                self.limits.metrics.rejected_uploads.labels(reason=error.code).inc()
        self.answered = error
        log.info("request body over the limit", path=self.scope["path"], detail=error.detail)
        # The rest of the body is not wanted: closing beats reading gigabytes to throw them away.
        await _answer(self.scope, self._send, error, close=True)

    async def send(self, message: Message) -> None:
        if self.answered is not None:
            return  # a limit has answered instead
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    def time_up(self) -> None:
        """The request's time has run out: answer for it now if its answer has not started."""
        if self.started or self.answered is not None:
            return
        slow_client = self.waiting_for_body
        if slow_client:
            error: LeafWatchError = BodyTimeout(
                f"the request body was still arriving ({self.received} bytes so far) when the "
                "time limit ran out"
            )
        else:
            error = RequestTimeout("the answer took longer than the time limit; try again")
        self.answered = error
        log.warning("request timed out", path=self.scope["path"], error=error.code)
        # A body cut off halfway leaves the connection unusable for another request.
        answer = _answer(self.scope, self._send, error, close=slow_client)
        self.answering = asyncio.ensure_future(answer)


async def _answer(scope: Scope, send: Send, error: LeafWatchError, *, close: bool) -> None:
    headers = {**error.response_headers(), **({"Connection": "close"} if close else {})}
    response = JSONResponse(
        error_body(error.code, error.detail), status_code=int(error.status_code), headers=headers
    )
    await response(scope, _no_body, send)


async def _no_body() -> Message:
    return _DISCONNECT


def _is_upload(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bool(value.lower().startswith(b"multipart/form-data"))
    return False


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before the app sees it
    return None
