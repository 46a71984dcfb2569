"""The Alertmanager webhook (it may roll the model back) and the stored alert events (admin)."""

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from leafwatch.api.deps import AdminDep, RuntimeDep, SessionDep
from leafwatch.api.errors import ERROR_RESPONSES
from leafwatch.schemas_alerts import (
    AlertEventOut,
    AlertEventPageOut,
    AlertEventsOut,
    AlertmanagerNotification,
)
from leafwatch.service.responses import Responder
from leafwatch.storage import alerts
from leafwatch.storage.tables import AlertEvent

router = APIRouter(prefix="/api/v1/alerts", tags=["admin"])


@router.post("", response_model=AlertEventsOut, responses=ERROR_RESPONSES)
async def receive(
    notification: AlertmanagerNotification, runtime: RuntimeDep, _admin: AdminDep
) -> AlertEventsOut:
    """Alertmanager's webhook: store each alert; one on the production model may roll it back."""
    responder = Responder(
        sessions=runtime.sessions,
        registry=runtime.registry,
        metrics=runtime.metrics,
        auto_rollback=runtime.settings.auto_rollback,
        reload=runtime.reload_model,
    )
    events = [await run_in_threadpool(responder.handle, alert) for alert in notification.alerts]
    return AlertEventsOut(events=[alert_event_out(event) for event in events])


@router.get("", response_model=AlertEventPageOut, responses=ERROR_RESPONSES)
def list_events(
    session: SessionDep,
    _admin: AdminDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=32, description="`next_cursor` of the previous page.")
    ] = None,
) -> AlertEventPageOut:
    """Alert events and rollbacks, newest first, a page at a time."""
    rows, next_cursor = alerts.list_events(session, limit=limit, cursor=cursor)
    return AlertEventPageOut(items=[alert_event_out(row) for row in rows], next_cursor=next_cursor)


def alert_event_out(row: AlertEvent) -> AlertEventOut:
    """Shape a stored alert event."""
    return AlertEventOut.model_validate(
        {
            "event_id": row.id,
            "received_at": row.received_at,
            "source": row.source,
            "alertname": row.alertname,
            "status": row.status,
            "severity": row.severity,
            "fingerprint": row.fingerprint,
            "starts_at": row.starts_at,
            "model_version": row.model_version,
            "labels": row.labels,
            "action": row.action,
            "detail": row.detail,
            "from_version": row.from_version,
            "to_version": row.to_version,
        }
    )
