"""The outermost ASGI middleware: one count and one latency sample per HTTP exchange."""

import asyncio
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leafwatch.observe.metrics import Metrics

# Labels stay bounded whatever clients send: unknown methods and unmatched paths share one value.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"
UNMATCHED = "unmatched"
# nginx's code for "client closed request": the client left before the answer was sent.
CLIENT_CLOSED = 499

ExemplarSource = Callable[[], dict[str, str] | None]


def trace_exemplar() -> dict[str, str] | None:
    """The current sampled trace id as an exemplar, or None outside a recorded trace."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None  # an unsampled trace id leads nowhere in the trace store
    return {"trace_id": format(context.trace_id, "032x")}


class MetricsMiddleware:
    """Count each HTTP request and time it to its last byte, labelled by route template."""

    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, exemplar: ExemplarSource = trace_exemplar
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.exemplar = exemplar

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope, receive, send, self.metrics, self.exemplar)
        if _has_no_body(scope):
            # Read the empty body now, so a client leaving during a slow GET is noticed too.
            await exchange.read_ahead()
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except BaseException:
            exchange.finish(CLIENT_CLOSED if exchange.disconnected else 500)
            raise
        finally:
            exchange.close()
        exchange.finish(CLIENT_CLOSED if exchange.disconnected else exchange.status or 500)


class _Exchange:
    """One request's bookkeeping: its status, when it ended, whether the client left early."""

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, metrics: Metrics, exemplar: ExemplarSource
    ) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.metrics = metrics
        self.exemplar_source = exemplar
        self.started = time.perf_counter()
        self.status: int | None = None
        self.exemplar: dict[str, str] | None = None
        self.disconnected = False
        self.answered = False
        self.finished = False
        # Once the body is read, a single pending receive() tells when the client leaves; the
        # app's own later receive() calls share it, so the server sees one reader.
        self.listener: asyncio.Future[Message] | None = None
        self.buffered: Message | None = None
        metrics.active_requests.inc()

    async def read_ahead(self) -> None:
        self.buffered = await self.receive()

    async def receive(self) -> Message:
        if self.buffered is not None:
            message, self.buffered = self.buffered, None
            return message
        if self.listener is not None:
            return await asyncio.shield(self.listener)
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.disconnected = True
        elif not message.get("more_body", False):
            self.listener = asyncio.ensure_future(self._listen())
        return message

    async def _listen(self) -> Message:
        message = await self._receive()
        # Servers also answer a waiting receive() with a disconnect once the response is complete.
        if message["type"] == "http.disconnect" and not self.answered:
            self.disconnected = True
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.exemplar = self.exemplar_source()
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.answered = True
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
        metrics = self.metrics
        metrics.requests.labels(method=method, endpoint=endpoint, status=str(status)).inc()
        metrics.request_latency.labels(method=method, endpoint=endpoint).observe(
            elapsed, exemplar=self.exemplar
        )
        metrics.active_requests.dec()

    def close(self) -> None:
        if self.listener is not None and not self.listener.done():
            self.listener.cancel()


def _has_no_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return False
    return True


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED
