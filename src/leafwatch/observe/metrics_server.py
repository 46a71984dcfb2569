"""/metrics on a port of its own (LEAFWATCH_METRICS_PORT), where it must not be public.

Only one process can listen on the port. Every worker tries: the first to bind it serves it, and
the others try again every `RETRY_S` seconds, so when the holder stops, or dies and is replaced,
another worker takes the port over. Whichever worker holds it, a scrape shows the same figures:
with several workers it adds up every worker's files (prometheus_client's multiprocess mode).
"""

import asyncio
import errno
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import structlog

from leafwatch.observe.exposition import Exposition

log = structlog.stdlib.get_logger(__name__)

RETRY_S = 2.0
PATH = "/metrics"


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a scrape in progress never holds up the process's exit


class MetricsServer:
    """An HTTP server that answers GET /metrics with an exposition, once it holds its port."""

    def __init__(
        self,
        exposition: Exposition,
        *,
        host: str,
        port: int,
        authorized: Callable[[str | None], bool],
    ) -> None:
        self.exposition = exposition
        self.host = host
        self.port = port
        self.authorized = authorized
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def serving(self) -> bool:
        """Whether this process holds the port."""
        return self._server is not None

    def try_bind(self) -> bool:
        """Listen on the port and serve; False when another process listens on it already."""
        server_class = type(
            "_MetricsServer",
            (_Server,),
            {"address_family": socket.AF_INET6 if ":" in self.host else socket.AF_INET},
        )
        try:
            server = server_class((self.host, self.port), self._handler())
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="leafwatch-metrics", daemon=True
        )
        self._thread.start()
        return True

    def close(self) -> None:
        """Stop serving and free the port (nothing to do when it was never held)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        exposition, authorized = self.exposition, self.authorized

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != PATH:
                    self._answer(404, b"only /metrics is served on this port\n", "text/plain")
                elif not authorized(self.headers.get("Authorization")):
                    self._answer(
                        401,
                        b"/metrics needs the header 'Authorization: Bearer <token>'\n",
                        "text/plain",
                        {"WWW-Authenticate": "Bearer"},
                    )
                else:
                    try:
                        body, content_type = exposition.render(self.headers.get("Accept", ""))
                    except Exception:  # a failed scrape is logged and answered, never silent
                        log.exception("metrics could not be rendered")
                        self._answer(500, b"metrics could not be rendered\n", "text/plain")
                    else:
                        self._answer(200, body, content_type)

            def _answer(
                self,
                status: int,
                body: bytes,
                content_type: str,
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes are not worth a log line each; failures are logged above

        return Handler


async def hold(server: MetricsServer, *, retry_s: float = RETRY_S) -> None:
    """Serve the metrics port, or wait until it is free and then serve it, until cancelled."""
    try:
        if not server.serving:
            log.info(
                "metrics port held by another process; standing by to take it over",
                metrics_port=server.port,
            )
        while not server.serving:
            await asyncio.sleep(retry_s)
            try:
                server.try_bind()
            except OSError:
                log.exception("metrics port could not be bound", metrics_port=server.port)
        log.info("serving /metrics on its own port", metrics_port=server.port)
        await asyncio.Event().wait()  # until the app stops and cancels this task
    finally:
        await asyncio.to_thread(server.close)
