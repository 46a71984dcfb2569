"""The Alertmanager webhook's payload (version 4) and the alert events LeafWatch answers with."""

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

AlertStatus = Literal["firing", "resolved"]
Action = Literal["none", "rolled_back", "skipped", "failed"]
# Alertmanager's own limit on a notification is its `max_alerts` (0: none); this one only keeps a
# malformed or hostile body from becoming a very long request.
MAX_ALERTS = 1000


class _Alertmanager(BaseModel):
    # Alertmanager's names are camelCase; the Python names are the usual snake_case.
    model_config = ConfigDict(populate_by_name=True)


class AlertIn(_Alertmanager):
    """One alert of a notification, as Alertmanager sends it."""

    status: AlertStatus = Field(description="firing, or resolved once the rule stopped firing.")
    labels: dict[str, str] = Field(
        description="The alert's labels: alertname, severity, job, model_version, ..."
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="summary, description, runbook_url."
    )
    starts_at: AwareDatetime = Field(alias="startsAt", description="When the alert began firing.")
    ends_at: datetime | None = Field(
        None,
        alias="endsAt",
        description="When it resolved (year 1 while it fires, in Alertmanager's format).",
    )
    generator_url: str = Field(
        "", alias="generatorURL", max_length=8192, description="The rule's page in Prometheus."
    )
    fingerprint: str = Field(
        min_length=1,
        max_length=64,
        description="Alertmanager's identity of the alert (a hash of its labels).",
    )


class AlertmanagerNotification(_Alertmanager):
    """The body of an Alertmanager webhook notification (payload version 4)."""

    version: Literal["4"] = Field(description="Payload format version; Alertmanager sends 4.")
    group_key: str = Field(alias="groupKey", description="Identifies the alert group.")
    truncated_alerts: int = Field(
        0, alias="truncatedAlerts", ge=0, description="Alerts left out by max_alerts."
    )
    status: AlertStatus = Field(description="firing when at least one alert of the group fires.")
    receiver: str = Field(description="The receiver that sent it.")
    group_labels: dict[str, str] = Field(
        default_factory=dict, alias="groupLabels", description="Labels the group is formed on."
    )
    common_labels: dict[str, str] = Field(
        default_factory=dict, alias="commonLabels", description="Labels every alert shares."
    )
    common_annotations: dict[str, str] = Field(
        default_factory=dict,
        alias="commonAnnotations",
        description="Annotations every alert shares.",
    )
    external_url: str = Field("", alias="externalURL", description="Alertmanager's address.")
    alerts: list[AlertIn] = Field(
        min_length=1, max_length=MAX_ALERTS, description="The alerts of the group."
    )


class AlertEventOut(BaseModel):
    """An alert LeafWatch received, or a rollback made by hand, and what was done about it."""

    event_id: int = Field(description="Id of the stored event.")
    received_at: datetime = Field(description="When LeafWatch received it, UTC.")
    source: Literal["alertmanager", "cli"] = Field(
        description="alertmanager: the webhook; cli: `leafwatch model rollback`."
    )
    alertname: str | None = Field(description="The alert's name (none for a rollback by hand).")
    status: AlertStatus | None = Field(description="firing or resolved.")
    severity: str | None = Field(description="The alert's severity label.")
    fingerprint: str | None = Field(description="Alertmanager's identity of the alert.")
    starts_at: datetime | None = Field(description="When the alert began firing.")
    model_version: str | None = Field(description="The model version the alert names.")
    labels: dict[str, str] = Field(description="Every label of the alert.")
    action: Action = Field(
        description="none: nothing to do; rolled_back; skipped: a rollback was asked for but "
        "not made (detail says why); failed: the registry could not be changed."
    )
    detail: str = Field(description="Why this action, in words.")
    from_version: str | None = Field(description="Production version before a rollback.")
    to_version: str | None = Field(description="Production version after a rollback.")


class AlertEventsOut(BaseModel):
    """What the webhook did with each alert of a notification, in the notification's order."""

    events: list[AlertEventOut] = Field(description="One event per alert.")


class AlertEventPageOut(BaseModel):
    """A page of alert events, newest first."""

    items: list[AlertEventOut] = Field(description="The events of this page.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; none at the end."
    )
