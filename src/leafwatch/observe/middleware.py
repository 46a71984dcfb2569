"""The outermost ASGI middleware: per HTTP exchange, a request id, one count, one latency sample
and one access-log line, all with the same route, status and duration."""

import random
import re
import time
from collections.abc import Callable
from typing import Any

import structlog
from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leafwatch.observe.logs import RequestContext, current_request
from leafwatch.observe.metrics import Metrics

# Labels stay bounded whatever clients send: unknown methods and unmatched paths share one value.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"
UNMATCHED = "unmatched"
# nginx's code for "client closed request": the client left before the answer was sent.
CLIENT_CLOSED = 499
MIN_WAIT_S = 0.001

REQUEST_ID_HEADER = b"x-request-id"
# A client's request id is kept when it is short and plain; anything else gets a fresh one.
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")

ExemplarSource = Callable[[], dict[str, str] | None]
access_log = structlog.stdlib.get_logger("leafwatch.access")


def no_exemplar() -> None:
    """No exemplars: tracing is off, or its trace ids lead nowhere (no exporter)."""
    return


def trace_exemplar() -> dict[str, str] | None:
    """The current sampled trace id as an exemplar, or None outside a recorded trace."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None  # an unsampled trace id leads nowhere in the trace store
    return {"trace_id": format(context.trace_id, "032x")}


class ObserveMiddleware:
    """Give each HTTP request an id, count it, time it to its last byte and log it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        log_requests: bool = True,
        exemplar: ExemplarSource = trace_exemplar,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.log_requests = log_requests
        self.exemplar = exemplar

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope, receive, send, self)
        # Each request runs in its own task, with its own copy of this context variable.
        current_request.set(RequestContext(scope, exchange.request_id))
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except BaseException:
            exchange.finish(CLIENT_CLOSED if exchange.disconnected else 500)
            raise
        exchange.finish(CLIENT_CLOSED if exchange.disconnected else exchange.status or 500)


class _Exchange:
    """One request's bookkeeping: its status, when it ended, whether the client left early."""

    __slots__ = (
        "_receive",
        "_send",
        "disconnected",
        "exemplar",
        "finished",
        "options",
        "request_id",
        "scope",
        "started",
        "status",
    )

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, options: "ObserveMiddleware"
    ) -> None:
        self.started = time.perf_counter()
        self.scope = scope
        self._receive = receive
        self._send = send
        self.options = options
        self.request_id = _request_id(scope)
        self.status: int | None = None
        self.exemplar: dict[str, str] | None = None
        self.disconnected = False
        self.finished = False
        options.metrics.request_started()

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect":  # the client left during the upload
            self.disconnected = True
        return message

    def client_gone(self) -> bool:
        """Whether the client has hung up, asked without waiting.

        A server answers receive() at once with a disconnect when the client has left, and
        otherwise waits. The coroutine is driven one step by hand: if it finishes, that is the
        answer; if it would wait, it is closed. (An anyio cancel scope, as Starlette's
        is_disconnected uses, costs some 35 microseconds a request; this costs about one.)
        A bodiless request may still have its empty body queued, hence a second look.
        """
        for _ in range(2):
            steps = self._receive().__await__()
            try:
                steps.send(None)
            except StopIteration as done:
                message: Message = done.value
            else:
                steps.close()
                return False  # it would have waited: the client is still there
            if message["type"] == "http.disconnect":
                return True
            if message.get("more_body", False):
                return False  # body the app left unread: the client is still sending
        return False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.exemplar = self.options.exemplar()
            # Asked once, as the answer starts: a client gone by now left before its answer. An
            # answer within a millisecond was not waited for: there is nothing to give up on.
            waited = time.perf_counter() - self.started >= MIN_WAIT_S
            if waited and not self.disconnected and self.client_gone():
                self.disconnected = True
            message = {
                **message,
                "headers": [
                    *message.get("headers", ()),
                    (REQUEST_ID_HEADER, self.request_id.encode("latin-1")),
                ],
            }
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            try:
                await self._send(message)
            except OSError:  # ASGI servers may raise it when the client has gone
                self.disconnected = True
                raise
            # The answer is out: background tasks that run after it are not request latency.
            self.finish(CLIENT_CLOSED if self.disconnected else self.status or 500)
            return
        await self._send(message)

    def finish(self, status: int) -> None:
        """Record the request once, with the status the client saw (499 if it left)."""
        if self.finished:
            return
        self.finished = True
        elapsed = time.perf_counter() - self.started
        method = self.scope["method"]
        method = method if method in KNOWN_METHODS else OTHER_METHOD
        endpoint = _route_template(self.scope)
        metrics = self.options.metrics
        metrics.record_request(
            method=method, endpoint=endpoint, status=status, seconds=elapsed, exemplar=self.exemplar
        )
        metrics.request_ended()
        if self.options.log_requests:
            access_log.info(
                "request",
                route=endpoint,
                path=self.scope["path"],
                status=status,
                duration_ms=round(elapsed * 1000.0, 3),
            )


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER and _SANE_REQUEST_ID.fullmatch(value):
            return str(value.decode("ascii"))
    # An id for finding a request's lines, not a secret: no need for the system's entropy.
    return format(random.getrandbits(128), "032x")


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED
