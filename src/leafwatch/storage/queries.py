"""Reads and writes of predictions, feedback and model versions; keyword-only, session passed in."""

import base64
import binascii
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, case, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from leafwatch.errors import InvalidCursor, PredictionNotFound
from leafwatch.model.labels import CLASS_NAMES
from leafwatch.monitor.features import PredictionFeatures
from leafwatch.storage.tables import (
    Feedback,
    InjectedFault,
    ModelVersion,
    Prediction,
    PredictionFeatureRow,
    utcnow,
)

# Which verdict counts when a prediction has several: the most authoritative source first,
# then the latest. Expert review outranks the farmer's app and the web form, which rank equal.
SOURCE_AUTHORITY = {"expert_review": 1, "mobile_app": 0, "web": 0}


def add(session: Session, *, row: Prediction | Feedback) -> None:
    """Insert a new row and commit."""
    session.add(row)
    session.commit()


def add_prediction(session: Session, *, row: Prediction, features: PredictionFeatures) -> None:
    """Insert a prediction and its drift features in one transaction."""
    session.add(row)
    session.flush()  # the features row refers to the prediction
    session.add(
        PredictionFeatureRow(
            prediction_id=row.id,
            timestamp=row.timestamp,
            model_version=row.model_version,
            image_format=features.image_format,
            predicted_class=features.predicted_class,
            embedding=features.embedding.astype("<f4").tobytes(),
            **features.values,
        )
    )
    session.commit()


def get_prediction(session: Session, *, prediction_id: uuid.UUID) -> Prediction:
    """Return a prediction, or raise PredictionNotFound."""
    row = session.get(Prediction, prediction_id)
    if row is None:
        raise PredictionNotFound(f"no prediction has id {prediction_id}")
    return row


