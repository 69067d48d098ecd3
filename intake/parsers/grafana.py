"""Grafana webhook contact point -> drafts: unified alerting (one per alert) and legacy.

Unified alerting sends Alertmanager's v4 shape with `version: "1"` and extra per-alert links
and values, so it reuses `intake.parsers.alertmanager`. The "Test" button sends an alert
labelled `alertname=TestAlert, instance=Grafana`: that one is ignored. The legacy (pre-8)
format, recognised by `ruleId`/`evalMatches`, carries a single rule state.

`started_at` is each alert's `startsAt`, as for Alertmanager; Grafana writes Go's zero time
`0001-01-01T00:00:00Z` when it does not know, which is null. The legacy format carries no
start time: null.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from intake.parsers.alertmanager import (
    AmAlert,
    AmPayload,
    absolute_url,
    group_drafts,
)
from intake.parsers.common import (
    Draft,
    Ignored,
    Registry,
    Text,
    find_service,
    first_text,
    severity_priority,
    validate,
)
from models import AlertState, Priority

logger = logging.getLogger(__name__)

LEGACY_STATES = {"alerting": AlertState.FIRING, "no_data": AlertState.FIRING}


class GrafanaAlert(AmAlert):
    """One unified-alerting alert: Alertmanager's fields plus Grafana's links and values."""

    silence_url: str | None = Field(default=None, alias="silenceURL")
    dashboard_url: str | None = Field(default=None, alias="dashboardURL")
    panel_url: str | None = Field(default=None, alias="panelURL")
    image_url: str | None = Field(default=None, alias="imageURL")
    values: dict[str, object] | None = Field(default=None, description="Query results by refId.")
    value_string: str | None = Field(default=None, alias="valueString")
    org_id: int | None = Field(default=None, alias="orgId")


class GrafanaPayload(AmPayload):
    """Unified alerting notification. `title`/`state`/`message` are deprecated group fields."""

    alerts: Sequence[GrafanaAlert] = Field(description="The alerts of the group.")
    org_id: int | None = Field(default=None, alias="orgId")
    title: str | None = None
    state: str | None = Field(default=None, description="`alerting` or `ok` (deprecated).")
    message: str | None = None


class GrafanaLegacy(BaseModel):
    """Legacy (pre-unified) Grafana alert notification: one rule, one state."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    rule_id: Text = Field(alias="ruleId", description="Stable id of the alert rule.")
    rule_name: str | None = Field(default=None, alias="ruleName")
    rule_url: str | None = Field(default=None, alias="ruleUrl")
    state: str = Field(description="`alerting`, `ok`, `no_data`, `paused` or `pending`.")
    title: str | None = None
    message: str | None = None
    org_id: int | None = Field(default=None, alias="orgId")
    tags: dict[str, object] = Field(default_factory=dict, description="Rule tags.")
    eval_matches: list[dict[str, object]] = Field(default_factory=list, alias="evalMatches")


def parse(body: object, registry: Registry) -> list[Draft | Ignored]:
    """Unified alerting: one result per alert; legacy: one result."""
    if isinstance(body, dict) and "alerts" not in body and {"ruleId", "evalMatches"} & set(body):
        return [_legacy(validate(GrafanaLegacy, body), body, registry)]
    payload = validate(GrafanaPayload, body)
    drafts = group_drafts("grafana", payload, body, registry, url=_url)
    return [_unless_test(draft, alert) for draft, alert in zip(drafts, payload.alerts, strict=True)]


def is_test_alert(alert: AmAlert) -> bool:
    """Grafana's "Test" button labels its fake alert `alertname=TestAlert, instance=Grafana`."""
    labels = {k: str(v).lower() for k, v in alert.labels.items()}
    return labels.get("alertname") == "testalert" and labels.get("instance") == "grafana"


def _unless_test(draft: Draft, alert: AmAlert) -> Draft | Ignored:
    if not is_test_alert(alert):
        return draft
    logger.info("Grafana test notification received; ignored")
    service = draft.service.name if draft.service else None
    return Ignored(draft.key, "test_notification", service, key_loc=draft.key_loc)


def _url(payload: AmPayload, alert: AmAlert) -> str | None:
    links = [alert.generator_url]
    if isinstance(alert, GrafanaAlert):
        links += [alert.panel_url, alert.dashboard_url]
    return next((u for u in map(absolute_url, links) if u), absolute_url(payload.external_url))


def _legacy(rule: GrafanaLegacy, body: object, registry: Registry) -> Draft | Ignored:
    key = f"grafana:rule-{rule.rule_id}"
    state = rule.state.strip().lower()
    if rule.rule_id == "0" and (rule.rule_name or "").lower() == "test notification":
        return Ignored(key, "test_notification", key_loc=("ruleId",))
    if state not in LEGACY_STATES and state != "ok":
        return Ignored(key, "not_an_alarm", key_loc=("ruleId",))
    priority = severity_priority(rule.tags.get("severity")) or Priority.P3
    return Draft(
        key=key,
        summary=first_text(rule.title, rule.rule_name, rule.message) or "Grafana alert",
        state=LEGACY_STATES.get(state, AlertState.RESOLVED),
        priority=Priority.P4 if state == "no_data" else priority,
        service=find_service([rule.tags.get("service"), rule.tags.get("job")], registry),
        labels={"rule_name": rule.rule_name, "state": state, **rule.tags},
        url=absolute_url(rule.rule_url),
        raw=body,
        key_loc=("ruleId",),
    )
