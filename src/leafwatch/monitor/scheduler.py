"""Periodic jobs inside the service, run once per period across every worker and replica.

Each process wakes at the start of every period and tries to claim it: the claim is a row in
`job_runs` keyed by (job, period start), so the database lets exactly one process insert it.
"""

import asyncio
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from leafwatch.storage.tables import JobRun, utcnow

log = structlog.stdlib.get_logger(__name__)
OWNER = f"{socket.gethostname()}:{os.getpid()}"


def period_start(now: datetime, interval: timedelta) -> datetime:
    """The start of the period `now` falls in, periods aligned to the Unix epoch."""
    seconds = interval.total_seconds()
    return datetime.fromtimestamp(now.timestamp() // seconds * seconds, UTC)


def claim(session: Session, *, job: str, period: datetime, owner: str = OWNER) -> bool:
    """Claim a job's period; True for the one caller that got it."""
    session.add(JobRun(job=job, period_start=period, owner=owner, started_at=utcnow()))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return True


def finish(session: Session, *, job: str, period: datetime, status: str) -> None:
    """Record how a claimed period ended."""
    run = session.get(JobRun, (job, period))
    if run is not None:
        run.finished_at = utcnow()
        run.status = status
        session.commit()


def run_claimed(
    sessions: sessionmaker[Session],
    *,
    job: str,
    period: datetime,
    work: Callable[[], object],
    ended: Callable[[str], object] | None = None,
) -> bool:
    """Run `work` if this process claims the period; False when another process has it.

    `ended` is called with the run's status ("done" or "failed") once `work` returns or raises.
    """
    with sessions() as session:
        if not claim(session, job=job, period=period):
            return False
    status = "failed"
    try:
        work()
        status = "done"
    finally:
        if ended is not None:
            ended(status)
        with sessions() as session:
            finish(session, job=job, period=period, status=status)
    return True


async def every(
    interval: timedelta,
    *,
    job: str,
    sessions: sessionmaker[Session],
    work: Callable[[], object],
    ended: Callable[[str], object] | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """Forever: at each period's start, run `work` once across all processes (cancel to stop)."""
    while True:
        now = clock()
        period = period_start(now, interval)
        try:
            ran = await run_in_threadpool(
                run_claimed, sessions, job=job, period=period, work=work, ended=ended
            )
            if ran:
                log.info("scheduled job ran", job=job, period=period.isoformat())
        except SQLAlchemyError:
            log.warning("scheduled job skipped: the database is unavailable", job=job)
        except Exception:  # a failing run must not stop the schedule
            log.exception("scheduled job failed", job=job, period=period.isoformat())
        next_period = period + interval
        await asyncio.sleep(max((next_period - clock()).total_seconds(), 0.0) + 0.05)
