"""The scheduler's claim: exactly one run per period, whoever asks and however many at once."""

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from leafwatch.monitor.scheduler import every, period_start, run_claimed
from leafwatch.storage import db
from leafwatch.storage.tables import JobRun


@pytest.fixture
def engine(database_url: str) -> Engine:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    return engine


def test_periods_are_aligned_to_the_interval() -> None:
    hour = timedelta(hours=1)
    now = datetime(2026, 11, 29, 11, 59, 59, tzinfo=UTC)
    assert period_start(now, hour) == datetime(2026, 11, 29, 11, tzinfo=UTC)
    assert period_start(now + timedelta(seconds=1), hour) == datetime(2026, 11, 29, 12, tzinfo=UTC)


def test_many_processes_at_once_run_a_period_exactly_once(engine: Engine) -> None:
    sessions = db.make_sessionmaker(engine)
    period = datetime(2026, 11, 29, 11, tzinfo=UTC)
    runs: list[int] = []
    start = threading.Barrier(8)

    def contender(number: int) -> None:
        start.wait()
        run_claimed(sessions, job="drift", period=period, work=lambda: runs.append(number))

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(runs) == 1
    # The next period, and another job in the same period, each run once more.
    assert run_claimed(sessions, job="drift", period=period + timedelta(hours=1), work=list)
    assert run_claimed(sessions, job="report", period=period, work=list)
    assert not run_claimed(sessions, job="drift", period=period, work=list)
    with sessions() as session:
        claims = session.scalars(select(JobRun).order_by(JobRun.job, JobRun.period_start)).all()
    assert [(c.job, c.status) for c in claims] == [("drift", "done")] * 2 + [("report", "done")]
    engine.dispose()


def test_a_failed_run_is_recorded_and_the_schedule_goes_on(engine: Engine) -> None:
    sessions = db.make_sessionmaker(engine)
    ticks = iter(datetime(2026, 11, 29, 11, minute, tzinfo=UTC) for minute in range(0, 60, 1))
    calls: list[str] = []
    reported: list[str] = []  # what the scheduled_job_runs_total counter is told

    def work() -> None:
        calls.append("run")
        if len(calls) == 1:
            raise RuntimeError("first run breaks")

    def ended() -> int:
        with sessions() as session:
            query = select(func.count()).select_from(JobRun).where(JobRun.status != "running")
            return int(session.scalar(query) or 0)

    async def two_periods() -> None:
        task = asyncio.create_task(
            every(
                timedelta(seconds=60),
                job="drift",
                sessions=sessions,
                work=work,
                ended=reported.append,
                clock=lambda: next(ticks),
            )
        )
        # Two periods ended (recorded), not merely started: the recording runs in a thread.
        while ended() < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(two_periods())
    with sessions() as session:
        statuses = [
            run.status for run in session.scalars(select(JobRun).order_by(JobRun.period_start))
        ]
    assert statuses[:2] == ["failed", "done"]
    assert reported[:2] == ["failed", "done"]
    engine.dispose()
