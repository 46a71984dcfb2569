"""The fault switch: latency and server errors injected on purpose, per route, for tests and demos.

Faults live in the database so every worker and replica applies the same ones; each process
reads them at most once a second. Every injected fault is logged and counted apart from real
failures (`api_injected_faults_total`), so it can never be mistaken for one.
"""

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from leafwatch.errors import FaultInjected
from leafwatch.observe.metrics import Metrics
from leafwatch.storage import queries
from leafwatch.storage.tables import InjectedFault, utcnow

log = structlog.stdlib.get_logger(__name__)

REFRESH_S = 1.0


@dataclass(frozen=True)
class Fault:
    """What one route suffers: added latency and a share of answers turned into errors."""

    route: str
    latency_ms: int
    error_ratio: float
    set_at: datetime
    expires_at: datetime | None


class FaultSwitch:
    """Set, list and clear faults, and apply them to requests."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        metrics: Metrics,
        *,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.sessions = sessions
        self.metrics = metrics
        self.draw = draw
        self._faults: dict[str, Fault] = {}
        self._read_at = float("-inf")
        self._kept_read_at = float("-inf")

    def set(
        self, route: str, *, latency_ms: int, error_ratio: float, duration_s: float | None
    ) -> Fault:
        """Inject a fault on a route (replacing its previous one), optionally for a while."""
        expires_at = None if duration_s is None else utcnow() + timedelta(seconds=duration_s)
        with self.sessions() as session:
            row = queries.set_fault(
                session,
                route=route,
                latency_ms=latency_ms,
                error_ratio=error_ratio,
                expires_at=expires_at,
            )
            fault = _fault(row)
        log.warning(
            "fault set",
            route=route,
            latency_ms=latency_ms,
            error_ratio=error_ratio,
            expires_at=expires_at.isoformat() if expires_at else None,
        )
        self._read_at = float("-inf")  # this worker applies it from the next request
        return fault

    def clear(self, route: str | None = None) -> int:
        """Remove the faults of one route, or all of them; returns how many were removed."""
        with self.sessions() as session:
            removed = queries.clear_faults(session, route=route)
        log.warning("faults cleared", route=route or "*", removed=removed)
        self._read_at = float("-inf")
        return removed

    def active(self) -> list[Fault]:
        """The faults in force now, read from the database."""
        with self.sessions() as session:
            return [_fault(row) for row in queries.active_faults(session, now=utcnow())]

    async def apply(self, route: str) -> None:
        """Delay this request and maybe fail it, as the route's fault says."""
        fault = (await self._current()).get(route)
        if fault is None:
            return
        if fault.expires_at is not None and fault.expires_at <= utcnow():
            return
        if fault.latency_ms > 0:
            self._count(route, "latency")
            await asyncio.sleep(fault.latency_ms / 1000.0)
        if fault.error_ratio > 0 and self.draw() < fault.error_ratio:
            self._count(route, "error")
            raise FaultInjected(f"fault injected on {route} through /api/v1/admin/faults")

    async def _current(self) -> dict[str, Fault]:
        if time.monotonic() - self._read_at >= REFRESH_S:
            started = self._read_at = time.monotonic()
            try:
                faults = await run_in_threadpool(self.active)
            except SQLAlchemyError:
                # Keep the last known faults; expiry is still checked against the clock.
                log.warning("injected faults not refreshed: the database could not be read")
            else:
                # Reads overlap (a change forces a new one at once): an older read that ends last
                # must not replace what a newer one found.
                if started >= self._kept_read_at:
                    self._kept_read_at = started
                    self._faults = {fault.route: fault for fault in faults}
        return self._faults

    def _count(self, route: str, kind: str) -> None:
        self.metrics.injected_faults.labels(endpoint=route, kind=kind).inc()
        log.warning("fault injected", route=route, kind=kind)


def _fault(row: InjectedFault) -> Fault:
    return Fault(
        route=row.route,
        latency_ms=row.latency_ms,
        error_ratio=row.error_ratio,
        set_at=row.set_at,
        expires_at=row.expires_at,
    )
