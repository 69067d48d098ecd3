"""New Relic webhooks -> one draft: workflow (default payload) and legacy alert-policy channel.

The two are told apart by key: `current_state`/`incident_id` means legacy, anything else is
read as a workflow payload. Workflow identity is the issue id: the UUID in `issueUrl`
(`.../issues/<uuid>`) when present, else `id`; both are `{{issueId}}` in the default
template, and the URL survives template edits that drop or rename `id`. Legacy identity is
`incident_id`. A legacy channel test (`current_state: test`, or `event_type: NOTIFICATION`)
is ignored.

`started_at` is the issue's creation, `createdAt` (`{{createdAt}}`, epoch ms): the same on
the CREATED, ACTIVATED, acknowledgement and CLOSED notifications of one issue. A legacy
payload carries no opening time: its `timestamp` (`$TIMESTAMP`) is when this event
(open, acknowledged, closed) happened, so `started_at` is null there; a legacy re-fire opens
a new incident, with a new `incident_id`, anyway.
"""

from __future__ import annotations

import logging
import re
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
    severity_priority,
    validate,
)
from models import AlertState, Priority

logger = logging.getLogger(__name__)

ISSUE_IN_URL = re.compile(r"/issues/([0-9A-Za-z-]+)")
CLOSED_STATES = {"closed", "resolved"}


class NewRelicWorkflow(BaseModel):
    """Workflow webhook, default template (Keep's renamed fields accepted too)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: Text = Field(description="`{{issueId}}`: stable across CREATED/ACTIVATED/CLOSED.")
    issue_url: str | None = Field(default=None, alias="issueUrl", description="Issue page.")
    title: str | None = Field(default=None, description="Issue title (Keep: `name`).")
    name: str | None = None
    priority: str | None = Field(default=None, description="CRITICAL/HIGH/MEDIUM/LOW.")
    severity: str | None = Field(default=None, description="`priority` under Keep's name.")
    state: str | None = Field(default=None, description="CREATED/ACTIVATED/CLOSED.")
    status: str | None = Field(default=None, description="`state` under Keep's name.")
    trigger: str | None = Field(default=None, description="INCIDENT_ADDED, USER_ACTION...")
    impacted_entities: list[Text] = Field(default_factory=list, alias="impactedEntities")
    total_incidents: int | None = Field(default=None, alias="totalIncidents")
    created_at: EpochNumber = Field(
        default=None, alias="createdAt", description="The issue's creation, epoch ms."
    )
    updated_at: EpochNumber = Field(default=None, alias="updatedAt")
    policy_names: list[Text] = Field(default_factory=list, alias="alertPolicyNames")
    condition_names: list[Text] = Field(default_factory=list, alias="alertConditionNames")
    workflow_name: str | None = Field(default=None, alias="workflowName")


class NewRelicTarget(BaseModel):
    """One target (entity) of a legacy incident."""

    model_config = ConfigDict(extra="allow")

    id: Text | None = None
    name: str | None = None
    type: str | None = None
    product: str | None = None
    link: str | None = None
    labels: dict[str, object] = Field(default_factory=dict)


def _targets_list(value: object) -> object:
    return [] if value is None or isinstance(value, str) else value


class NewRelicLegacy(BaseModel):
    """Legacy alert-policy channel webhook (`$VARIABLE` template)."""

    model_config = ConfigDict(extra="allow")

    incident_id: Text = Field(description="Stable per incident (an int in real payloads).")
    current_state: str | None = Field(default=None, description="open/acknowledged/closed/test.")
    event_type: str | None = Field(default=None, description="INCIDENT, or NOTIFICATION (test).")
    severity: str | None = Field(default=None, description="CRITICAL/WARNING/INFO.")
    details: str | None = None
    condition_name: str | None = None
    policy_name: str | None = None
    incident_url: str | None = None
    timestamp: EpochNumber = Field(
        default=None, description="Epoch ms of this event, not of the incident's opening."
    )
    account_id: Text | None = None
    targets: Annotated[list[NewRelicTarget], BeforeValidator(_targets_list)] = Field(
        default_factory=list, description="Entities (a raw `$TARGETS` string reads as none)."
    )


def parse(body: object, registry: Registry) -> list[Draft | Ignored]:
    """One result per notification."""
    if isinstance(body, dict) and {"current_state", "incident_id"} & set(body):
        return [_legacy(validate(NewRelicLegacy, body), body, registry)]
    return [_workflow(validate(NewRelicWorkflow, body), body, registry)]


def issue_id(payload: NewRelicWorkflow) -> tuple[str, str]:
    """The issue UUID from `issueUrl`, else `id`; and the body field it came from."""
    found = ISSUE_IN_URL.search(payload.issue_url or "")
    return (found.group(1), "issueUrl") if found else (payload.id.strip(), "id")


def _workflow(payload: NewRelicWorkflow, body: object, registry: Registry) -> Draft:
    state = first_text(payload.state, payload.status) or ""
    priority = severity_priority(payload.priority, payload.severity) or Priority.P3
    labels = {
        "state": state,
        "trigger": payload.trigger,
        "priority": payload.priority or payload.severity,
        "entities": ",".join(payload.impacted_entities),
        "policies": ",".join(payload.policy_names),
        "conditions": ",".join(payload.condition_names),
        "workflow": payload.workflow_name,
    }
    issue, field = issue_id(payload)
    return Draft(
        key=f"newrelic:{issue}",
        summary=first_text(payload.title, payload.name) or "New Relic issue",
        state=AlertState.RESOLVED if state.lower() in CLOSED_STATES else AlertState.FIRING,
        priority=priority,
        service=find_service(payload.impacted_entities, registry),
        started_at=from_epoch(payload.created_at, millis=True),
        labels=labels,
        url=payload.issue_url,
        raw=body,
        key_loc=(field,),
    )


def _legacy_service_candidates(payload: NewRelicLegacy) -> list[object]:
    targets = payload.targets
    return [*(t.labels.get("service") for t in targets), *(t.name for t in targets)]


def _legacy_summary(payload: NewRelicLegacy) -> str:
    parts = [p for p in (payload.condition_name, payload.details) if p and p.strip()]
    return ": ".join(parts) or payload.policy_name or "New Relic incident"


def _legacy(payload: NewRelicLegacy, body: object, registry: Registry) -> Draft | Ignored:
    key = f"newrelic:{payload.incident_id.strip()}"
    state = (payload.current_state or "").strip().lower()
    service = find_service(_legacy_service_candidates(payload), registry)
    if state == "test" or (payload.event_type or "").upper() == "NOTIFICATION":
        logger.info("New Relic test notification received; ignored")
        name = service.name if service else None
        return Ignored(key, "test_notification", name, key_loc=("incident_id",))
    return Draft(
        key=key,
        summary=_legacy_summary(payload),
        state=AlertState.RESOLVED if state in CLOSED_STATES else AlertState.FIRING,
        priority=severity_priority(payload.severity) or Priority.P3,
        service=service,
        labels=_legacy_labels(payload),
        url=payload.incident_url,
        raw=body,
        key_loc=("incident_id",),
    )


def _legacy_labels(payload: NewRelicLegacy) -> dict[str, object]:
    return {
        "state": payload.current_state,
        "severity": payload.severity,
        "policy_name": payload.policy_name,
        "condition_name": payload.condition_name,
        "account_id": payload.account_id,
        "targets": ",".join(t.name for t in payload.targets if t.name),
    }
