"""The cloud tools on Google Cloud (CLOUD_PROVIDER=gcp): Cloud Logging and Cloud Monitoring.

`query_cloud_logs` is one `entries:list` call (newest first, at most 200 entries) whose
filter is built here, never taken from the model: the Cloud Run service's resource, the
window, an optional minimum severity, and the model's `query` as one quoted, escaped text
search (so `query` can never add filter syntax). `query_cloud_metrics` is one
`timeSeries.list` call for `metric.type` on the service, aligned so each series has at most
30 points. Both go through the runtime's shared httpx client with a bearer token from
`GoogleTokenSource`, and both return compacted summaries (tools.cloud_compact).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote as quote_path

import httpx

from config import Settings
from tools.arguments import QueryLogsArgs, QueryMetricsArgs
from tools.cloud_compact import LogRecord, Series, compact_logs, compact_metrics
from tools.cloud_http import Api, CloudError, CloudQueries, dumps_compact, request_json, utcnow
from tools.gcp_auth import CredentialsError, GoogleTokenSource

if TYPE_CHECKING:
    pass

_CREDENTIALS_FIX = (
    "check the runtime's Google credentials (GOOGLE_APPLICATION_CREDENTIALS or the Cloud Run "
    "service account)"
)
LOGGING = Api(
    name="Cloud Logging",
    permission_fix="grant roles/logging.viewer to the runtime's service account",
    not_found_fix="check GCP_PROJECT_ID",
    credentials_fix=_CREDENTIALS_FIX,
    bad_request_fix="the log filter was rejected: simplify `query` or `severity`",
)
MONITORING = Api(
    name="Cloud Monitoring",
    permission_fix="grant roles/monitoring.viewer to the runtime's service account",
    not_found_fix="check GCP_PROJECT_ID and metric_type",
    credentials_fix=_CREDENTIALS_FIX,
    bad_request_fix=(
        "check metric_type (e.g. run.googleapis.com/request_latencies) and that the "
        "aggregation suits the metric (rate/sum/delta need counters, p99/p95/p50 need "
        "distributions)"
    ),
)

MAX_LOG_PAGE = 200
MAX_SERIES_POINTS = 30
METRIC_PAGE_SIZE = 1000  # points per page (view FULL): ~33 series of 30 points
METRIC_TYPE = re.compile(r"^[A-Za-z0-9_./-]+$")
ALIGNERS = {
    "mean": "ALIGN_MEAN",
    "max": "ALIGN_MAX",
    "min": "ALIGN_MIN",
    "sum": "ALIGN_SUM",
    "count": "ALIGN_COUNT",
    "delta": "ALIGN_DELTA",
    "rate": "ALIGN_RATE",
    "p99": "ALIGN_PERCENTILE_99",
    "p95": "ALIGN_PERCENTILE_95",
    "p50": "ALIGN_PERCENTILE_50",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def quote(value: str) -> str:
    """`value` as one string literal of the Logging/Monitoring filter languages.

    Backslashes and double quotes are escaped and control characters become spaces, so
    the literal always ends where this function ends it: nothing inside can close it.
    """
    text = _CONTROL.sub(" ", value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def log_filter(args: QueryLogsArgs, start: datetime) -> str:
    """The Cloud Logging filter for a Cloud Run service (see the module docstring)."""
    parts = [
        'resource.type="cloud_run_revision"',
        f"resource.labels.service_name={quote(args.service)}",
        f'timestamp>="{rfc3339(start)}"',
    ]
    if args.severity:
        parts.append(f"severity>={args.severity}")  # one of a fixed set of words
    if args.query:
        parts.append(quote(args.query))  # a global text search, never filter syntax
    return " AND ".join(parts)


def metric_filter(metric_type: str, service: str) -> str:
    return f"metric.type={quote(metric_type)} AND resource.labels.service_name={quote(service)}"


def alignment_seconds(minutes: int) -> int:
    """Whole minutes, at least 60 s, so the window holds at most `MAX_SERIES_POINTS`."""
    return max(60, math.ceil(minutes / MAX_SERIES_POINTS) * 60)


def aligner_for(aggregation: str | None) -> str:
    """The `perSeriesAligner` for the tool's `aggregation`; `CloudError` when unknown."""
    name = (aggregation or "mean").strip().lower()
    if name.upper() in ALIGNERS.values():
        return name.upper()
    if name not in ALIGNERS:
        choices = ", ".join(ALIGNERS)
        raise CloudError(f"unknown aggregation {aggregation!r}: use one of {choices}")
    return ALIGNERS[name]


