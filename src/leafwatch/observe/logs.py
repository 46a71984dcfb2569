"""Structured logs: JSON lines (or a readable console) with request, trace and model context."""

import functools
import logging
import logging.handlers
import re
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

from leafwatch.config import Settings


class RequestContext:
    """The request being answered: its HTTP scope (for the route template) and its id."""

    __slots__ = ("request_id", "scope")

    def __init__(self, scope: MutableMapping[str, Any], request_id: str) -> None:
        self.scope = scope
        self.request_id = request_id


# Set once per request by the middleware: one context variable, so every line can name the
# request, its method and its route without structlog's clear-and-bind on every request.
current_request: ContextVar[RequestContext | None] = ContextVar("leafwatch_request", default=None)

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"authorization|cookie|token|api[-_]?key|secret|password|passwd|credential", re.I
)
_SECRET_IN_TEXT = re.compile(
    r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"
    r"|((?:api[-_]?key|token|access_token|password|secret)=)[^&\s\"']+"
)
# LeafWatch's handlers carry this attribute, so a new configuration replaces them (tests build
# many apps in one process) without touching handlers others installed (pytest's capture).
_OURS = "_leafwatch_handler"


def add_request_context(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """Add the request id, method and route template, and the current trace and span ids."""
    request = current_request.get()
    if request is not None:
        event.setdefault("request_id", request.request_id)
        event.setdefault("method", request.scope["method"])
        path = getattr(request.scope.get("route"), "path", None)
        if path is not None:
            event.setdefault("route", path)
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


def redact_secrets(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """Replace the values of secret-looking keys, and credentials inside text, with a marker."""
    for key, value in event.items():
        event[key] = _redact(key, value)
    return event


@functools.lru_cache(maxsize=1024)
def _secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None


def _redact(key: str, value: Any) -> Any:
    if _secret_key(key):
        return REDACTED
    if isinstance(value, str):
        # Both patterns need a space or an "=": most values (routes, ids) have neither.
        if " " in value or "=" in value:
            return _SECRET_IN_TEXT.sub(_keep_name, value)
        return value
    if isinstance(value, dict):
        return {k: _redact(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        # Header lists: [(name, value), ...]
        return [
            (item[0], REDACTED)
            if isinstance(item, tuple) and len(item) == 2 and _secret_key(str(item[0]))
            else _redact("", item)
            for item in value
        ]
    return value


def _keep_name(match: re.Match[str]) -> str:
    prefix = match.group(1) or match.group(2)
    return f"{prefix} {REDACTED}" if match.group(1) else f"{prefix}{REDACTED}"


def shared_processors() -> list[Processor]:
    """What every line goes through, from structlog or from the standard library."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        add_request_context,
    ]


def configure_logging(settings: Settings) -> None:
    """Route structlog and the standard library to stdout and the log file, once per process."""
    shared = shared_processors()
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    json_lines = _FormatOnce(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Frames without their local variables: those hold requests, headers and keys.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            redact_secrets,  # last before rendering: exception messages can carry secrets too
            structlog.processors.JSONRenderer(),
        ],
    )
    console = settings.log_format == "console" or (
        settings.log_format == "auto" and sys.stdout.isatty()
    )
    stdout = logging.StreamHandler(sys.stdout)
    stdout.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_secrets,
                structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
            ],
        )
        if console
        else json_lines
    )
    handlers: list[logging.Handler] = [stdout]
    if settings.log_file:
        handlers.append(_file_handler(settings))
        handlers[-1].setFormatter(json_lines)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        setattr(handler, _OURS, True)
        root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # No line shows the caller's file and line, thread or process name, so they are not looked up
    # for every record: a fifth of a line's cost (the logging HOWTO's "Optimization" section).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    for name in ("uvicorn", "uvicorn.error"):
        # uvicorn's own handlers would print its lines a second time, in its own format.
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # LeafWatch writes the access line itself, inside the request's span, with its context.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("uvicorn.error").addFilter(_drop_already_logged)


def _file_handler(settings: Settings) -> logging.Handler:
    path = Path(settings.log_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    if settings.workers > 1:
        # Several processes cannot share a size-rotated file without losing lines when two rotate
        # at once: each appends whole lines, and logrotate rotates (the handler reopens).
        return logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    return _SizeRotatingFileHandler(
        path,
        maxBytes=settings.log_file_max_bytes,
        backupCount=settings.log_file_backups,
        encoding="utf-8",
    )


class _FormatOnce(structlog.stdlib.ProcessorFormatter):
    """Render a record once for every handler that shares this formatter (stdout and file)."""

    def format(self, record: logging.LogRecord) -> str:
        cache: dict[int, str] = record.__dict__.setdefault("_leafwatch_lines", {})
        line = cache.get(id(self))
        if line is None:
            line = cache[id(self)] = super().format(record)
        return line


class _SizeRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Size rotation, checked from the open file's position."""

    # The standard check formats each line a second time and asks the file system twice whether
    # the log is a regular file: a third of a request's logging cost.
    def shouldRollover(self, record: logging.LogRecord) -> bool:
        if self.maxBytes <= 0:
            return False
        if self.stream is None:
            self.stream = self._open()
        line = self.format(record) + self.terminator
        return self.stream.tell() + len(line.encode("utf-8")) > self.maxBytes


LOGGED_MARK = "_leafwatch_logged"


def mark_logged(exc: BaseException) -> None:
    """Note that LeafWatch logged this exception where it handled it."""
    setattr(exc, LOGGED_MARK, True)


def _drop_already_logged(record: logging.LogRecord) -> bool:
    # Starlette re-raises a handled exception so the server can log it; LeafWatch already has,
    # inside the request with its context, so the server's copy is dropped.
    exc = record.exc_info[1] if record.exc_info else None
    return not (exc is not None and getattr(exc, LOGGED_MARK, False))
