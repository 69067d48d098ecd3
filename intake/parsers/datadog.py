"""Datadog webhook -> one draft. The payload is whatever template the user wrote.

Every field is optional and every `$VARIABLE` renders as a string. Identity never uses the
per-event `id` nor the raw title (both change between Triggered and Recovered). In order:
`aggreg_key`, `alert_cycle_key`, then monitor id (`monitor_id`/`alert_id`, or read from a
`/monitors/<id>` link in the body) plus its scope (`scopes`, or the `group=` of that link, or
the `{group}` of the title); as a last resort the title without its `[...]` state prefixes.

Required: an event title, `title` (`$EVENT_TITLE`, in the default template and every known
custom one: Keep, Port, ...) or `alert_title` (`$ALERT_TITLE`). Nothing else is common to
all templates; without a title a JSON object says nothing about an alert.

`started_at` is the start of the monitor's alert cycle: the time its group went from OK to
a non-OK state. Datadog documents it as the monitor template variable
`{{first_triggered_at_epoch}}` (epoch ms; `{{first_triggered_at}}` is the same as a UTC
date), which keeps its value on renotifications and on the recovery of that cycle. None of
the webhook `$VARIABLES` carries it; when a payload does, the first of these keys that holds
a time is read, as epoch ms or an ISO-8601 date (a trailing ` UTC` allowed):
`first_triggered_at_epoch`, `first_triggered_at`, `alert_cycle_start`.
Without one, `started_at` is null: `date` (`$DATE`) and `last_updated` (`$LAST_UPDATED`) are
when this notification was sent, later on each renotify, so they would make every renotify
look like a re-fire; and `alert_cycle_key` (`$ALERT_CYCLE_KEY`) names the cycle without
dating it.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Annotated
from urllib.parse import unquote

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from config import ServiceEntry
from intake.parsers.common import (
    Draft,
    Ignored,
    PayloadError,
    Registry,
    Text,
    find_service,
    first_text,
    from_epoch,
    from_iso,
    severity_priority,
    stable_hash,
    validate,
)
from models import AlertState, Priority

logger = logging.getLogger(__name__)

MONITOR_LINK = re.compile(r"/monitors[/#](\d+)(?:[^\s)\]]*?[?&]group=([^&\s)\]]+))?")
TITLE_GROUP = re.compile(r"^\[[^\]]*?\bon \{([^}]*)\}\]")
TITLE_PRIORITY = re.compile(r"\[(P[1-5])\]", re.IGNORECASE)
TITLE_PREFIXES = re.compile(r"^(\s*\[[^\]]*\])+\s*")
P_FORM = re.compile(r"\s*P[1-5]\s*", re.IGNORECASE)
TEST_MARK = re.compile(r"\[TEST\]", re.IGNORECASE)
RESOLVED_TRANSITIONS = {"recovered", "resolved"}
LINK_FIELDS = ("body", "link", "url", "message")
MISSING_TITLE = "Field required: a Datadog notification carries its title ($EVENT_TITLE)"
CYCLE_START_FIELDS = ("first_triggered_at_epoch", "first_triggered_at", "alert_cycle_start")


def split_tags(tags: object) -> object:
    """Tags from a list or from one comma-joined string, blanks dropped."""
    if tags is None:
        return []
    items = tags.split(",") if isinstance(tags, str) else tags
    if not isinstance(items, list):
        return items  # left for pydantic to reject with the field's path
    stripped = (t.strip() if isinstance(t, str) else t for t in items)
    return [t for t in stripped if t != ""]


TagList = Annotated[list[Text], BeforeValidator(split_tags)]


class DatadogPayload(BaseModel):
    """Fields of the default template and of common custom templates (Keep, Port...)."""

    model_config = ConfigDict(extra="allow")

    id: Text | None = Field(default=None, description="`$ID`: per event, never for identity.")
    title: Text | None = Field(default=None, description="`$EVENT_TITLE`, `[Triggered] ...`.")
    body: Text | None = Field(default=None, description="`$EVENT_MSG`, markdown in `%%%`.")
    message: Text | None = Field(default=None, description="`$TEXT_ONLY_MSG` (custom).")
    event_type: Text | None = Field(default=None, description="`$EVENT_TYPE`.")
    date: Text | None = Field(
        default=None, description="`$DATE`: epoch ms of this notification, not of the cycle."
    )
    last_updated: Text | None = Field(default=None, description="`$LAST_UPDATED`: epoch ms.")
    first_triggered_at_epoch: Text | None = Field(
        default=None, description="`{{first_triggered_at_epoch}}`: the cycle's start, epoch ms."
    )
    first_triggered_at: Text | None = Field(
        default=None, description="`{{first_triggered_at}}`: the cycle's start, a UTC date."
    )
    alert_cycle_start: Text | None = Field(
        default=None, description="The cycle's start under a plain name: epoch ms or ISO-8601."
    )
    alert_transition: Text | None = Field(default=None, description="Triggered/Warn/Recovered.")
    alert_type: Text | None = Field(default=None, description="error/warning/success/info.")
    alert_title: Text | None = Field(default=None, description="`$ALERT_TITLE`.")
    alert_status: Text | None = Field(default=None, description="`$ALERT_STATUS`.")
    alert_id: Text | None = Field(default=None, description="`$ALERT_ID`: the monitor id.")
    monitor_id: Text | None = Field(default=None, description="`$ALERT_ID` under Keep's name.")
    aggreg_key: Text | None = Field(default=None, description="`$AGGREG_KEY`.")
    alert_cycle_key: Text | None = Field(default=None, description="`$ALERT_CYCLE_KEY`.")
    scopes: Text | None = Field(default=None, description="`$ALERT_SCOPE`: `tag:value,...`.")
    severity: Text | None = Field(default=None, description="`$ALERT_PRIORITY`: P1..P5 or ''.")
    alert_priority: Text | None = Field(default=None, description="`$ALERT_PRIORITY`.")
    priority: Text | None = Field(default=None, description="`$PRIORITY` (normal/low) or P1..P5.")
    service: Text | None = Field(default=None, description="Explicit service name.")
    hostname: Text | None = Field(default=None, description="`$HOSTNAME`.")
    tags: TagList = Field(default_factory=list, description="A list, or one comma-joined string.")
    event_tags: TagList = Field(default_factory=list, description="`$TAGS` (custom name).")
    url: Text | None = Field(default=None, description="`$LINK`.")
    link: Text | None = Field(default=None, description="`$LINK` (custom).")
    event_url: Text | None = Field(default=None, description="`$LINK` (Port).")
    org: dict[str, object] | None = Field(default=None, description="`{id, name}`.")


def parse(body: object, registry: Registry) -> list[Draft | Ignored]:
    """One draft per notification; `[TEST]` notifications are ignored."""
    payload = validate(DatadogPayload, body)
    if not first_text(payload.title, payload.alert_title):
        raise PayloadError.at(("title",), MISSING_TITLE, "missing")
    key, field = identity(payload)
    service = find_service(_service_candidates(payload), registry)
    if any(TEST_MARK.search(t or "") for t in (payload.title, payload.alert_title)):
        logger.info("Datadog test notification received; ignored")
        name = service.name if service else None
        return [Ignored(f"datadog:{key}", "test_notification", name, key_loc=(field,))]
    return [_draft(payload, f"datadog:{key}", service, body, key_loc=(field,))]


def _all_tags(payload: DatadogPayload) -> list[str]:
    return [*_scopes(payload), *payload.tags, *payload.event_tags]


def _scopes(payload: DatadogPayload) -> list[str]:
    return [s.strip() for s in (payload.scopes or "").split(",") if s.strip()]


def _tag_values(tags: list[str], name: str) -> list[str]:
    return [t.split(":", 1)[1] for t in tags if t.lower().startswith(f"{name}:")]


def _monitor_link(payload: DatadogPayload) -> tuple[str | None, str | None, str]:
    """The monitor id and group of a `/monitors/<id>` link, and the field holding it."""
    for name in LINK_FIELDS:
        text = getattr(payload, name)
        if text and (found := MONITOR_LINK.search(text)):
            return found.group(1), unquote(found.group(2)) if found.group(2) else None, name
    return None, None, ""


def _scope(
    payload: DatadogPayload, linked_group: str | None, link_field: str
) -> tuple[str | None, str]:
    if scopes := _scopes(payload):
        return ",".join(sorted(scopes)), "scopes"
    if linked_group:
        return linked_group, link_field
    title_group = TITLE_GROUP.search(payload.title or "")
    return (title_group.group(1).strip(), "title") if title_group else (None, "")


def identity(payload: DatadogPayload) -> tuple[str, str]:
    """The stable part of the incident id (see the module docstring for the order), and
    the body field that made it (the longer part's, for a monitor plus its scope)."""
    for name in ("aggreg_key", "alert_cycle_key"):
        if key := first_text(getattr(payload, name)):
            return key.strip(), name
    linked_id, linked_group, link_field = _monitor_link(payload)
    monitors = [("monitor_id", payload.monitor_id), ("alert_id", payload.alert_id)]
    for field, value in [*monitors, (link_field, linked_id)]:
        if monitor := first_text(value):
            scope, scope_field = _scope(payload, linked_group, link_field)
            if scope is None:
                return monitor.strip(), field
            longer = scope_field if len(scope) > len(monitor) else field
            return f"{monitor.strip()}/{scope}", longer
    title = TITLE_PREFIXES.sub("", payload.title or payload.alert_title or "").strip()
    return f"title-{stable_hash(title or payload.model_dump(mode='json'))}", "title"


def _service_candidates(payload: DatadogPayload) -> list[str | None]:
    tags = _all_tags(payload)
    hosts = [payload.hostname, *_tag_values(tags, "host")]
    return [payload.service, *_tag_values(tags, "service"), *hosts]


def _resolved(payload: DatadogPayload) -> bool:
    transition = (payload.alert_transition or "").strip().lower()
    if transition:
        return transition in RESOLVED_TRANSITIONS
    title = (payload.title or "").lstrip().lower()
    return (payload.alert_type or "").lower() == "success" or title.startswith("[recovered")


def _priority(payload: DatadogPayload) -> Priority:
    """`$ALERT_PRIORITY`, a P-form `priority`, a `[Pn]` in the title, then `alert_type`."""
    event_priority = payload.priority if P_FORM.fullmatch(payload.priority or "") else None
    in_title = TITLE_PRIORITY.search(payload.title or "")
    explicit = severity_priority(payload.severity, payload.alert_priority, event_priority)
    title_priority = severity_priority(in_title.group(1)) if in_title else None
    return explicit or title_priority or severity_priority(payload.alert_type) or Priority.P3


def _labels(payload: DatadogPayload) -> dict[str, object]:
    labels: dict[str, object] = {
        "event_type": payload.event_type,
        "alert_type": payload.alert_type,
        "alert_transition": payload.alert_transition,
        "monitor_id": payload.monitor_id or payload.alert_id,
        "scope": payload.scopes,
    }
    for tag in _all_tags(payload):
        name, _, value = tag.partition(":")
        previous = labels.get(name)
        labels[name] = f"{previous},{value}" if isinstance(previous, str) and previous else value
    return labels


def _cycle_start(payload: DatadogPayload) -> datetime | None:
    """When the alert cycle began (see the module docstring), else None."""
    for name in CYCLE_START_FIELDS:
        value = getattr(payload, name)
        if moment := from_epoch(value, millis=True) or from_iso(value):
            return moment
    return None


def _draft(
    payload: DatadogPayload,
    key: str,
    service: ServiceEntry | None,
    body: object,
    *,
    key_loc: tuple[str, ...],
) -> Draft:
    summary = first_text(payload.title, payload.alert_title, payload.message, payload.body)
    return Draft(
        key=key,
        summary=summary or "Datadog alert",
        state=AlertState.RESOLVED if _resolved(payload) else AlertState.FIRING,
        priority=_priority(payload),
        service=service,
        started_at=_cycle_start(payload),
        labels=_labels(payload),
        url=first_text(payload.url, payload.link, payload.event_url),
        raw=body,
        key_loc=key_loc,
    )
