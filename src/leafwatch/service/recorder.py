"""Where accepted predictions and verdicts go: the database, or the local spool while it is away.

A write that fails because the database cannot be reached goes to the spool (on disk before the
answer), and for the next `retry_s` seconds writes go straight to the spool instead of waiting on
the database again. Rows carry ids made here, so the replay (service/replay.py) can insert each
exactly once. Docs: docs/reliability.md.
"""

import base64
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

import numpy as np
import structlog
from sqlalchemy import Uuid, inspect
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from leafwatch.errors import PredictionNotFound, StorageUnavailable
from leafwatch.monitor.features import PredictionFeatures
from leafwatch.observe.metrics import Metrics
from leafwatch.storage import queries
from leafwatch.storage.spool import Spool
from leafwatch.storage.tables import Base, Feedback, Prediction, UTCDateTime

log = structlog.stdlib.get_logger(__name__)
R = TypeVar("R", bound=Base)
PREDICTION = "prediction"
FEEDBACK = "feedback"


def is_outage(exc: DBAPIError) -> bool:
    """Whether a database error means it cannot be reached now (not that a row is wrong)."""
    return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)


@dataclass(frozen=True, slots=True)
class PredictionRef:
    """Where the prediction a verdict is about was found, and the class it predicted."""

    where: Literal["database", "spool", "unknown"]
    predicted_class: str | None  # None when unknown: the database is away, the spool lacks it


class Recorder:
    """Saves predictions and verdicts in the database, or in the spool while it is away."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        spool: Spool | None,
        metrics: Metrics,
        *,
        retry_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.spool = spool
        self.metrics = metrics
        self.retry_s = retry_s
        self.clock = clock
        self._away_until = 0.0
        # One replay at a time, and none while the spool closes.
        self.replaying = threading.Lock()

    def database_away(self) -> bool:
        """Whether writes go straight to the spool now (a recent failure, spool enabled)."""
        return self.spool is not None and self.clock() < self._away_until

    def database_failed(self, exc: DBAPIError) -> None:
        """Send writes to the spool for the next `retry_s` seconds."""
        if not self.database_away():
            log.warning("database unreachable: records go to the spool", error=str(exc.orig))
        self._away_until = self.clock() + self.retry_s

    def database_answered(self) -> None:
        """The database took a write: writes go to it again."""
        if self.database_away():
            log.info("database reachable again: records go to it")
        self._away_until = 0.0

    def save_prediction(self, row: Prediction, features: PredictionFeatures) -> bool:
        """Store a prediction and its drift features; True when it went to the spool."""
        if not self.database_away():
            try:
                with self.sessions() as session:
                    queries.add_prediction(session, row=row, features=features)
                return False
            except DBAPIError as exc:
                if self.spool is None or not is_outage(exc):
                    raise
                self.database_failed(exc)
        self._spool(PREDICTION, row.id, prediction_body(row, features))
        return True

    def save_feedback(
        self, prediction_id: uuid.UUID, verdict_for: Callable[[PredictionRef], Feedback]
    ) -> tuple[Feedback, bool]:
        """Find a verdict's prediction, make the verdict from it, store it; True when spooled.

        Raises PredictionNotFound, or what `verdict_for` raises. The prediction is looked for in
        the database, else in the spool; a verdict goes to the database only with its prediction
        there (one session, as fast as before), else it follows its prediction through the spool,
        or, with neither to be asked, is spooled unchecked and checked at replay.
        """
        row: Feedback | None = None
        if not self.database_away():
            try:
                with self.sessions() as session:
                    found = self._find(session, prediction_id)
                    row = verdict_for(found)
                    if found.where == "database":
                        queries.add(session, row=row)
                        return row, False
            except DBAPIError as exc:
                if self.spool is None or not is_outage(exc):
                    raise
                self.database_failed(exc)
        if row is None:
            found = self.spooled_prediction(prediction_id) or PredictionRef("unknown", None)
            row = verdict_for(found)
        self._spool(FEEDBACK, row.id, {"row": row_values(row)})
        return row, True

    def _find(self, session: Session, prediction_id: uuid.UUID) -> PredictionRef:
        found = session.get(Prediction, prediction_id)
        if found is None and (spooled := self.spooled_prediction(prediction_id)):
            return spooled
        if found is None:
            # The replay may have moved it since the first look: a record leaves the spool only
            # once its row is in the database.
            found = session.get(Prediction, prediction_id)
        if found is None:
            raise PredictionNotFound(f"no prediction has id {prediction_id}")
        return PredictionRef("database", found.predicted_class_name)

    def spooled_prediction(self, prediction_id: uuid.UUID) -> PredictionRef | None:
        """The prediction if it waits in a spool file on this host, else None."""
        if self.spool is None:
            return None
        try:
            body = self.spool.find(PREDICTION, str(prediction_id))
        except (OSError, sqlite3.Error) as exc:
            log.exception("the spool could not be read")
            raise StorageUnavailable("the local spool could not be read") from exc
        if body is None:
            return None
        return PredictionRef("spool", body["row"]["predicted_class_name"])

    def spool_depth(self) -> int:
        """Records waiting in the spool files of this host (0 with the spool off)."""
        return 0 if self.spool is None else self.spool.depth()

    def close(self) -> None:
        """Let this process's spool file go (another process replays what it still holds)."""
        if self.spool is not None:
            with self.replaying:
                self.spool.close()

    def _spool(self, kind: str, key: uuid.UUID, body: dict[str, Any]) -> None:
        assert self.spool is not None
        try:
            self.spool.append(kind, str(key), body)
        except (OSError, sqlite3.Error) as exc:
            log.exception("the spool could not take a record", kind=kind, record_id=str(key))
            raise StorageUnavailable(
                "the database could not be reached and the local spool could not take the record"
            ) from exc
        self.metrics.spool_records.labels(kind=kind, outcome="spooled").inc()
        log.info("record spooled", kind=kind, record_id=str(key))