def check_metric_type(metric_type: str) -> str:
    value = metric_type.strip()
    if not METRIC_TYPE.match(value):
        raise CloudError(
            "metric_type must be a metric type such as run.googleapis.com/request_count "
            "(letters, digits, '_', '.', '/', '-')"
        )
    return value


# ---------------------------------------------------------------- response parsing


def log_record(entry: dict[str, Any]) -> LogRecord:
    timestamp = entry.get("timestamp") or entry.get("receiveTimestamp") or ""
    severity = entry.get("severity") or "DEFAULT"
    return LogRecord(str(timestamp), str(severity), entry_message(entry))


def entry_message(entry: dict[str, Any]) -> str:
    """The human-readable line of a LogEntry, whichever payload it carries."""
    if isinstance(entry.get("textPayload"), str):
        return str(entry["textPayload"])
    for payload_key in ("jsonPayload", "protoPayload"):
        payload = entry.get(payload_key)
        if isinstance(payload, dict):
            return _payload_message(payload)
    request = entry.get("httpRequest")
    if isinstance(request, dict):
        return _request_line(request)
    return ""


def _payload_message(payload: dict[str, Any]) -> str:
    for key in ("message", "msg", "error", "err"):
        if isinstance(payload.get(key), str):
            return str(payload[key])
    status = payload.get("status")
    if isinstance(status, dict) and status.get("message"):
        return f"{payload.get('methodName', '')} {status['message']}".strip()
    return dumps_compact(payload)


def _request_line(request: dict[str, Any]) -> str:
    fields = ("requestMethod", "requestUrl", "status", "latency")
    return " ".join(str(request[f]) for f in fields if request.get(f) is not None)


def time_series(raw: dict[str, Any]) -> Series:
    labels = {
        **_labels(raw.get("resource")),
        **_labels(raw.get("metric")),
    }
    labels.pop("project_id", None)
    points = [p for p in (_point(p) for p in raw.get("points") or []) if p is not None]
    return Series(labels=labels, points=sorted(points))


def _labels(node: Any) -> dict[str, str]:
    labels = node.get("labels") if isinstance(node, dict) else None
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def _point(point: Any) -> tuple[str, float] | None:
    if not isinstance(point, dict):
        return None
    interval, value = point.get("interval") or {}, point.get("value") or {}
    number = _number(value)
    end = interval.get("endTime") if isinstance(interval, dict) else None
    return (str(end), number) if end and number is not None else None


def _number(value: Any) -> float | None:
    """A TypedValue as a float: double, int64 (a JSON string), bool, or a distribution's mean."""
    if not isinstance(value, dict):
        return None
    for key in ("doubleValue", "int64Value"):
        if key in value:
            return float(value[key])
    if "boolValue" in value:
        return 1.0 if value["boolValue"] else 0.0
    distribution = value.get("distributionValue")
    if isinstance(distribution, dict):
        return float(distribution.get("mean", 0.0))
    return None


# ---------------------------------------------------------------- the tools


