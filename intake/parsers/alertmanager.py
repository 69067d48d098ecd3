"""Prometheus Alertmanager webhook (payload version 4) -> one draft per entry of `alerts`.

Identity is the alert's `fingerprint` (a hash of its labels), or the same kind of hash of the
sorted labels when the sender left it out. Firing vs resolved is read per alert: a group's
top-level `status` is `firing` while any of its alerts is, and `endsAt` is no signal at all
(zero time, or a future time while firing). Grafana's unified alerting reuses these models.

`started_at` is the alert's `startsAt`: set when the alert began firing and repeated by
every later notification of that episode (group_interval, repeat_interval, an HA peer), a
later one after it resolved and fired again. Go's zero time `0001-01-01T00:00:00Z` means
unknown and is null.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from intake.parsers.common import (
    Draft,
    Ignored,
    Registry,
    Text,
    find_service,
    first_text,
    from_iso,
    severity_priority,
    stable_hash,
    validate,
)
from models import AlertState, Priority

SERVICE_LABELS = ("service", "job", "app", "app_kubernetes_io_name", "container", "host")
SUMMARY_ANNOTATIONS = ("summary", "description", "message")


class AmAlert(BaseModel):
    """One alert of a notification."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    status: str = Field(default="firing", description="`firing` or `resolved`, per alert.")
    labels: dict[str, object] = Field(default_factory=dict, description="Identifying labels.")
    annotations: dict[str, object] = Field(default_factory=dict, description="Summary etc.")
    starts_at: str | None = Field(
        default=None, alias="startsAt", description="RFC 3339: when this episode began."
    )
    ends_at: str | None = Field(
        default=None, alias="endsAt", description="Zero time or a future time while firing."
    )
    generator_url: str | None = Field(
        default=None, alias="generatorURL", description="Link to the rule's source."
    )
    fingerprint: Text | None = Field(default=None, description="Hash of the labels; optional.")


class AmPayload(BaseModel):
    """A notification: a group of alerts sharing `groupLabels`."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    version: Text | None = Field(default=None, description="`4` (Grafana sends `1`).")
    group_key: Text | None = Field(default=None, alias="groupKey", description="Group identity.")
    truncated_alerts: int | None = Field(
        default=None, alias="truncatedAlerts", description="> 0 when `max_alerts` was hit."
    )
    status: str | None = Field(default=None, description="`firing` if any alert is firing.")
    receiver: str | None = Field(default=None, description="Configured receiver name.")
    group_labels: dict[str, object] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, object] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, object] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str | None = Field(
        default=None, alias="externalURL", description="Backlink to the Alertmanager."
    )
    alerts: Sequence[AmAlert] = Field(description="The alerts of the group; at least the key.")


UrlPicker = Callable[[AmPayload, AmAlert], str | None]


def parse(body: object, registry: Registry) -> list[Draft | Ignored]:
    """One draft per alert of the group."""
    payload = validate(AmPayload, body)
    return list(group_drafts("alertmanager", payload, body, registry, url=_url))


def group_drafts(
    provider: str, payload: AmPayload, body: object, registry: Registry, *, url: UrlPicker
) -> list[Draft]:
    """The drafts of an Alertmanager-shaped group (shared with Grafana unified alerting)."""
    raw_alerts = body.get("alerts", []) if isinstance(body, dict) else []
    context = _group_context(body)
    return [
        alert_draft(provider, payload, alert, registry, url=url, raw={**raw, **context}, index=i)
        for i, (alert, raw) in enumerate(zip(payload.alerts, raw_alerts, strict=True))
    ]


def _group_context(body: object) -> dict[str, object]:
    keys = ("receiver", "externalURL", "commonLabels")
    return {k: body[k] for k in keys if k in body} if isinstance(body, dict) else {}


def alert_key(alert: AmAlert) -> str:
    """The fingerprint, or a 16-hex hash of the sorted labels when absent."""
    return alert.fingerprint or stable_hash(alert.labels)


def alert_summary(payload: AmPayload, alert: AmAlert) -> str:
    """Annotations `summary`/`description`/`message` (the alert's, then common), else name."""
    own = [alert.annotations.get(k) for k in SUMMARY_ANNOTATIONS]
    common = [payload.common_annotations.get(k) for k in SUMMARY_ANNOTATIONS]
    name = alert.labels.get("alertname")
    return first_text(*own, *common, name) or "Alertmanager alert"


def alert_draft(
    provider: str,
    payload: AmPayload,
    alert: AmAlert,
    registry: Registry,
    *,
    url: UrlPicker,
    raw: object,
    index: int,
) -> Draft:
    """One alert of a group (the `index`th), normalized."""
    labels = alert.labels
    resolved = alert.status.strip().lower() == "resolved"
    candidates = [labels.get(k) for k in SERVICE_LABELS] + [labels.get("instance")]
    return Draft(
        key=f"{provider}:{alert_key(alert)}",
        summary=alert_summary(payload, alert),
        state=AlertState.RESOLVED if resolved else AlertState.FIRING,
        priority=severity_priority(labels.get("severity"), labels.get("priority")) or Priority.P3,
        service=find_service(candidates, registry),
        started_at=from_iso(alert.starts_at),
        labels=labels,
        url=url(payload, alert),
        raw=raw,
        key_loc=("alerts", index, "fingerprint" if alert.fingerprint else "labels"),
    )


def absolute_url(value: str | None) -> str | None:
    """`value` when it is an absolute http(s) URL, else None."""
    if not value:
        return None
    parts = urlsplit(value)
    return value if parts.scheme in ("http", "https") and parts.netloc else None


def _url(payload: AmPayload, alert: AmAlert) -> str | None:
    return absolute_url(alert.generator_url) or absolute_url(payload.external_url)