def prediction_body(row: Prediction, features: PredictionFeatures) -> dict[str, Any]:
    """A prediction and its drift features as a JSON-ready spool record."""
    embedding = features.embedding.astype("<f4").tobytes()
    return {
        "row": row_values(row),
        "features": {
            "values": features.values,
            "image_format": features.image_format,
            "predicted_class": features.predicted_class,
            "embedding": base64.b64encode(embedding).decode("ascii"),
        },
    }


def prediction_from_body(body: dict[str, Any]) -> tuple[Prediction, PredictionFeatures]:
    """The prediction and features a spool record holds."""
    features = body["features"]
    embedding = np.frombuffer(base64.b64decode(features["embedding"]), dtype="<f4")
    return row_from_values(Prediction, body["row"]), PredictionFeatures(
        values=features["values"],
        image_format=features["image_format"],
        predicted_class=features["predicted_class"],
        embedding=embedding.astype(np.float32),
    )


def row_values(row: Base) -> dict[str, Any]:
    """A row's column values as JSON: ids and times as text, everything else as it is."""
    values: dict[str, Any] = {}
    for column in inspect(type(row)).column_attrs:
        value = getattr(row, column.key)
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        values[column.key] = value
    return values


def row_from_values(table: type[R], values: dict[str, Any]) -> R:
    """The row `row_values` wrote; a column it did not know (added since) gets its default."""
    fields: dict[str, Any] = {}
    for column in inspect(table).column_attrs:
        if column.key not in values:
            continue
        value = values[column.key]
        kind = column.columns[0].type
        if value is not None and isinstance(kind, Uuid):
            value = uuid.UUID(value)
        elif value is not None and isinstance(kind, UTCDateTime):
            value = datetime.fromisoformat(value)
        fields[column.key] = value
    return table(**fields)
