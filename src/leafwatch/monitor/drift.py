"""A drift run: the current window of stored features against a reference, tested and reported."""

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import structlog
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.orm import Session

from leafwatch.model.labels import CLASS_NAMES
from leafwatch.monitor.features import FEATURES, IMAGE_FEATURES, IMAGE_FORMATS
from leafwatch.monitor.reference import FeatureSample
from leafwatch.monitor.statistics import (
    ClassShift,
    ConfidenceShift,
    DriftScores,
    EmbeddingShift,
    FeatureDrift,
    class_shift,
    confidence_shift,
    drift_scores,
    embedding_shift,
    feature_drift,
)
from leafwatch.storage.tables import DriftReport, PredictionFeatureRow, utcnow

log = structlog.stdlib.get_logger(__name__)

# The continuous battery: image statistics and the model's entropy (confidence has its own test).
TESTED_FEATURES = (*IMAGE_FEATURES, "entropy")
# Four families of tests share the run's false-alarm budget (Bonferroni): with no drift, a run
# flags anything with probability at most alpha.
FAMILIES = 4
# The newest rows of a window are enough: tests on more gain nothing but time.
MAX_CURRENT = 50_000


@dataclass(frozen=True)
class DriftOptions:
    """How a run compares: its window, significance, minimum sample and persistence."""

    window: timedelta
    alpha: float
    min_samples: int
    persistence: int  # consecutive drifted runs before retraining is recommended
    seed: int = 0


@dataclass(frozen=True)
class Comparison:
    """Every test of one run."""

    features: list[FeatureDrift]
    classes: ClassShift
    confidence: ConfidenceShift
    embedding: EmbeddingShift
    scores: DriftScores

    @property
    def drifted(self) -> bool:
        """Whether any test flagged drift."""
        return (
            any(feature.drifted for feature in self.features)
            or self.classes.drifted
            or self.confidence.drifted
            or self.embedding.drifted
        )


def compare(
    reference: FeatureSample,
    current: FeatureSample,
    *,
    alpha: float,
    min_samples: int,
    rng: np.random.Generator,
) -> Comparison:
    """Run every test of current against reference, at a family-wise level of `alpha`."""
    level = alpha / FAMILIES
    features = feature_drift(
        {name: reference.values[name] for name in TESTED_FEATURES},
        {name: current.values[name] for name in TESTED_FEATURES},
        alpha=level,
        min_samples=min_samples,
    )
    classes = class_shift(
        dict(zip(CLASS_NAMES, reference.class_counts().tolist(), strict=True)),
        dict(zip(CLASS_NAMES, current.class_counts().tolist(), strict=True)),
        alpha=level,
        min_samples=min_samples,
    )
    confidence = confidence_shift(
        reference.values["confidence"],
        current.values["confidence"],
        alpha=level,
        min_samples=min_samples,
    )
    embedding = embedding_shift(
        reference.embeddings, current.embeddings, rng=rng, alpha=level, min_samples=min_samples
    )
    scores = drift_scores(
        features=features, classes=classes, confidence=confidence, embedding=embedding
    )
    return Comparison(features, classes, confidence, embedding, scores)


def load_window(
    session: Session, *, model_version: str, start: datetime, end: datetime
) -> FeatureSample:
    """Stored features of one model version's predictions in [start, end), newest first."""
    columns = [getattr(PredictionFeatureRow, name) for name in FEATURES]
    query = (
        select(
            *columns,
            PredictionFeatureRow.predicted_class,
            PredictionFeatureRow.image_format,
            PredictionFeatureRow.embedding,
        )
        .where(
            PredictionFeatureRow.model_version == model_version,
            PredictionFeatureRow.timestamp >= start,
            PredictionFeatureRow.timestamp < end,
        )
        .order_by(PredictionFeatureRow.timestamp.desc())
        .limit(MAX_CURRENT)
    )
    rows = session.execute(query).all()
    count = len(FEATURES)
    embeddings = [np.frombuffer(row[count + 2], dtype="<f4") for row in rows]
    return FeatureSample(
        values={
            name: np.array([row[index] for row in rows], dtype=np.float64)
            for index, name in enumerate(FEATURES)
        },
        classes=np.array([row[count] for row in rows], dtype=np.int64),
        formats=np.array([_format_index(row[count + 1]) for row in rows], dtype=np.int64),
        embeddings=_matrix(embeddings),
    )


