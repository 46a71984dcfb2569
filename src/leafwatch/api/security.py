"""Who gets in to the client routes (predict, feedback): API keys and a per-client rate limit.

A process keeps the active keys' hashes in memory and reloads them from the database at most
every `api_key_cache_seconds` (so a revocation takes effect within that time), and at once, at
most once a second, when a key it does not know is presented (so a new key works at once).
When the database cannot be read, the last copy keeps serving. Keys never reach the logs, the
error answers or the metrics: only the key's name is logged, and only its hash is compared.

The rate limit is a token bucket per client (the key's name, else the caller's address) in each
process's memory: with N workers, a client gets up to N times the configured rate.
"""

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import structlog
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from leafwatch.config import Settings
from leafwatch.errors import RateLimited, Unauthorized
from leafwatch.observe.metrics import Metrics
from leafwatch.schemas import ErrorOut
from leafwatch.storage import keys
from leafwatch.storage.tables import utcnow

log = structlog.stdlib.get_logger(__name__)

API_KEY_HEADER = "X-API-Key"
# An unknown key reloads the keys at most this often: a new key works at once, and a stream of
# wrong keys costs the database one read a second, not one a request.
MISS_RELOAD_S = 1.0
# Clients remembered per process; beyond it the least recently seen start again with a full
# bucket. Bounds memory whatever the number of addresses a caller uses.
MAX_CLIENTS = 10_000

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Client:
    """Who a request counts as: a key's name, or the caller's address when no key was given."""

    name: str
    key_id: int | None = None

    @property
    def bucket(self) -> str:
        """The rate-limit bucket: keys and addresses never share one."""
        return f"key:{self.name}" if self.key_id is not None else f"ip:{self.name}"


class KeyRing:
    """The active API keys of one process, by hash, reloaded from the database when stale."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        *,
        ttl_s: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.ttl_s = ttl_s
        self.clock = clock
        self._keys: dict[str, keys.ActiveKey] | None = None
        self._loaded_at = -math.inf
        self._used: dict[int, datetime] = {}
        self._lock = threading.Lock()

    def cached(self, key: str) -> tuple[bool, keys.ActiveKey | None]:
        """Whether the in-memory copy can answer for `key` without a reload, and its answer."""
        if self._keys is None:
            return False, None
        found = self._keys.get(keys.hash_key(key))
        age = self.clock() - self._loaded_at
        if age >= self.ttl_s or (found is None and age >= MISS_RELOAD_S):
            return False, found
        return True, found

    def find(self, key: str) -> keys.ActiveKey | None:
        """The active key matching `key`, reloading first when the copy cannot answer."""
        fresh, found = self.cached(key)
        if not fresh:
            self.reload()
            found = self._keys.get(keys.hash_key(key)) if self._keys is not None else None
        return found

    def note_use(self, key_id: int) -> None:
        """Remember that a key was used; the next reload writes it (`last_used_at`)."""
        self._used[key_id] = utcnow()

    def reload(self) -> None:
        """Write when keys were last used, then read the active keys; keep the copy on failure."""
        # One reload at a time; the others answer from the copy they have, unless there is none.
        if not self._lock.acquire(blocking=self._keys is None):
            return
        try:
            used, self._used = self._used, {}
            try:
                with self.sessions() as session:
                    if used:
                        keys.record_use(session, used=used)
                    loaded = keys.active_keys(session)
            except SQLAlchemyError:
                self._loaded_at = self.clock()  # try again after a while, not on every request
                if self._keys is None:
                    raise  # nothing to answer from: the request gets 503 database_unavailable
                log.warning("API keys not reloaded: the database could not be read", exc_info=True)
                return
            self._keys, self._loaded_at = loaded, self.clock()
        finally:
            self._lock.release()


class RateLimiter:
    """A token bucket per client: `burst` requests at once, refilled at `per_minute` a minute."""

    def __init__(
        self,
        *,
        per_minute: float,
        burst: int,
        max_clients: int = MAX_CLIENTS,
        clock: Clock = time.monotonic,
    ) -> None:
        self.rate_per_s = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, bucket: str) -> float:
        """Take one request from the bucket: 0 when allowed, else the seconds until it would be."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.pop(bucket, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate_per_s)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate_per_s
            self._buckets[bucket] = (tokens - 1.0 if wait == 0.0 else tokens, now)
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait


class Access:
    """The gate in front of the client routes, as the settings configure it."""

    def __init__(
        self,
        settings: Settings,
        sessions: Callable[[], Session],
        metrics: Metrics,
        clock: Clock = time.monotonic,
    ) -> None:
        self.required = settings.requires_api_key()
        self.ring = KeyRing(sessions, ttl_s=settings.api_key_cache_seconds, clock=clock)
        per_minute = settings.resolved_rate_limit_per_minute()
        self.limiter = (
            RateLimiter(per_minute=per_minute, burst=settings.rate_limit_burst, clock=clock)
            if per_minute > 0
            else None
        )
        self.metrics = metrics

    async def admit(self, key: str | None, address: str) -> Client:
        """The client a request counts as, let through, or refused with 429 or 401."""
        found = await self._find(key) if key else None
        # Without a valid key, a request counts against its address: a stream of made-up keys
        # is limited like any other stream of requests.
        client = Client(found.name, key_id=found.id) if found else Client(address)
        self._limit(client)
        if key and found is None:
            # The same words for a wrong, unknown or revoked key: nothing to learn by trying.
            raise Unauthorized(f"the {API_KEY_HEADER} header does not hold a valid API key")
        if found is None and self.required:
            raise Unauthorized(f"this endpoint needs an API key in the {API_KEY_HEADER} header")
        if found is not None:
            self.ring.note_use(found.id)
        return client

    async def _find(self, key: str) -> keys.ActiveKey | None:
        fresh, found = self.ring.cached(key)
        if fresh:
            return found
        return await run_in_threadpool(self.ring.find, key)

    def _limit(self, client: Client) -> None:
        if self.limiter is None:
            return
        wait = self.limiter.take(client.bucket)
        if wait > 0:
            self.metrics.rate_limited.inc()
            raise RateLimited(
                "too many requests from this client; try again after Retry-After seconds",
                retry_after=max(1, math.ceil(wait)),
            )


api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="The client's API key (`leafwatch keys create NAME`); required when "
    "LEAFWATCH_REQUIRE_API_KEY is on.",
)


async def admit_client(
    request: Request, key: Annotated[str | None, Security(api_key_header)]
) -> Client:
    """Identify the caller by API key (or address), check the key and the rate limit."""
    access: Access = request.app.state.access
    address = request.client.host if request.client is not None else "unknown"
    client = await access.admit(key, address)
    if client.key_id is not None:
        structlog.contextvars.bind_contextvars(client=client.name)
    return client


ClientDep = Annotated[Client, Depends(admit_client)]
CLIENT_DEPENDENCIES = [Depends(admit_client)]
CLIENT_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "Missing, unknown or revoked API key"},
    429: {
        "model": ErrorOut,
        "description": "Rate limit reached",
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "integer"},
            }
        },
    },
}
