"""Automatic responses: an alert on the production model rolls it back, once per version."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from leafwatch.errors import ModelRegistryError
from leafwatch.model.registry import ModelRegistry
from leafwatch.observe.metrics import Metrics
from leafwatch.schemas_alerts import AlertIn
from leafwatch.storage import alerts
from leafwatch.storage.tables import AlertEvent

log = structlog.stdlib.get_logger(__name__)

# Only a page names a version: warnings (low confidence, an estimation gap) are worth a look, not
# an automatic change of model.
ROLLBACK_SEVERITY = "critical"
VERSION_LABEL = "model_version"
VERSION_SIZE = 64  # the model_version column's size


@dataclass(frozen=True, slots=True)
class Rollback:
    """What a rollback attempt did: rolled back from one version to another, or why not."""

    action: Literal["rolled_back", "skipped"]
    detail: str
    from_version: str | None = None
    to_version: str | None = None


def roll_back(registry: ModelRegistry, *, expected: str | None = None) -> Rollback:
    """Point production back at the version before it; with `expected`, only while it serves."""
    try:
        # The registry checks `expected` with the change: a promotion in between is not undone.
        from_version, to_version = registry.rollback(expected=expected)
    except ModelRegistryError as exc:  # production changed, or nothing earlier to go back to
        return Rollback("skipped", exc.detail)
    return Rollback(
        "rolled_back",
        f"production rolled back from version {from_version} to {to_version}",
        from_version,
        to_version,
    )


@dataclass(frozen=True)
class Responder:
    """Handles the alerts of Alertmanager notifications: stores, logs, counts, and may roll back."""

    sessions: sessionmaker[Session]
    registry: ModelRegistry
    metrics: Metrics
    auto_rollback: bool
    # Serve the new production version in this process now (others find it by polling).
    reload: Callable[[], object]

    def handle(self, alert: AlertIn) -> AlertEvent:
        """Decide what one alert calls for, do it, and return the stored event."""
        facts = _facts(alert)
        version = alert.labels.get(VERSION_LABEL)
        if alert.status == "resolved":
            event = self._record(facts, "none", "resolved: nothing to do; a rollback stays")
        elif alert.labels.get("severity") != ROLLBACK_SEVERITY or not version:
            event = self._record(
                facts,
                "none",
                f"only a firing {ROLLBACK_SEVERITY} alert with a model_version "
                "label can roll the model back",
            )
        elif not self.auto_rollback:
            event = self._record(
                facts,
                "none",
                f"automatic rollback is off (LEAFWATCH_AUTO_ROLLBACK): version "
                f"{version} was left in production",
            )
        else:
            event = self._roll_back(facts, version)
        self.metrics.record_alert_event(
            alertname=event.alertname or "", status=alert.status, action=event.action
        )
        logged = log.warning if event.action in ("rolled_back", "failed") else log.info
        logged(
            "alert received",
            alertname=event.alertname,
            alert_status=event.status,
            severity=event.severity,
            fingerprint=event.fingerprint,
            model_version=event.model_version,
            action=event.action,
            detail=event.detail,
            event_id=event.id,
        )
        return event

    def _record(self, facts: dict[str, Any], action: str, detail: str) -> AlertEvent:
        with self.sessions() as session:
            return alerts.record_event(session, **facts, action=action, detail=detail)

    def _roll_back(self, facts: dict[str, Any], version: str) -> AlertEvent:
        with self.sessions() as session:
            # The claim: a row naming the version, under a unique index, in an open transaction.
            # A second worker with the same alert blocks on the index until this one commits
            # (then it skips) or rolls back (then it tries itself).
            claimed = version[:VERSION_SIZE]
            claim = AlertEvent(
                **facts, action="rolled_back", detail="rolling back", auto_rollback_of=claimed
            )
            session.add(claim)
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
                earlier = alerts.auto_rollback_of(session, version=claimed)
                by = f" by event {earlier.id}" if earlier is not None else ""
                return alerts.record_event(
                    session,
                    **facts,
                    action="skipped",
                    detail=f"version {version} was already rolled back automatically{by}; "
                    "LeafWatch does that once per version: roll back by hand if it must go again",
                )
            try:
                outcome = roll_back(self.registry, expected=version)
            except Exception as exc:  # the registry is away: the claim goes, a retry may do it
                session.rollback()
                log.exception("automatic rollback failed", model_version=version)
                return alerts.record_event(
                    session,
                    **facts,
                    action="failed",
                    detail=f"the registry could not be changed ({type(exc).__name__}); "
                    "Alertmanager's next repeat tries again",
                )
            claim.action, claim.detail = outcome.action, outcome.detail
            claim.from_version, claim.to_version = outcome.from_version, outcome.to_version
            if outcome.action != "rolled_back":
                claim.auto_rollback_of = None
            session.commit()
        if outcome.action == "rolled_back":
            try:
                self.reload()
            except Exception:  # production has changed; the model poll serves it later
                log.exception("the rolled-back version could not be loaded at once")
        return claim


def record_manual_rollback(session: Session, outcome: Rollback) -> AlertEvent:
    """Store a rollback made by hand (`leafwatch model rollback`) beside the automatic ones."""
    return alerts.record_event(
        session,
        source="cli",
        labels={},
        model_version=outcome.from_version,
        action=outcome.action,
        detail=f"by hand: {outcome.detail}",
        from_version=outcome.from_version,
        to_version=outcome.to_version,
    )


def _facts(alert: AlertIn) -> dict[str, Any]:
    """The columns an alert fills, cut to their sizes (labels keep the whole values)."""
    labels = alert.labels

    def label(name: str, size: int) -> str | None:
        value = labels.get(name)
        return value[:size] if value is not None else None

    starts_at: datetime = alert.starts_at
    return {
        "source": "alertmanager",
        "alertname": label("alertname", 128),
        "status": alert.status,
        "severity": label("severity", 32),
        "fingerprint": alert.fingerprint,
        "starts_at": starts_at,
        "model_version": label(VERSION_LABEL, VERSION_SIZE),
        "labels": dict(labels),
    }
