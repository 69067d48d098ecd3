"""AWS cloud tools against a fake JSON-protocol endpoint: SigV4-signed FilterLogEvents and
GetMetricData calls built from static credentials in the environment, compaction, errors,
the AWS settings, and the lazy botocore import."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from config import ConfigError, Settings
from demo.simulators.pagerduty import Scripted
from demo.simulators.server import serve
from tests.conftest import SettingsFactory
from tests.fakes.aws import FakeAws, load, make_fake_aws
from tests.fakes.contexts import run_context
from tools import RunContext
from tools.arguments import QueryLogsArgs, QueryMetricsArgs
from tools.aws_sigv4 import NO_CREDENTIALS
from tools.cloud import BOTOCORE_MISSING, UnavailableCloud, cloud_tools_for
from tools.cloud_aws import AwsCloudTools, filter_pattern, parse_metric_type, severity_of

NOW = datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
NOW_MS = 1714559400000
KEY_ID = "AKIAIOSFODNN7EXAMPLE"


@dataclass
class World:
    aws: FakeAws
    http: httpx.AsyncClient
    settings: Settings

    def tools(self) -> AwsCloudTools:
        return AwsCloudTools(settings=self.settings, http=self.http, now=lambda: NOW)

    def body(self, index: int = 0) -> Any:
        return self.aws.requests[index].json

    def bodies(self) -> list[Any]:
        return [request.json for request in self.aws.requests]

    def headers(self, index: int = 0) -> dict[str, str]:
        return self.aws.requests[index].headers


def isolate_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No shared files, no metadata endpoints: only what the test puts in the environment."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def world(
    make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    isolate_aws_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-example")
    app, aws = make_fake_aws()
    async with serve(app) as base_url, httpx.AsyncClient() as http:
        settings = make_settings(
            cloud_provider="aws", aws_region="us-east-1", **aws.settings_for(base_url)
        )
        yield World(aws, http, settings)


def make_ctx() -> RunContext:
    return run_context(trace_id="trace-aws-1")


def logs(**fields: Any) -> QueryLogsArgs:
    return QueryLogsArgs.model_validate({"service": "worker", **fields})


def metrics(**fields: Any) -> QueryMetricsArgs:
    values = {"service": "worker", "metric_type": "AWS/ECS/CPUUtilization"}
    return QueryMetricsArgs.model_validate({**values, **fields})


# --- pure helpers ------------------------------------------------------------------------


def test_query_text_becomes_quoted_terms_without_pattern_syntax() -> None:
    assert filter_pattern('pool "exhausted" \\ ?ERROR') == '"pool" "exhausted" "?ERROR"'
    assert filter_pattern(' " ') is None


@pytest.mark.parametrize(
    ("message", "severity"),
    [
        ('{"level":"error","msg":"x"}', "ERROR"),
        ("2024-05-01T10:29:01Z WARN slow", "WARNING"),
        ("FATAL out of memory", "CRITICAL"),
        ("no level here", "DEFAULT"),
    ],
)
def test_severity_is_read_from_the_message(message: str, severity: str) -> None:
    assert severity_of(message) == severity


def test_metric_type_is_namespace_and_name_with_an_ecs_default() -> None:
    assert parse_metric_type("AWS/ApplicationELB/TargetResponseTime") == (
        "AWS/ApplicationELB",
        "TargetResponseTime",
    )
    assert parse_metric_type("CPUUtilization") == ("AWS/ECS", "CPUUtilization")


# --- logs --------------------------------------------------------------------------------


async def test_filter_log_events_is_a_sigv4_signed_json_call(world: World) -> None:
    await world.tools().query_logs(logs(query="pool exhausted", minutes=15), make_ctx())
    headers = world.headers()
    assert headers["x-amz-target"] == "Logs_20140328.FilterLogEvents"
    assert headers["content-type"] == "application/x-amz-json-1.1"
    assert headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20")
    assert "/us-east-1/logs/aws4_request, SignedHeaders=" in headers["authorization"]
    assert "x-amz-target" in headers["authorization"]
    assert headers["x-amz-security-token"] == "session-token-example"
    assert headers["x-trace-id"] == "trace-aws-1"
    assert world.body() == {
        "logGroupName": "/ecs/worker",
        "startTime": NOW_MS - 15 * 60_000,
        "endTime": NOW_MS,
        "limit": 1000,
        "filterPattern": '"pool exhausted"',
    }


async def test_log_events_are_compacted_with_levels_from_the_messages(world: World) -> None:
    result = await world.tools().query_logs(logs(), make_ctx())
    assert result["log_group"] == "/ecs/worker"
    assert result["count"] == 3
    assert result["by_severity"] == {"ERROR": 2, "INFO": 1}
    assert result["last_timestamp"] == "2024-05-01T10:29:58.000Z"
    assert result["samples"][0]["message"].endswith("ERROR db pool exhausted: waited 5012 ms")


async def test_severity_keeps_only_events_at_or_above_it(world: World) -> None:
    result = await world.tools().query_logs(logs(severity="ERROR"), make_ctx())
    assert result["by_severity"] == {"ERROR": 2}
    assert "severity_note" in result


async def test_the_newest_events_are_kept_across_pages(world: World) -> None:
    page = load("filter_log_events.json")
    world.aws.script["FilterLogEvents"].append(Scripted(200, {**page, "nextToken": "t1"}))
    result = await world.tools().query_logs(logs(limit=2), make_ctx())
    assert world.body(1)["nextToken"] == "t1"
    assert result["count"] == 2
    assert result["first_timestamp"] == "2024-05-01T10:29:41.000Z"


async def test_log_group_comes_from_the_configured_pattern(world: World) -> None:
    settings = world.settings.model_copy(update={"aws_log_group_pattern": "/aws/lambda/{service}"})
    tools = AwsCloudTools(settings=settings, http=world.http, now=lambda: NOW)
    await tools.query_logs(logs(), make_ctx())
    assert world.body()["logGroupName"] == "/aws/lambda/worker"


# --- errors ------------------------------------------------------------------------------


async def test_access_denied_names_the_iam_action(world: World) -> None:
    world.aws.script["FilterLogEvents"].append(Scripted(400, load("error_access_denied.json")))
    result = await world.tools().query_logs(logs(), make_ctx())
    assert result["error"].startswith(
        "permission denied (CloudWatch Logs HTTP 400 AccessDeniedException): allow "
        "logs:FilterLogEvents to the runtime's IAM role."
    )


async def test_missing_log_group_points_at_the_pattern_setting(world: World) -> None:
    error = load("error_resource_not_found.json")
    world.aws.script["FilterLogEvents"].append(Scripted(400, error))
    result = await world.tools().query_logs(logs(), make_ctx())
    assert "AWS_LOG_GROUP_PATTERN" in result["error"]
    assert "The specified log group does not exist." in result["error"]


async def test_throttling_is_retryable(world: World) -> None:
    throttled = {"__type": "ThrottlingException", "message": "Rate exceeded"}
    world.aws.script["GetMetricData"].append(Scripted(400, throttled))
    result = await world.tools().query_metrics(metrics(), make_ctx())
    assert result["error"].startswith("rate limited or quota exceeded (CloudWatch HTTP 400")
    assert result["retryable"] is True


async def test_missing_credentials_are_a_clear_tool_error(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    result = await world.tools().query_logs(logs(), make_ctx())
    assert result == {"error": NO_CREDENTIALS}
    assert world.aws.requests == []


# --- metrics -----------------------------------------------------------------------------


async def test_get_metric_data_uses_the_json_protocol(world: World) -> None:
    await world.tools().query_metrics(metrics(aggregation="p99"), make_ctx())
    headers = world.headers()
    assert headers["x-amz-target"] == "GraniteServiceVersion20100801.GetMetricData"
    assert headers["content-type"] == "application/x-amz-json-1.0"
    assert "/us-east-1/monitoring/aws4_request, SignedHeaders=" in headers["authorization"]
    stat = {
        "Metric": {
            "Namespace": "AWS/ECS",
            "MetricName": "CPUUtilization",
            "Dimensions": [{"Name": "ServiceName", "Value": "worker"}],
        },
        "Period": 120,
        "Stat": "p99",
    }
    assert world.body() == {
        "MetricDataQueries": [{"Id": "m0", "MetricStat": stat, "ReturnData": True}],
        "StartTime": NOW_MS // 1000 - 3600,
        "EndTime": NOW_MS // 1000,
        "ScanBy": "TimestampAscending",
        "MaxDatapoints": 1000,
    }


async def test_ecs_metrics_carry_the_configured_cluster(world: World) -> None:
    settings = world.settings.model_copy(update={"aws_ecs_cluster": "prod"})
    tools = AwsCloudTools(settings=settings, http=world.http, now=lambda: NOW)
    result = await tools.query_metrics(metrics(), make_ctx())
    await tools.query_metrics(metrics(metric_type="Checkout/Latency"), make_ctx())
    ecs, custom = (body["MetricDataQueries"][0]["MetricStat"]["Metric"] for body in world.bodies())
    assert ecs["Dimensions"] == [
        {"Name": "ClusterName", "Value": "prod"},
        {"Name": "ServiceName", "Value": "worker"},
    ]
    assert result["dimensions"] == {"ClusterName": "prod", "ServiceName": "worker"}
    assert custom["Dimensions"] == [{"Name": "ServiceName", "Value": "worker"}]


async def test_metric_data_is_compacted(world: World) -> None:
    result = await world.tools().query_metrics(metrics(), make_ctx())
    (series,) = result["series"]
    assert result["stat"] == "Average"
    assert (series["min"], series["max"], series["last"], series["points"]) == (35.5, 98.0, 98.0, 3)
    assert series["labels"]["label"] == "CPUUtilization"
    assert series["series"][0] == ["2024-05-01T10:25:00.000Z", 35.5]


async def test_rate_is_not_a_cloudwatch_statistic(world: World) -> None:
    result = await world.tools().query_metrics(metrics(aggregation="rate"), make_ctx())
    assert result["error"].startswith("unknown aggregation 'rate' for CloudWatch")
    assert world.aws.requests == []


# --- probe, factory, settings ------------------------------------------------------------


async def test_probe_signs_a_cheap_describe_log_groups(world: World) -> None:
    ok, detail = await world.tools().probe()
    assert (ok, detail) == (True, "credentials ok; CloudWatch Logs readable in us-east-1")
    assert world.aws.actions() == ["DescribeLogGroups"]
    assert world.body() == {"limit": 1}


async def test_factory_builds_aws_tools(world: World) -> None:
    assert isinstance(cloud_tools_for(world.settings, world.http), AwsCloudTools)


async def test_without_botocore_the_tools_say_what_to_install(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ("tools.cloud_aws", "tools.aws_sigv4"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setitem(sys.modules, "botocore", None)
    cloud = cloud_tools_for(world.settings, world.http)
    assert isinstance(cloud, UnavailableCloud)
    assert await cloud.query_logs(logs(), make_ctx()) == {"error": BOTOCORE_MISSING}
    assert await cloud.probe() == (False, BOTOCORE_MISSING)


def test_aws_needs_a_region(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_aws_environment(monkeypatch, tmp_path)
    with pytest.raises(ConfigError, match="AWS_REGION: is required when CLOUD_PROVIDER=aws"):
        make_settings(cloud_provider="aws")


def test_region_falls_back_to_aws_default_region(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_aws_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert make_settings(cloud_provider="aws").aws_region == "eu-west-1"
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert make_settings(cloud_provider="aws").aws_region == "eu-central-1"


def test_log_group_pattern_must_name_the_service(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_aws_environment(monkeypatch, tmp_path)
    with pytest.raises(ConfigError, match="AWS_LOG_GROUP_PATTERN: must contain"):
        make_settings(aws_log_group_pattern="/ecs/all")