class GcpCloudTools(CloudQueries):
    """`CloudTools` on Cloud Logging / Cloud Monitoring for project GCP_PROJECT_ID."""

    def __init__(
        self,
        *,
        settings: Settings,
        http: httpx.AsyncClient,
        tokens: GoogleTokenSource | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        if not settings.gcp_project_id:
            raise ValueError("GcpCloudTools needs GCP_PROJECT_ID")
        self._settings = settings
        self._http = http
        self._project = settings.gcp_project_id
        self._tokens = tokens or GoogleTokenSource(timeout=settings.ops_timeout_seconds)
        self._now = now

    async def probe(self) -> tuple[bool, str]:
        """A token, then one cheap read of each API (logs.list, metricDescriptors.list)."""
        project = quote_path(self._project, safe="")
        failures: list[str] = []
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._probe(LOGGING, self._logging(f"projects/{project}/logs")))
                monitoring = self._monitoring(f"projects/{project}/metricDescriptors")
                group.create_task(self._probe(MONITORING, monitoring))
        except* CloudError as errors:
            failures = sorted({str(exc) for exc in errors.exceptions})
        if failures:
            return False, "; ".join(failures)
        return True, f"token ok; logs and metrics of project {self._project} readable"

    async def _probe(self, api: Api, url: str) -> None:
        await self._call(api, "GET", url, trace_id=None, params={"pageSize": 1})

    async def _query_logs(self, args: QueryLogsArgs, trace_id: str) -> dict[str, Any]:
        start = self._now() - timedelta(minutes=args.minutes)
        body = {
            "resourceNames": [f"projects/{self._project}"],
            "filter": log_filter(args, start),
            "orderBy": "timestamp desc",
            "pageSize": min(args.limit, MAX_LOG_PAGE),
        }
        answer = await self._call(
            LOGGING, "POST", self._logging("entries:list"), trace_id, json=body
        )
        entries = [e for e in answer.get("entries") or [] if isinstance(e, dict)]
        context: dict[str, Any] = {"provider": "gcp", "filter": body["filter"]}
        if answer.get("nextPageToken"):
            context["more"] = "more entries matched than returned: narrow query or minutes"
        records = [log_record(e) for e in entries]
        return compact_logs(records, max_chars=self._max_chars, context=context)

    async def _query_metrics(self, args: QueryMetricsArgs, trace_id: str) -> dict[str, Any]:
        metric_type, aligner = check_metric_type(args.metric_type), aligner_for(args.aggregation)
        end = self._now()
        period = alignment_seconds(args.minutes)
        params: dict[str, str | int] = {
            "filter": metric_filter(metric_type, args.service),
            "interval.startTime": rfc3339(end - timedelta(minutes=args.minutes)),
            "interval.endTime": rfc3339(end),
            "aggregation.alignmentPeriod": f"{period}s",
            "aggregation.perSeriesAligner": aligner,
            "pageSize": METRIC_PAGE_SIZE,
        }
        url = self._monitoring(f"projects/{quote_path(self._project, safe='')}/timeSeries")
        answer = await self._call(MONITORING, "GET", url, trace_id, params=params)
        raw = [s for s in answer.get("timeSeries") or [] if isinstance(s, dict)]
        context = _metric_context(params, raw, answer)
        series = [time_series(s) for s in raw]
        return compact_metrics(series, max_chars=self._max_chars, context=context)

    async def _call(
        self, api: Api, method: str, url: str, trace_id: str | None, **kwargs: Any
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {await self._token()}"}
        if trace_id:
            headers["X-Trace-Id"] = trace_id
        try:
            return await request_json(self._http, api, method, url, headers=headers, **kwargs)
        except CloudError as exc:
            if exc.details.get("status") == 401:
                self._tokens.invalidate()
            raise

    async def _token(self) -> str:
        try:
            return await self._tokens.token()
        except CredentialsError as exc:
            raise CloudError(str(exc)) from exc

    def _logging(self, path: str) -> str:
        return f"{self._settings.gcp_logging_url}/v2/{path}"

    def _monitoring(self, path: str) -> str:
        return f"{self._settings.gcp_monitoring_url}/v3/{path}"

    @property
    def _max_chars(self) -> int:
        return self._settings.tool_output_max_chars


def _metric_context(
    params: dict[str, str | int], raw: list[dict[str, Any]], answer: dict[str, Any]
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "provider": "gcp",
        "filter": params["filter"],
        "aligner": params["aggregation.perSeriesAligner"],
        "alignment_period": params["aggregation.alignmentPeriod"],
    }
    unit = answer.get("unit") or next((s["unit"] for s in raw if s.get("unit")), None)
    if unit:
        context["unit"] = unit
    if answer.get("nextPageToken"):
        context["more"] = "more series matched than returned"
    return context
