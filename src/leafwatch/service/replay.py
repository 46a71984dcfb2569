"""Replaying the spool into the database: each file in order, each record exactly once.

A record leaves the spool only after its row is committed, and a row already in the database is
not inserted again, so a process that dies mid-replay leaves nothing lost and nothing doubled.
A verdict whose prediction still waits in another spool file waits too; one whose prediction
does not exist, or that contradicts it, was accepted while it could not be checked: it is
rejected here, logged with the whole record and counted (docs/reliability.md).
"""

import asyncio
import sqlite3
from dataclasses import dataclass
from enum import Enum

import structlog
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from leafwatch.errors import InvalidFeedback
from leafwatch.model.labels import class_id
from leafwatch.service.feedback import verdict_class
from leafwatch.service.recorder import (
    FEEDBACK,
    PREDICTION,
    Recorder,
    is_outage,
    prediction_from_body,
    row_from_values,
)
from leafwatch.storage import queries
from leafwatch.storage.spool import Spool, SpooledRecord, SpoolFile
from leafwatch.storage.tables import Feedback, Prediction

log = structlog.stdlib.get_logger(__name__)
BATCH = 100


class Outcome(Enum):
    """What became of one spooled record."""

    REPLAYED = "replayed"  # in the database now (or already was)
    REJECTED = "rejected"  # accepted unchecked, found invalid: logged and counted
    WAITING = "waiting"  # its prediction is still in another spool file


@dataclass
class Result:
    """What one record's replay did, and why a rejected one was rejected."""

    outcome: Outcome
    reason: str = ""


def replay(recorder: Recorder) -> int:
    """Move what this process can claim from the spool to the database; returns how many.

    Stops at the first sign that the database is away; the next call goes on from there.
    """
    spool = recorder.spool
    if spool is None:
        return 0
    with recorder.replaying:
        return _replay_all(recorder, spool)


def _replay_all(recorder: Recorder, spool: Spool) -> int:
    try:
        moved = replay_file(recorder, spool, spool.own)
        for orphan in spool.orphans():
            try:
                moved += replay_file(recorder, spool, orphan)
            finally:
                if orphan.depth() == 0:
                    orphan.delete()
                    log.info("orphaned spool file replayed and removed", file=orphan.path.name)
                else:
                    orphan.close()
    except DBAPIError as exc:
        if not is_outage(exc):
            raise
        recorder.database_failed(exc)
        return 0
    return moved


def replay_file(recorder: Recorder, spool: Spool, file: SpoolFile) -> int:
    """Replay one file from its oldest record; stops at a record that must wait."""
    moved = 0
    while records := file.pending(BATCH):
        done: list[tuple[SpooledRecord, Result]] = []
        try:
            with recorder.sessions() as session:
                for record in records:
                    result = replay_record(session, spool, record)
                    if result.outcome is Outcome.WAITING:
                        return moved + len(done)
                    done.append((record, result))
                    recorder.database_answered()
        finally:
            # Committed rows leave the spool, even when a later record failed.
            file.remove([record.seq for record, _ in done])
            for record, result in done:
                count(recorder, record, result)
        moved += len(done)
    return moved


def replay_record(session: Session, spool: Spool, record: SpooledRecord) -> Result:
    """Insert one record's row unless the database has it already; commits."""
    if record.kind == PREDICTION:
        row, features = prediction_from_body(record.body)
        if session.get(Prediction, row.id) is None:
            queries.add_prediction(session, row=row, features=features)
        return Result(Outcome.REPLAYED)
    if record.kind != FEEDBACK:
        return Result(Outcome.REJECTED, f"unknown record kind {record.kind!r}")
    verdict = row_from_values(Feedback, record.body["row"])
    if session.get(Feedback, verdict.id) is not None:
        return Result(Outcome.REPLAYED)
    prediction = session.get(Prediction, verdict.prediction_id)
    if prediction is None:
        if spool.find(PREDICTION, str(verdict.prediction_id)) is not None:
            return Result(Outcome.WAITING)
        # Another process may have replayed it since the first look (the database before the
        # spool: a record leaves its file only once its row is committed).
        prediction = session.get(Prediction, verdict.prediction_id)
    if prediction is None:
        return Result(Outcome.REJECTED, f"no prediction has id {verdict.prediction_id}")
    try:
        name = verdict_class(
            prediction.predicted_class_name,
            is_correct=verdict.is_correct,
            correct_class_name=verdict.correct_class_name,
        )
    except InvalidFeedback as exc:
        return Result(Outcome.REJECTED, exc.detail)
    assert name is not None  # the predicted class is known
    verdict.correct_class_name, verdict.correct_class_id = name, class_id(name)
    queries.add(session, row=verdict)
    return Result(Outcome.REPLAYED)


def count(recorder: Recorder, record: SpooledRecord, result: Result) -> None:
    """Count a replayed or rejected record; log a rejected one whole, so it can be recovered."""
    recorder.metrics.spool_records.labels(kind=record.kind, outcome=result.outcome.value).inc()
    if result.outcome is Outcome.REJECTED:
        log.warning(
            "spooled record rejected at replay",
            kind=record.kind,
            record_id=record.key,
            reason=result.reason,
            record=record.body,
        )


async def replay_forever(recorder: Recorder, seconds: float) -> None:
    """Replay at start and then every `seconds`, for as long as the app runs (cancel to stop)."""
    while True:
        try:
            moved = await run_in_threadpool(replay, recorder)
            if moved:
                log.info("spool replayed", records=moved)
        except (DBAPIError, OSError, sqlite3.Error):
            # A row the database refuses for another reason than an outage: the record stays
            # and the spool does not drain, which the SpoolNotDraining alert reports.
            log.exception("spool replay failed; the records stay in the spool")
        await asyncio.sleep(seconds)
