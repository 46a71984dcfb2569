"""The fault switch's cache of the faults in force: overlapping reads keep the newest."""

import asyncio
import threading

from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session

from leafwatch.observe.metrics import Metrics
from leafwatch.service.faults import Fault, FaultSwitch
from leafwatch.storage.tables import utcnow


def no_session() -> Session:
    raise AssertionError("the test answers reads itself")


def test_an_older_read_that_ends_last_does_not_hide_a_newer_fault() -> None:
    fault = Fault(
        "/api/v1/predict", latency_ms=0, error_ratio=1.0, set_at=utcnow(), expires_at=None
    )
    switch = FaultSwitch(no_session, Metrics(CollectorRegistry()))
    release_old = threading.Event()
    answers = iter([[], [fault]])  # the first read sees nothing, the second the new fault

    def active() -> list[Fault]:
        found = next(answers)
        if not found:
            release_old.wait(timeout=10)  # the old read is slow: it ends after the new one
        return found

    switch.active = active  # type: ignore[method-assign]

    async def scenario() -> dict[str, Fault]:
        old = asyncio.create_task(switch._current())
        await asyncio.sleep(0.05)  # the old read has started
        switch._read_at = float("-inf")  # what set() does: the next request reads again
        newest = await switch._current()
        assert newest == {fault.route: fault}
        release_old.set()
        await old
        return await switch._current()

    assert asyncio.run(scenario()) == {fault.route: fault}