def list_predictions(
    session: Session, *, user_id: str | None, limit: int, cursor: str | None
) -> tuple[list[Prediction], str | None]:
    """One page of predictions, newest first, and the cursor of the next page (None at the end)."""
    query = select(Prediction).order_by(Prediction.timestamp.desc(), Prediction.id.desc())
    if user_id is not None:
        query = query.where(Prediction.user_id == user_id)
    if cursor is not None:
        after_time, after_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                Prediction.timestamp < after_time,
                and_(Prediction.timestamp == after_time, Prediction.id < after_id),
            )
        )
    rows = list(session.scalars(query.limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], _encode_cursor(last.timestamp, last.id)


def feedback_for(session: Session, *, prediction_id: uuid.UUID) -> list[Feedback]:
    """Every verdict on a prediction, oldest first."""
    query = (
        select(Feedback)
        .where(Feedback.prediction_id == prediction_id)
        .order_by(Feedback.timestamp, Feedback.id)
    )
    return list(session.scalars(query))


def effective_verdicts(
    *, given_by: datetime | None = None, prediction_ids: Select[Any] | None = None
) -> Select[Any]:
    """Subquery source: the one verdict that counts per prediction (see SOURCE_AUTHORITY).

    With `given_by`, only verdicts given at or before that time count. With `prediction_ids`,
    only the verdicts on those predictions are ranked (cheaper when few predictions are read).
    """
    authority = case(
        *((Feedback.feedback_source == source, rank) for source, rank in SOURCE_AUTHORITY.items()),
        else_=0,
    )
    ranked_query = select(
        Feedback.prediction_id,
        Feedback.is_correct,
        Feedback.correct_class_id,
        func.row_number()
        .over(
            partition_by=Feedback.prediction_id,
            order_by=(authority.desc(), Feedback.timestamp.desc(), Feedback.id.desc()),
        )
        .label("rank"),
    )
    if given_by is not None:
        ranked_query = ranked_query.where(Feedback.timestamp <= given_by)
    if prediction_ids is not None:
        ranked_query = ranked_query.where(Feedback.prediction_id.in_(prediction_ids))
    ranked = ranked_query.subquery("ranked_feedback")
    return select(ranked.c.prediction_id, ranked.c.is_correct, ranked.c.correct_class_id).where(
        ranked.c.rank == 1
    )


@dataclass
class ClassStats:
    """Figures for one class over a window."""

    predicted: int = 0
    reviewed: int = 0
    correct: int = 0
    actual: int = 0

    @property
    def precision(self) -> float | None:
        """Share of reviewed predictions of this class that were right."""
        return self.correct / self.reviewed if self.reviewed else None


@dataclass
class FeedbackStats:
    """Feedback figures over a window of predictions (see `feedback_stats`)."""

    since: datetime
    total_predictions: int = 0
    reviewed_predictions: int = 0
    correct: int = 0
    total_feedback: int = 0
    feedback_by_source: dict[str, int] = field(default_factory=dict)
    per_class: dict[str, ClassStats] = field(default_factory=dict)

    @property
    def accuracy(self) -> float | None:
        """Share of reviewed predictions that were right, or None with no verdicts."""
        return self.correct / self.reviewed_predictions if self.reviewed_predictions else None

    @property
    def feedback_rate(self) -> float | None:
        """Share of predictions that received a verdict."""
        if not self.total_predictions:
            return None
        return self.reviewed_predictions / self.total_predictions


def feedback_stats(session: Session, *, since: datetime) -> FeedbackStats:
    """Accuracy and counts for predictions made since `since`, aggregated in SQL.

    Predictions, verdicts and per-class figures count predictions made in the window, each judged
    by its effective verdict; feedback totals count verdict rows submitted in the window.
    """
    stats = FeedbackStats(since=since, per_class={name: ClassStats() for name in CLASS_NAMES})
    verdicts = effective_verdicts().subquery("verdicts")
    per_class = (
        select(
            Prediction.predicted_class_id,
            func.count(),
            func.count(verdicts.c.prediction_id),
            func.coalesce(func.sum(case((verdicts.c.is_correct, 1), else_=0)), 0),
        )
        .select_from(Prediction)
        .outerjoin(verdicts, verdicts.c.prediction_id == Prediction.id)
        .where(Prediction.timestamp >= since)
        .group_by(Prediction.predicted_class_id)
    )
    for class_id, predicted, reviewed, correct in session.execute(per_class):
        entry = stats.per_class[CLASS_NAMES[class_id]]
        entry.predicted, entry.reviewed, entry.correct = predicted, reviewed, int(correct)
        stats.total_predictions += predicted
        stats.reviewed_predictions += reviewed
        stats.correct += int(correct)
    actual = (
        select(verdicts.c.correct_class_id, func.count())
        .select_from(Prediction)
        .join(verdicts, verdicts.c.prediction_id == Prediction.id)
        .where(Prediction.timestamp >= since, verdicts.c.correct_class_id.is_not(None))
        .group_by(verdicts.c.correct_class_id)
    )
    for class_id, count in session.execute(actual):
        stats.per_class[CLASS_NAMES[class_id]].actual = count
    by_source = (
        select(Feedback.feedback_source, func.count())
        .where(Feedback.timestamp >= since)
        .group_by(Feedback.feedback_source)
    )
    stats.feedback_by_source = dict.fromkeys(SOURCE_AUTHORITY, 0)
    for source, count in session.execute(by_source):
        stats.feedback_by_source[source] = count
        stats.total_feedback += count
    return stats


@dataclass(frozen=True, slots=True)
class VersionAccuracy:
    """Verdicts on one model version's predictions over one window (of one predicted class)."""

    model_version: str
    window: str
    reviewed: int
    correct: int
    predicted_class: str | None = None


def accuracy_by_version(
    session: Session, *, as_of: datetime, windows: dict[str, timedelta], by_class: bool = False
) -> list[VersionAccuracy]:
    """For each window ending at `as_of`, reviewed and correct predictions per model version.

    A version appears, with every window, when it has a verdict in the longest window.
    Predictions made in the window count, each judged by its effective verdict given by `as_of`;
    one query computes every window. `by_class` splits each figure by predicted class.
    """
    verdicts = effective_verdicts(given_by=as_of).subquery("verdicts")
    correct = case((verdicts.c.is_correct, 1), else_=0)
    columns = []
    for length in windows.values():
        inside = Prediction.timestamp >= as_of - length
        columns += [
            func.coalesce(func.sum(case((inside, 1), else_=0)), 0),
            func.coalesce(func.sum(case((inside, correct), else_=0)), 0),
        ]
    groups: list[Any] = [Prediction.model_version]
    if by_class:
        groups.append(Prediction.predicted_class_name)
    query = (
        select(*groups, *columns)
        .select_from(Prediction)
        .join(verdicts, verdicts.c.prediction_id == Prediction.id)
        .where(Prediction.timestamp >= as_of - max(windows.values()), Prediction.timestamp < as_of)
        .group_by(*groups)
        .order_by(*groups)
    )
    figures = []
    for row in session.execute(query):
        version, predicted = row[0], row[1] if by_class else None
        counts = row[len(groups) :]
        for index, name in enumerate(windows):
            reviewed, right = int(counts[2 * index]), int(counts[2 * index + 1])
            figures.append(VersionAccuracy(version, name, reviewed, right, predicted))
    return figures


def record_model_version(
    session: Session, *, model_name: str, version: str, onnx_sha256: str, card: dict[str, Any]
) -> None:
    """Note that this process serves a model version (insert once, then bump last_served_at)."""
    now = utcnow()
    query = select(ModelVersion).where(
        ModelVersion.model_name == model_name, ModelVersion.version == version
    )
    existing = session.scalar(query)
    if existing is None:
        session.add(
            ModelVersion(
                model_name=model_name,
                version=version,
                onnx_sha256=onnx_sha256,
                card=card,
                first_served_at=now,
                last_served_at=now,
            )
        )
        try:
            session.commit()
            return
        except IntegrityError:  # another worker registered it first
            session.rollback()
            existing = session.scalars(query).one()
    existing.last_served_at = now
    session.commit()


def set_fault(
    session: Session,
    *,
    route: str,
    latency_ms: int,
    error_ratio: float,
    expires_at: datetime | None,
) -> InjectedFault:
    """Inject a fault on a route, replacing the one it had."""
    fault = session.get(InjectedFault, route) or InjectedFault(route=route)
    fault.latency_ms, fault.error_ratio = latency_ms, error_ratio
    fault.set_at, fault.expires_at = utcnow(), expires_at
    session.add(fault)
    session.commit()
    return fault


def clear_faults(session: Session, *, route: str | None = None) -> int:
    """Remove the injected faults (of one route, or all); returns how many there were."""
    query = delete(InjectedFault)
    if route is not None:
        query = query.where(InjectedFault.route == route)
    removed = session.execute(query).rowcount  # type: ignore[attr-defined]
    session.commit()
    return int(removed or 0)


def active_faults(session: Session, *, now: datetime) -> list[InjectedFault]:
    """The injected faults that have not expired by `now`."""
    query = (
        select(InjectedFault)
        .where(or_(InjectedFault.expires_at.is_(None), InjectedFault.expires_at > now))
        .order_by(InjectedFault.route)
    )
    return list(session.scalars(query))


def _encode_cursor(timestamp: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([timestamp.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, row_id = json.loads(raw)
        timestamp = datetime.fromisoformat(when)
        if timestamp.tzinfo is None:
            raise ValueError("naive timestamp")
        return timestamp, uuid.UUID(row_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidCursor(f"cursor {cursor[:64]!r} was not issued by this service") from exc
