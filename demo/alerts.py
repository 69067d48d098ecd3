"""The alerts the demo fires: GCP Cloud Monitoring notifications, incident schema 1.2.

Shaped like a real capture (tests/data/gcp/metric-threshold-open-v1.2-cloudforet.json),
for a Cloud Run service: `resource.type = cloud_run_revision` with a `service_name` label,
which is how the runtime maps the alert to a registered service.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

PROJECT = "acme-shop-prod"


@dataclass(frozen=True, slots=True)
class Threshold:
    """What a policy watches and what it saw."""

    service: str
    policy: str
    condition: str
    metric_type: str
    metric_name: str
    threshold: float
    observed: float
    severity: str


def new_incident_id() -> str:
    """An id like GCP's (`0.mtdi83m6w8ao`), new each run."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "0." + "".join(secrets.choice(alphabet) for _ in range(12))


def gcp_incident(watch: Threshold, *, incident_id: str) -> dict[str, Any]:
    """An `open` incident notification (schema 1.2) for `watch`."""
    labels = {
        "project_id": PROJECT,
        "service_name": watch.service,
        "revision_name": f"{watch.service}-00042-vex",
        "location": "europe-west1",
    }
    return {
        "version": "1.2",
        "incident": {
            "incident_id": incident_id,
            "scoping_project_id": PROJECT,
            "scoping_project_number": 286919713412,
            "url": f"https://console.cloud.google.com/monitoring/alerting/incidents/{incident_id}"
            f"?project={PROJECT}",
            "started_at": int(time.time()) - 120,
            "ended_at": None,
            "state": "open",
            "severity": watch.severity,
            "summary": _summary(watch),
            "observed_value": f"{watch.observed:.3f}",
            "resource": {"type": "cloud_run_revision", "labels": labels},
            "resource_id": "",
            "resource_name": f"{PROJECT} Cloud Run Revision {{service_name={watch.service}}}",
            "resource_type_display_name": "Cloud Run Revision",
            "metric": {
                "type": watch.metric_type,
                "displayName": watch.metric_name,
                "labels": {"response_code_class": "5xx"} if "count" in watch.metric_type else {},
            },
            "metadata": {"system_labels": {}, "user_labels": {"team": "shop"}},
            "policy_name": watch.policy,
            "condition_name": watch.condition,
            "threshold_value": f"{watch.threshold:g}",
            "condition": _condition(watch),
            "documentation": {
                "content": f"Runbook: https://runbooks.example.com/{watch.service}",
                "mime_type": "text/markdown",
                "subject": f"[ALERT] {watch.policy}",
            },
        },
    }


def _summary(watch: Threshold) -> str:
    return (
        f"{watch.metric_name} for {PROJECT} Cloud Run Revision labels "
        f"{{service_name={watch.service}}} is above the threshold of {watch.threshold:.3f} "
        f"with a value of {watch.observed:.3f}."
    )


def _condition(watch: Threshold) -> dict[str, Any]:
    return {
        "name": f"projects/{PROJECT}/alertPolicies/1098849147229186/conditions/3299346489559",
        "displayName": watch.condition,
        "conditionThreshold": {
            "filter": f'resource.type = "cloud_run_revision" AND '
            f'resource.labels.service_name = "{watch.service}" AND '
            f'metric.type = "{watch.metric_type}"',
            "comparison": "COMPARISON_GT",
            "thresholdValue": watch.threshold,
            "duration": "60s",
            "trigger": {"count": 1},
        },
    }


def checkout_latency(p99_ms: float) -> Threshold:
    return Threshold(
        service="checkout",
        policy="checkout - request latency p99",
        condition="Cloud Run Revision - Request Latencies p99 above 1000 ms",
        metric_type="run.googleapis.com/request_latencies",
        metric_name="Request Latencies",
        threshold=1000.0,
        observed=p99_ms,
        severity="Warning",
    )


def payments_errors(error_ratio: float) -> Threshold:
    return Threshold(
        service="payments",
        policy="payments - 5xx ratio",
        condition="Cloud Run Revision - 5xx ratio above 5%",
        metric_type="run.googleapis.com/request_count",
        metric_name="5xx request ratio",
        threshold=0.05,
        observed=error_ratio,
        severity="Critical",
    )


def alertmanager_storm(first: int, count: int, *, job: str) -> dict[str, Any]:
    """One Alertmanager webhook (v4) carrying `count` firing alerts for `job`, each its own
    incident (`fingerprint` = `first`.. as 8 hex digits): an alert storm in one request."""
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": f"Storm{n}", "job": job, "severity": "warning"},
            "annotations": {"summary": f"storm alert {n}"},
            "startsAt": "2026-11-30T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": f"{n:08x}",
        }
        for n in range(first, first + count)
    ]
    return {
        "version": "4",
        "groupKey": '{}:{alertname=~"Storm.*"}',
        "status": "firing",
        "receiver": "sre-agent",
        "groupLabels": {},
        "commonLabels": {"job": job},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.local:9093",
        "truncatedAlerts": 0,
        "alerts": alerts,
    }
