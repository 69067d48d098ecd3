"""GCP Cloud Monitoring webhook notifications (incident schema 1.2) -> drafts.

`incident.incident_id` is stable between the `open` and `closed` events of one incident;
`version: "test"` is the console's "Test connection" and is ignored.

`started_at` is `incident.started_at` (epoch seconds), the same on every notification of
the incident (open, repeats, closed); 0, null or missing (the test send has 0) is null.
"""

from __future__ import annotations

import logging
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from intake.parsers.common import (
    Draft,
    EpochNumber,
    Ignored,
    Registry,
    Text,
    find_service,
    first_text,
    from_epoch,
    prefixed,
    severity_priority,
    validate,
)
from models import AlertState, Priority

logger = logging.getLogger(__name__)

SERVICE_LABELS = ("service", "service_name", "module_id", "container_name", "host")


class GcpDocumentation(BaseModel):
    """The policy's documentation block (newer payloads)."""

    model_config = ConfigDict(extra="allow")

    content: str | None = Field(default=None, description="Documentation text (markdown).")
    mime_type: str | None = Field(default=None, description="Usually `text/markdown`.")
    subject: str | None = Field(default=None, description="Optional notification subject.")


class GcpLabelled(BaseModel):
    """A typed resource or metric: `type` plus free-form `labels`."""

    model_config = ConfigDict(extra="allow")

    type: str | None = Field(default=None, description="e.g. `gce_instance`, `uptime_url`.")
    labels: dict[str, object] = Field(default_factory=dict, description="Resource labels.")


class GcpMetadata(BaseModel):
    """System and user labels attached to the alerting resource."""

    model_config = ConfigDict(extra="allow")

    system_labels: dict[str, object] = Field(default_factory=dict)
    user_labels: dict[str, object] = Field(default_factory=dict)


def _documentation(value: object) -> object:
    return {"content": value} if isinstance(value, str) else value


class GcpIncident(BaseModel):
    """The `incident` object. Many fields are missing in older or uptime-check payloads."""

    model_config = ConfigDict(extra="allow")

    incident_id: Text = Field(min_length=1, description="Stable across open/closed events.")
    state: str = Field(default="open", description="`open` or `closed` (test sends `OPEN`).")
    summary: str | None = Field(default=None, description="Human summary of the incident.")
    url: str | None = Field(default=None, description="Console link to the incident.")
    started_at: EpochNumber = Field(default=None, description="Epoch seconds.")
    ended_at: EpochNumber = Field(default=None, description="Epoch seconds; null while open.")
    policy_name: str | None = None
    condition_name: str | None = None
    severity: str | None = Field(default=None, description="`Error`, `Warning`, `no severity`...")
    resource: GcpLabelled | None = None
    resource_name: str | None = None
    resource_display_name: str | None = None
    resource_type_display_name: str | None = None
    resource_id: Text | None = None
    scoping_project_id: Text | None = None
    scoping_project_number: Text | None = None
    metric: GcpLabelled | None = None
    metadata: GcpMetadata | None = None
    policy_user_labels: dict[str, object] | None = None
    documentation: Annotated[GcpDocumentation | None, BeforeValidator(_documentation)] = Field(
        default=None, description="An object `{content, mime_type, subject}` or a plain string."
    )
    threshold_value: Text | None = Field(default=None, description='A string, e.g. `"0.5"`.')
    observed_value: Text | None = Field(default=None, description='A string, e.g. `"0.790"`.')


class GcpPayload(BaseModel):
    """Body of a GCP webhook notification channel."""

    model_config = ConfigDict(extra="allow")

    version: Text | None = Field(default=None, description="`1.2`, or `test` for test sends.")
    incident: GcpIncident


def parse(body: object, registry: Registry) -> list[Draft | Ignored]:
    """One draft per notification; the console's test send is ignored."""
    if isinstance(body, dict) and str(body.get("version", "")).strip().lower() == "test":
        logger.info("GCP test notification received; ignored")
        return [Ignored(incident_id="gcp:test", reason="test_notification")]
    incident = validate(GcpPayload, body).incident
    return [_draft(incident, body, registry)]


def _user_labels(incident: GcpIncident) -> dict[str, object]:
    labels = dict(incident.metadata.user_labels) if incident.metadata else {}
    return labels | (incident.policy_user_labels or {})


def _service_candidates(incident: GcpIncident) -> list[object]:
    user = {k.lower(): v for k, v in _user_labels(incident).items()}
    resource = incident.resource.labels if incident.resource else {}
    metric = incident.metric.labels if incident.metric else {}
    return [user.get("service"), *(resource.get(k) for k in SERVICE_LABELS), metric.get("service")]


def _priority(incident: GcpIncident) -> Priority:
    user = {k.lower(): v for k, v in _user_labels(incident).items()}
    found = severity_priority(incident.severity, user.get("severity"), user.get("priority"))
    return found or Priority.P3


def _summary(incident: GcpIncident) -> str:
    subject = incident.documentation.subject if incident.documentation else None
    fallback = f"GCP incident {incident.incident_id}"
    return first_text(incident.summary, subject, incident.policy_name) or fallback


def _labels(incident: GcpIncident) -> dict[str, object]:
    resource = incident.resource or GcpLabelled()
    metric = incident.metric or GcpLabelled()
    return {
        "policy_name": incident.policy_name,
        "condition_name": incident.condition_name,
        "severity": incident.severity,
        "scoping_project_id": incident.scoping_project_id,
        "resource.type": resource.type,
        **prefixed("resource.", resource.labels),
        "metric.type": metric.type,
        **prefixed("metric.", metric.labels),
        **prefixed("user.", _user_labels(incident)),
        "threshold_value": incident.threshold_value,
        "observed_value": incident.observed_value,
    }


def _draft(incident: GcpIncident, body: object, registry: Registry) -> Draft:
    closed = incident.state.strip().lower() == "closed"
    return Draft(
        key=f"gcp:{incident.incident_id}",
        summary=_summary(incident),
        state=AlertState.RESOLVED if closed else AlertState.FIRING,
        priority=_priority(incident),
        service=find_service(_service_candidates(incident), registry),
        started_at=from_epoch(incident.started_at),
        labels=_labels(incident),
        url=incident.url,
        raw=body,
        key_loc=("incident", "incident_id"),
    )
