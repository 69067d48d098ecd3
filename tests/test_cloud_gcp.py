"""GCP cloud tools against a fake Google: the real google-auth JWT-bearer flow on loopback,
the entries:list / timeSeries.list requests we build, compaction and error messages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from config import Settings
from demo.simulators.pagerduty import Scripted
from demo.simulators.server import serve
from tests.conftest import SettingsFactory
from tests.fakes.contexts import run_context
from tests.fakes.gcp import FakeGcp, load, make_fake_gcp
from tools import PagerDutyClient, RunContext, ToolExecutor
from tools.arguments import QueryLogsArgs, QueryMetricsArgs
from tools.cloud import cloud_tools_for
from tools.cloud_gcp import GcpCloudTools, alignment_seconds, quote
from tools.gcp_auth import NO_CREDENTIALS, GoogleTokenSource

NOW = datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


@dataclass
class World:
    gcp: FakeGcp
    base_url: str
    http: httpx.AsyncClient
    settings: Settings
    key_file: Path

    def tools(self) -> GcpCloudTools:
        tokens = GoogleTokenSource(timeout=5)  # real clock: google-auth sets expiry from it
        return GcpCloudTools(settings=self.settings, http=self.http, tokens=tokens, now=lambda: NOW)

    def api_requests(self, path_suffix: str) -> list[Any]:
        return [r for r in self.gcp.requests if r.path.endswith(path_suffix)]


@pytest.fixture
async def world(
    make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    app, gcp = make_fake_gcp()
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no user ADC file
    async with serve(app) as base_url, httpx.AsyncClient() as http:
        key_file = gcp.write_key_file(tmp_path, base_url)
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
        settings = make_settings(
            cloud_provider="gcp", gcp_project_id="demo-project", **gcp.settings_for(base_url)
        )
        yield World(gcp, base_url, http, settings, key_file)


def make_ctx() -> RunContext:
    return run_context(trace_id="trace-gcp-1")


def logs(**fields: Any) -> QueryLogsArgs:
    return QueryLogsArgs.model_validate({"service": "worker", **fields})


def metrics(**fields: Any) -> QueryMetricsArgs:
    values = {"service": "worker", "metric_type": "run.googleapis.com/request_latencies"}
    return QueryMetricsArgs.model_validate({**values, **fields})


# --- filters -----------------------------------------------------------------------------


def test_quote_escapes_backslashes_quotes_and_control_characters() -> None:
    assert quote('a"b\\c\nd') == '"a\\"b\\\\c d"'


def test_alignment_period_keeps_at_most_30_points() -> None:
    assert [alignment_seconds(m) for m in (1, 30, 60, 61, 10080)] == [60, 60, 120, 180, 20160]


# --- logs --------------------------------------------------------------------------------


async def test_logs_query_sends_the_documented_entries_list_request(world: World) -> None:
    await world.tools().query_logs(logs(severity="error", minutes=15, limit=20), make_ctx())
    (request,) = world.api_requests("entries:list")
    assert request.json == {
        "resourceNames": ["projects/demo-project"],
        "filter": 'resource.type="cloud_run_revision" AND resource.labels.service_name="worker"'
        ' AND timestamp>="2024-05-01T10:15:00Z" AND severity>=ERROR',
        "orderBy": "timestamp desc",
        "pageSize": 20,
    }
    assert request.headers["authorization"] == "Bearer ya29.fake-1"
    assert request.headers["x-trace-id"] == "trace-gcp-1"


async def test_free_text_query_is_one_escaped_text_search_never_filter_syntax(
    world: World,
) -> None:
    injected = 'boom" OR severity>=DEBUG OR "\\'
    await world.tools().query_logs(logs(query=injected), make_ctx())
    sent = world.api_requests("entries:list")[0].json["filter"]
    assert sent.endswith(' AND "boom\\" OR severity>=DEBUG OR \\"\\\\"')


async def test_page_size_is_capped_at_200(world: World) -> None:
    await world.tools().query_logs(logs(limit=500), make_ctx())
    assert world.api_requests("entries:list")[0].json["pageSize"] == 200


async def test_logs_are_compacted_into_groups_counts_and_newest_samples(world: World) -> None:
    result = await world.tools().query_logs(logs(), make_ctx())
    assert result["count"] == 5
    assert result["by_severity"] == {"ERROR": 3, "WARNING": 1, "INFO": 1}
    assert result["first_timestamp"] == "2024-05-01T10:05:00.000Z"
    assert result["last_timestamp"] == "2024-05-01T10:29:58.123456Z"
    top = result["top_messages"][0]
    assert top["count"] == 2
    assert top["message"] == (
        "ERROR db pool exhausted: waited <n> ms for connection (request <uuid>)"
    )
    assert top["last_seen"] == "2024-05-01T10:29:58.123456Z"
    assert [s["severity"] for s in result["samples"]][:3] == ["ERROR", "ERROR", "WARNING"]
    assert "POST https://worker-abc123-ew.a.run.app/jobs 503 10.002s" in json.dumps(result)
    assert "more" in result


# --- credentials -------------------------------------------------------------------------


async def test_key_file_token_uri_is_used_with_a_signed_jwt_and_cached(world: World) -> None:
    tools = world.tools()
    await tools.query_logs(logs(), make_ctx())
    await tools.query_metrics(metrics(), make_ctx())
    (claims,) = world.gcp.token_requests  # the grant reached the key file's token_uri
    assert claims["aud"] == "https://oauth2.googleapis.com/token"  # google-auth's audience
    assert claims["scope"] == SCOPE
    assert claims["iss"] == "sre-agent@demo-project.iam.gserviceaccount.com"
    assert {r.headers["authorization"] for r in world.gcp.requests} == {"Bearer ya29.fake-1"}


async def test_token_is_refreshed_when_it_expires_within_five_minutes(world: World) -> None:
    world.gcp.expires_in = 240
    tools = world.tools()
    await tools.query_logs(logs(), make_ctx())
    await tools.query_logs(logs(), make_ctx())
    assert len(world.gcp.token_requests) == 2


async def test_concurrent_queries_refresh_the_token_once(world: World) -> None:
    tools = world.tools()
    results = await asyncio.gather(*(tools.query_logs(logs(), make_ctx()) for _ in range(5)))
    assert all("error" not in r for r in results)
    assert len(world.gcp.token_requests) == 1


async def test_missing_credentials_are_a_clear_tool_error(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    result = await world.tools().query_logs(logs(), make_ctx())
    assert result["error"].startswith(NO_CREDENTIALS)
    assert world.gcp.requests == []


async def test_a_rejected_token_is_forgotten_and_refreshed_next_time(world: World) -> None:
    tools = world.tools()
    await tools.query_logs(logs(), make_ctx())
    world.gcp.issued.clear()  # the fake no longer accepts ya29.fake-1
    failed = await tools.query_logs(logs(), make_ctx())
    assert failed["error"].startswith("credentials rejected (Cloud Logging HTTP 401")
    assert "error" not in await tools.query_logs(logs(), make_ctx())
    assert len(world.gcp.token_requests) == 2


# --- errors ------------------------------------------------------------------------------


async def test_permission_denied_says_which_role_to_grant(world: World) -> None:
    world.gcp.script["entries"].append(Scripted(403, load("error_permission_denied.json")))
    result = await world.tools().query_logs(logs(), make_ctx())
    assert result["error"].startswith(
        "permission denied (Cloud Logging HTTP 403 PERMISSION_DENIED): grant "
        "roles/logging.viewer to the runtime's service account."
    )
    assert "logging.logEntries.list" in result["error"]
    assert result["retryable"] is False


@pytest.mark.parametrize(
    ("status", "start"),
    [
        (429, "rate limited or quota exceeded (Cloud Logging HTTP 429)"),
        (503, "Cloud Logging is unavailable (Cloud Logging HTTP 503)"),
    ],
)
async def test_quota_and_server_errors_are_retryable(world: World, status: int, start: str):
    world.gcp.script["entries"].append(Scripted(status, {"error": {"code": status}}))
    result = await world.tools().query_logs(logs(), make_ctx())
    assert result["error"].startswith(start)
    assert result["retryable"] is True


async def test_bad_aligner_is_a_readable_bad_request(world: World) -> None:
    world.gcp.script["timeseries"].append(Scripted(400, load("error_invalid_argument.json")))
    result = await world.tools().query_metrics(metrics(aggregation="rate"), make_ctx())
    assert result["error"].startswith("bad request (Cloud Monitoring HTTP 400 INVALID_ARGUMENT)")
    assert "kind GAUGE" in result["error"]


# --- metrics -----------------------------------------------------------------------------


async def test_metrics_query_sends_filter_interval_and_aggregation(world: World) -> None:
    await world.tools().query_metrics(metrics(aggregation="p99"), make_ctx())
    (request,) = world.api_requests("/timeSeries")
    assert request.path == "/v3/projects/demo-project/timeSeries"
    params = {k: v[0] for k, v in parse_qs(request.query).items()}
    assert params == {
        "filter": 'metric.type="run.googleapis.com/request_latencies" AND '
        'resource.labels.service_name="worker"',
        "interval.startTime": "2024-05-01T09:30:00Z",
        "interval.endTime": "2024-05-01T10:30:00Z",
        "aggregation.alignmentPeriod": "120s",
        "aggregation.perSeriesAligner": "ALIGN_PERCENTILE_99",
        "pageSize": "1000",
    }


async def test_metrics_are_compacted_per_series_oldest_first(world: World) -> None:
    result = await world.tools().query_metrics(metrics(), make_ctx())
    assert result["aligner"] == "ALIGN_MEAN"
    assert result["unit"] == "ms"
    first = result["series"][0]
    assert first["labels"]["response_code_class"] == "5xx"
    assert "project_id" not in first["labels"]
    assert (first["points"], first["min"], first["max"], first["last"]) == (
        3,
        180.0,
        9876.0,
        9876.0,
    )
    assert first["series"][0] == ["2024-05-01T10:26:00Z", 180.0]
    assert result["series"][1]["avg"] == 107.5  # int64Value strings read as numbers


@pytest.mark.parametrize("metric_type", ['x" OR metric.type="y', "a b", "a\\b"])
async def test_metric_type_outside_the_strict_pattern_is_refused_unsent(
    world: World, metric_type: str
) -> None:
    result = await world.tools().query_metrics(metrics(metric_type=metric_type), make_ctx())
    assert result["error"].startswith("metric_type must be a metric type")
    assert world.gcp.requests == []


async def test_unknown_aggregation_lists_the_choices(world: World) -> None:
    result = await world.tools().query_metrics(metrics(aggregation="median"), make_ctx())
    assert result["error"] == (
        "unknown aggregation 'median': use one of mean, max, min, sum, count, delta, rate, "
        "p99, p95, p50"
    )


# --- probe and wiring --------------------------------------------------------------------


async def test_probe_gets_a_token_and_reads_both_apis(world: World) -> None:
    ok, detail = await world.tools().probe()
    assert ok, detail
    paths = sorted(r.path for r in world.gcp.requests)
    assert paths == [
        "/v2/projects/demo-project/logs",
        "/v3/projects/demo-project/metricDescriptors",
    ]


async def test_probe_reports_missing_credentials(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    ok, detail = await world.tools().probe()
    assert not ok
    assert detail.startswith(NO_CREDENTIALS)


async def test_executor_runs_the_gcp_tools_from_the_factory(world: World) -> None:
    pagerduty = PagerDutyClient(http=world.http, settings=world.settings)
    cloud = cloud_tools_for(world.settings, world.http)
    assert isinstance(cloud, GcpCloudTools)
    executor = ToolExecutor(
        http=world.http, settings=world.settings, pagerduty=pagerduty, cloud=cloud
    )
    outcome = await executor.execute("query_cloud_logs", '{"service": "WORKER"}', make_ctx())
    assert outcome.ok, outcome.error
    assert json.loads(outcome.content)["count"] == 5
    world.gcp.script["timeseries"].append(Scripted(403, {"error": {"status": "PERMISSION_DENIED"}}))
    args = '{"service": "worker", "metric_type": "run.googleapis.com/request_count"}'
    failed = await executor.execute("query_cloud_metrics", args, make_ctx())
    assert not failed.ok
    assert "roles/monitoring.viewer" in str(failed.error)