def _matrix(rows: list[NDArray[np.float32]]) -> NDArray[np.float32]:
    return np.array(rows, dtype=np.float32) if rows else np.empty((0, 0), dtype=np.float32)


def _format_index(name: str) -> int:
    return IMAGE_FORMATS.index(name) if name in IMAGE_FORMATS else 0


def run_drift(
    session: Session,
    *,
    reference: FeatureSample,
    reference_source: str,
    model_version: str,
    options: DriftOptions,
    now: datetime | None = None,
) -> DriftReport:
    """Compare the window ending now with the reference; store and return the report."""
    started = time.perf_counter()
    end = now or utcnow()
    start = end - options.window
    current = load_window(session, model_version=model_version, start=start, end=end)
    enough = min(len(current), len(reference)) >= options.min_samples
    details: dict[str, Any] = {
        "alpha": options.alpha,
        "min_samples": options.min_samples,
        "formats": {
            "reference": _format_shares(reference),
            "current": _format_shares(current),
        },
    }
    scores: dict[str, float | None] = dict.fromkeys(
        ("image_statistics", "prediction_distribution", "confidence", "embedding")
    )
    drifted = False
    if enough:
        comparison = compare(
            reference,
            current,
            alpha=options.alpha,
            min_samples=options.min_samples,
            rng=np.random.default_rng(options.seed),
        )
        scores = comparison.scores.by_metric_type()
        drifted = comparison.drifted
        details.update(
            features=[asdict(feature) for feature in comparison.features],
            classes=asdict(comparison.classes),
            confidence=asdict(comparison.confidence),
            embedding=asdict(comparison.embedding),
        )
    streak = _streak(session, model_version=model_version) + 1 if drifted else 0
    details["consecutive_drifted_runs"] = streak
    report = DriftReport(
        run_at=end,
        model_version=model_version,
        reference_source=reference_source,
        reference_size=len(reference),
        window_start=start,
        window_end=end,
        current_size=len(current),
        status=("drift" if drifted else "ok") if enough else "not_enough_data",
        drifted=drifted,
        retraining_recommended=streak >= options.persistence,
        scores=scores,
        details=details,
        seconds=round(time.perf_counter() - started, 4),
    )
    session.add(report)
    session.commit()
    log.info(
        "drift run",
        model_version=model_version,
        status=report.status,
        current_size=report.current_size,
        scores=scores,
        drifted_features=[f["name"] for f in details.get("features", []) if f["drifted"]],
        seconds=report.seconds,
    )
    return report


def _streak(session: Session, *, model_version: str) -> int:
    """Drifted runs in a row before this one, as the last tested run recorded it."""
    # Each report stores its own streak; not-enough-data runs neither break nor extend it.
    details = session.scalar(
        select(DriftReport.details)
        .where(DriftReport.model_version == model_version, DriftReport.status != "not_enough_data")
        .order_by(DriftReport.run_at.desc(), DriftReport.id.desc())
        .limit(1)
    )
    return int(details.get("consecutive_drifted_runs", 0)) if details else 0


def _format_shares(sample: FeatureSample) -> dict[str, float]:
    if not len(sample):
        return {}
    counts = np.bincount(sample.formats, minlength=len(IMAGE_FORMATS))
    return {
        name: float(count) / len(sample) for name, count in zip(IMAGE_FORMATS, counts, strict=True)
    }


def latest_report(session: Session, *, finished_by: datetime | None = None) -> DriftReport | None:
    """The most recent drift report, if any; with `finished_by`, the latest run ended by then."""
    newest_first = select(DriftReport).order_by(DriftReport.run_at.desc(), DriftReport.id.desc())
    if finished_by is None:
        return session.scalars(newest_first.limit(1)).first()
    # A run starts at run_at and is stored `seconds` later; one started after the moment cannot
    # have ended by it, and runs are hourly, so a few candidates are enough.
    candidates = session.scalars(newest_first.where(DriftReport.run_at <= finished_by).limit(5))
    return next(
        (r for r in candidates if r.run_at + timedelta(seconds=r.seconds) <= finished_by), None
    )
