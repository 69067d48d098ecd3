"""The cloud tools on AWS (CLOUD_PROVIDER=aws): CloudWatch Logs and CloudWatch metrics.

Both APIs are called with their JSON protocols, signed with SigV4 (tools.aws_sigv4) and
sent through the runtime's shared httpx client:
- `query_cloud_logs` → Logs `FilterLogEvents` (JSON 1.1, `X-Amz-Target:
  Logs_20140328.FilterLogEvents`) on the log group `AWS_LOG_GROUP_PATTERN` names for the
  service (default `/ecs/{service}`). The model's `query` becomes quoted filter-pattern
  terms (never pattern syntax). Events come oldest first, so up to `MAX_PAGES` pages are
  read and the newest `limit` kept. CloudWatch Logs has no severity field: `severity` is
  matched against the level read from each message.
- `query_cloud_metrics` → CloudWatch `GetMetricData` (JSON 1.0, `X-Amz-Target:
  GraniteServiceVersion20100801.GetMetricData`) for `Namespace/MetricName` with dimension
  `ServiceName=<service>` (and `ClusterName=AWS_ECS_CLUSTER` in the `AWS/ECS` namespace, whose
  metrics exist only per cluster and service), a period giving at most 30 points.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from config import Settings
from tools.arguments import QueryLogsArgs, QueryMetricsArgs
from tools.aws_sigv4 import AwsCredentialsError, AwsSigner
from tools.cloud_compact import LogRecord, Series, compact_logs, compact_metrics
from tools.cloud_http import Api, CloudError, CloudQueries, request_json, utcnow

if TYPE_CHECKING:
    pass

_CREDENTIALS_FIX = "check the runtime's AWS credentials (keys, profile or IAM role)"
LOGS = Api(
    name="CloudWatch Logs",
    permission_fix="allow logs:FilterLogEvents to the runtime's IAM role",
    not_found_fix="the log group does not exist: check AWS_LOG_GROUP_PATTERN (default "
    "/ecs/{service})",
    credentials_fix=_CREDENTIALS_FIX,
    bad_request_fix="the filter pattern was rejected: simplify `query`",
)
METRICS = Api(
    name="CloudWatch",
    permission_fix="allow cloudwatch:GetMetricData to the runtime's IAM role",
    not_found_fix="check metric_type",
    credentials_fix=_CREDENTIALS_FIX,
    bad_request_fix="check metric_type (Namespace/MetricName, e.g. AWS/ECS/CPUUtilization) "
    "and aggregation",
)
LOGS_TARGET = "Logs_20140328"
LOGS_CONTENT_TYPE = "application/x-amz-json-1.1"
METRICS_TARGET = "GraniteServiceVersion20100801"
METRICS_CONTENT_TYPE = "application/x-amz-json-1.0"

MAX_PAGES = 5
PAGE_EVENTS = 1000
MAX_SERIES_POINTS = 30
DEFAULT_NAMESPACE = "AWS/ECS"
METRIC_TYPE = re.compile(r"^[A-Za-z0-9_.#:/-]+$")
STATISTICS = {
    "mean": "Average",
    "max": "Maximum",
    "min": "Minimum",
    "sum": "Sum",
    "count": "SampleCount",
    "p99": "p99",
    "p95": "p95",
    "p50": "p50",
}
SEVERITY_RANK = {
    "DEFAULT": 0,
    "DEBUG": 100,
    "INFO": 200,
    "NOTICE": 300,
    "WARNING": 400,
    "ERROR": 500,
    "CRITICAL": 600,
    "ALERT": 700,
    "EMERGENCY": 800,
}
_LEVEL_ALIASES = {"WARN": "WARNING", "ERR": "ERROR", "FATAL": "CRITICAL", "TRACE": "DEBUG"}
_LEVEL_WORD = re.compile(
    r"\b(EMERGENCY|ALERT|CRITICAL|FATAL|ERROR|ERR|WARNING|WARN|NOTICE|INFO|DEBUG|TRACE)\b"
)
_JSON_LEVEL = re.compile(r'"(?:level|severity|levelname|log\.level)"\s*:\s*"(\w+)"', re.I)
_TERM_BREAK = re.compile(r'["\\\x00-\x1f\x7f]+')


def log_group(settings: Settings, service: str) -> str:
    return settings.aws_log_group_pattern.replace("{service}", service)


def filter_pattern(query: str | None) -> str | None:
    """The model's text as quoted filter-pattern terms, all of which must match.

    Quotes, backslashes and control characters split the text into terms instead of being
    passed on, so nothing the model writes can become filter-pattern syntax.
    """
    terms = [t.strip() for t in _TERM_BREAK.split(query or "") if t.strip()]
    return " ".join(f'"{t}"' for t in terms) or None


def severity_of(message: str) -> str:
    """The level a message states (a JSON `level` field or a level word), else DEFAULT."""
    head = message[:300]
    match = _JSON_LEVEL.search(head) or _LEVEL_WORD.search(head)
    if match is None:
        return "DEFAULT"
    word = match.group(1).upper()
    word = _LEVEL_ALIASES.get(word, word)
    return word if word in SEVERITY_RANK else "DEFAULT"


def parse_metric_type(metric_type: str) -> tuple[str, str]:
    """(Namespace, MetricName) from `AWS/ECS/CPUUtilization`; a bare name means AWS/ECS."""
    value = metric_type.strip()
    if not METRIC_TYPE.match(value) or value.endswith("/"):
        raise CloudError(
            "metric_type must be Namespace/MetricName such as AWS/ECS/CPUUtilization "
            "(letters, digits, '_', '.', '#', ':', '/', '-')"
        )
    namespace, _, name = value.rpartition("/")
    return namespace or DEFAULT_NAMESPACE, name


def statistic_for(aggregation: str | None) -> str:
    name = (aggregation or "mean").strip().lower()
    if name not in STATISTICS:
        choices = ", ".join(STATISTICS)
        raise CloudError(
            f"unknown aggregation {aggregation!r} for CloudWatch: use one of {choices}"
        )
    return STATISTICS[name]


def period_seconds(minutes: int) -> int:
    return max(60, math.ceil(minutes / MAX_SERIES_POINTS) * 60)


def iso_from_epoch(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def log_record(event: dict[str, Any]) -> LogRecord:
    message = str(event.get("message") or "").strip()
    timestamp = iso_from_epoch(float(event.get("timestamp") or 0) / 1000)
    return LogRecord(timestamp, severity_of(message), message)


def metric_series(result: dict[str, Any], labels: dict[str, str]) -> Series:
    stamps, values = result.get("Timestamps") or [], result.get("Values") or []
    points = sorted(
        (iso_from_epoch(float(t)), float(v)) for t, v in zip(stamps, values, strict=False)
    )
    label = result.get("Label")
    return Series(labels={**labels, **({"label": str(label)} if label else {})}, points=points)


def _endpoint(configured: str | None, prefix: str, region: str) -> str:
    if configured:
        return configured
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{prefix}.{region}.{suffix}"


class AwsCloudTools(CloudQueries):
    """`CloudTools` on CloudWatch Logs / CloudWatch in AWS_REGION."""

    def __init__(
        self,
        *,
        settings: Settings,
        http: httpx.AsyncClient,
        signer: AwsSigner | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        if not settings.aws_region:
            raise ValueError("AwsCloudTools needs AWS_REGION")
        self._settings = settings
        self._http = http
        self._region = settings.aws_region
        self._signer = signer or AwsSigner(region=settings.aws_region)
        self._logs_url = _endpoint(settings.aws_endpoint_url_logs, "logs", self._region)
        self._metrics_url = _endpoint(
            settings.aws_endpoint_url_monitoring, "monitoring", self._region
        )
        self._now = now

    async def probe(self) -> tuple[bool, str]:
        """Credentials, then one cheap read: DescribeLogGroups with limit 1."""
        try:
            await self._logs("DescribeLogGroups", {"limit": 1}, trace_id=None)
        except CloudError as exc:
            return False, exc.message
        return True, f"credentials ok; CloudWatch Logs readable in {self._region}"

    async def _query_logs(self, args: QueryLogsArgs, trace_id: str) -> dict[str, Any]:
        end = self._now()
        payload: dict[str, Any] = {
            "logGroupName": log_group(self._settings, args.service),
            "startTime": int((end - timedelta(minutes=args.minutes)).timestamp() * 1000),
            "endTime": int(end.timestamp() * 1000),
            "limit": PAGE_EVENTS,
        }
        pattern = filter_pattern(args.query)
        if pattern:
            payload["filterPattern"] = pattern
        records, more = await self._newest_events(payload, args, trace_id)
        context = _logs_context(payload, args, more)
        return compact_logs(records, max_chars=self._max_chars, context=context)

    async def _newest_events(
        self, payload: dict[str, Any], args: QueryLogsArgs, trace_id: str
    ) -> tuple[list[LogRecord], bool]:
        """The newest `args.limit` matching events, and whether pages were left unread."""
        kept: deque[LogRecord] = deque(maxlen=args.limit)
        token: str | None = None
        for _ in range(MAX_PAGES):
            page = await self._logs("FilterLogEvents", _with_token(payload, token), trace_id)
            events = [log_record(e) for e in page.get("events") or [] if isinstance(e, dict)]
            kept.extend(e for e in events if _at_least(e.severity, args.severity))
            token = page.get("nextToken")
            if not token:
                return list(kept), False
        return list(kept), True

    async def _query_metrics(self, args: QueryMetricsArgs, trace_id: str) -> dict[str, Any]:
        namespace, name = parse_metric_type(args.metric_type)
        stat, period = statistic_for(args.aggregation), period_seconds(args.minutes)
        end = self._now()
        labels = {"namespace": namespace, "metric": name}
        if namespace == "AWS/ECS" and self._settings.aws_ecs_cluster:
            labels["ClusterName"] = self._settings.aws_ecs_cluster
        labels["ServiceName"] = args.service
        dimensions = [
            {"Name": key, "Value": labels[key]}
            for key in ("ClusterName", "ServiceName")
            if key in labels
        ]
        query = {
            "Id": "m0",
            "MetricStat": {
                "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": dimensions},
                "Period": period,
                "Stat": stat,
            },
            "ReturnData": True,
        }
        payload = {
            "MetricDataQueries": [query],
            "StartTime": int((end - timedelta(minutes=args.minutes)).timestamp()),
            "EndTime": int(end.timestamp()),
            "ScanBy": "TimestampAscending",
            "MaxDatapoints": 1000,
        }
        answer = await self._metrics("GetMetricData", payload, trace_id)
        results = [r for r in answer.get("MetricDataResults") or [] if isinstance(r, dict)]
        context = _metrics_context(labels, stat, period, results, answer)
        series = [metric_series(r, labels) for r in results]
        return compact_metrics(series, max_chars=self._max_chars, context=context)

    async def _logs(
        self, action: str, payload: dict[str, Any], trace_id: str | None
    ) -> dict[str, Any]:
        target = f"{LOGS_TARGET}.{action}"
        return await self._call(
            LOGS, self._logs_url, "logs", target, LOGS_CONTENT_TYPE, payload, trace_id
        )

    async def _metrics(
        self, action: str, payload: dict[str, Any], trace_id: str | None
    ) -> dict[str, Any]:
        target = f"{METRICS_TARGET}.{action}"
        return await self._call(
            METRICS,
            self._metrics_url,
            "monitoring",
            target,
            METRICS_CONTENT_TYPE,
            payload,
            trace_id,
        )

    async def _call(
        self,
        api: Api,
        endpoint: str,
        service: str,
        target: str,
        content_type: str,
        payload: dict[str, Any],
        trace_id: str | None,
    ) -> dict[str, Any]:
        url = f"{endpoint}/"
        body = json.dumps(payload).encode()
        headers = {"Content-Type": content_type, "X-Amz-Target": target}
        if trace_id:
            headers["X-Trace-Id"] = trace_id
        try:
            signed = await self._signer.headers(
                service=service, url=url, body=body, headers=headers
            )
        except AwsCredentialsError as exc:
            raise CloudError(str(exc)) from exc
        return await request_json(self._http, api, "POST", url, content=body, headers=signed)

    @property
    def _max_chars(self) -> int:
        return self._settings.tool_output_max_chars


def _with_token(payload: dict[str, Any], token: str | None) -> dict[str, Any]:
    return {**payload, "nextToken": token} if token else payload


def _at_least(severity: str, minimum: str | None) -> bool:
    return minimum is None or SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK[minimum]


def _logs_context(payload: dict[str, Any], args: QueryLogsArgs, more: bool) -> dict[str, Any]:
    context: dict[str, Any] = {"provider": "aws", "log_group": payload["logGroupName"]}
    if "filterPattern" in payload:
        context["filter_pattern"] = payload["filterPattern"]
    if args.severity:
        context["severity_note"] = "matched against the level word in each message"
    if more:
        context["more"] = f"more than {MAX_PAGES} pages matched: narrow query or minutes"
    return context


def _metrics_context(
    labels: dict[str, str],
    stat: str,
    period: int,
    results: list[dict[str, Any]],
    answer: dict[str, Any],
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "provider": "aws",
        "namespace": labels["namespace"],
        "metric": labels["metric"],
        "dimensions": {k: v for k, v in labels.items() if k in ("ClusterName", "ServiceName")},
        "stat": stat,
        "period_seconds": period,
    }
    partial = [
        r.get("StatusCode") for r in results if r.get("StatusCode") not in (None, "Complete")
    ]
    if partial or answer.get("NextToken"):
        context["more"] = "CloudWatch returned partial data"
    messages = [m.get("Value") for m in answer.get("Messages") or [] if isinstance(m, dict)]
    if messages:
        context["messages"] = messages[:3]
    return context
