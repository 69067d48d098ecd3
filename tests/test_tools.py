"""Tool executor: each tool end to end against a fake service and a fake PagerDuty."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import telemetry
import tools.executor
import tools.handlers
import tools.ops
from config import Settings
from demo.simulators.ops_service import FakeOpsService, make_ops_service
from demo.simulators.pagerduty import FakePagerDuty, Scripted, make_fake_pagerduty
from demo.simulators.server import serve
from tests.conftest import TEST_SECRETS, SettingsFactory
from tests.fakes.contexts import run_context
from tools import PagerDutyClient, RunContext, ToolExecutor, ToolOutcome
from tools.arguments import QueryLogsArgs, QueryMetricsArgs

OPS_TOKEN = TEST_SECRETS["ops_auth_token"]
TOOL_NAMES = [
    "call_ops_endpoint",
    "scale_service",
    "escalate_pagerduty",
    "acknowledge_alert",
    "write_incident_report",
]


async def _no_sleep(_seconds: float) -> None:
    return None


@dataclass
class World:
    """A fake `worker` service, a dead `api` service, a fake PagerDuty, and the executor."""

    service: FakeOpsService
    pd: FakePagerDuty
    service_url: str
    pd_url: str
    http: httpx.AsyncClient
    make_settings: SettingsFactory
    sent: list[httpx.URL] = field(default_factory=list)

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "service_registry": f"worker|{self.service_url}|false,api|http://127.0.0.1:9|true",
            "scaling_limits": "worker|1|5|application,api|2|4|cloud",
            **self.pd.settings_for(self.pd_url),
        }
        return self.make_settings(**{**values, **overrides})

    def executor(self, cloud: Any = None, **overrides: Any) -> ToolExecutor:
        settings = self.settings(**overrides)
        pagerduty = PagerDutyClient(http=self.http, settings=settings, sleep=_no_sleep)
        return ToolExecutor(http=self.http, settings=settings, pagerduty=pagerduty, cloud=cloud)


@pytest.fixture
async def world(make_settings: SettingsFactory) -> AsyncIterator[World]:
    app, service = make_ops_service(name="worker", token=OPS_TOKEN, faulty=True)
    pd_app, pd = make_fake_pagerduty()
    sent: list[httpx.URL] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request.url)

    async with (
        serve(app) as service_url,
        serve(pd_app) as pd_url,
        httpx.AsyncClient(event_hooks={"request": [record]}) as http,
    ):
        try:
            yield World(service, pd, service_url, pd_url, http, make_settings, sent)
        finally:
            service.release()


async def call(executor: ToolExecutor, ctx: RunContext, name: str, **args: Any) -> ToolOutcome:
    return await executor.execute(name, json.dumps(args), ctx)


def body_of(outcome: ToolOutcome) -> Any:
    return json.loads(outcome.content)


# --- definitions -----------------------------------------------------------------------


def test_definitions_offer_the_tools_without_cloud_tools_by_default(world: World) -> None:
    definitions = world.executor().definitions()
    assert [d["function"]["name"] for d in definitions] == TOOL_NAMES
    assert all(d["type"] == "function" and d["function"]["description"] for d in definitions)
    assert '"title"' not in json.dumps(definitions)


def test_definitions_include_cloud_tools_when_a_provider_is_set(world: World) -> None:
    executor = world.executor(cloud_provider="gcp", gcp_project_id="proj")
    names = [d["function"]["name"] for d in executor.definitions()]
    assert names == [TOOL_NAMES[0], "query_cloud_logs", "query_cloud_metrics", *TOOL_NAMES[1:]]


def test_call_ops_endpoint_schema_matches_the_contract(world: World) -> None:
    (definition,) = [
        d for d in world.executor().definitions() if d["function"]["name"] == "call_ops_endpoint"
    ]
    schema = definition["function"]["parameters"]
    assert schema["required"] == ["service", "endpoint"]
    assert set(schema["properties"]) == {"service", "endpoint", "method", "body"}
    assert schema["properties"]["method"]["enum"] == ["GET", "POST"]
    assert schema["additionalProperties"] is False


# --- call_ops_endpoint -----------------------------------------------------------------


async def test_get_returns_status_code_and_json_body(world: World) -> None:
    outcome = await call(
        world.executor(),
        run_context(),
        "call_ops_endpoint",
        service="worker",
        endpoint="/ops/status",
    )
    assert (outcome.ok, outcome.error, outcome.write) == (True, None, False)
    assert body_of(outcome) == {"status_code": 200, "body": world.service.status()}


async def test_requests_carry_bearer_token_and_trace_id(world: World) -> None:
    await call(
        world.executor(), run_context(), "call_ops_endpoint", service="Worker", endpoint="status"
    )
    (request,) = world.service.requests
    assert (request.method, request.path) == ("GET", "/ops/status")
    assert request.headers["authorization"] == f"Bearer {OPS_TOKEN}"
    assert request.headers["x-trace-id"] == "trace-42"


@pytest.mark.parametrize(
    "endpoint",
    [
        "../admin",
        "/ops/../admin",
        "//evil.com/ops/x",
        "http://evil/ops/status",
        "@evil",
        "\\ops\\status",
        "/ops/%2e%2e/admin",
        "/ops%2fstatus",
        "/ops/%252e",
        "/ops/status?x=1",
        "/ops/stat\u00fcs",
        "",
        "/admin",
    ],
)
async def test_hostile_endpoint_is_refused_and_nothing_is_sent(world: World, endpoint: str):
    outcome = await call(
        world.executor(), run_context(), "call_ops_endpoint", service="worker", endpoint=endpoint
    )
    assert not outcome.ok
    assert outcome.error is not None
    assert "refused" in outcome.error or "empty" in outcome.error
    assert body_of(outcome) == {"error": outcome.error}
    assert (world.sent, world.service.requests, outcome.write) == ([], [], False)


async def test_requests_only_ever_go_to_the_registered_base_url(world: World) -> None:
    executor, ctx = world.executor(), run_context()
    for endpoint in ("status", "ops/metrics", "/ops/errors", "evil.com/ops/status"):
        await call(executor, ctx, "call_ops_endpoint", service="worker", endpoint=endpoint)
    assert {(u.scheme, u.host, u.port) for u in world.sent} == {
        (u.scheme, u.host, u.port) for u in [httpx.URL(world.service_url)]
    }
    assert world.service.paths() == ["/ops/status", "/ops/metrics", "/ops/errors"]


async def test_unregistered_service_is_refused(world: World) -> None:
    outcome = await call(
        world.executor(), run_context(), "call_ops_endpoint", service="evil", endpoint="/ops/status"
    )
    assert outcome.error == "service 'evil' is not registered; registered services: api, worker"
    assert world.sent == []


async def test_slow_service_costs_one_tool_error_not_the_run(world: World) -> None:
    world.service.hold("/ops/status")
    executor, ctx = world.executor(ops_timeout_seconds=0.2), run_context()
    outcome = await call(executor, ctx, "call_ops_endpoint", service="worker", endpoint="status")
    assert (outcome.ok, outcome.error) == (False, "timed out after 0.2s calling worker /ops/status")
    world.service.release()
    after = await call(executor, ctx, "call_ops_endpoint", service="worker", endpoint="errors")
    assert after.ok


async def test_non_2xx_is_an_error_that_still_shows_the_body(world: World) -> None:
    world.service.status_codes["/ops/status"] = 503
    outcome = await call(
        world.executor(),
        run_context(),
        "call_ops_endpoint",
        service="worker",
        endpoint="/ops/status",
    )
    assert (outcome.ok, outcome.error) == (False, "HTTP 503 from worker /ops/status")
    assert body_of(outcome) == {
        "error": "HTTP 503 from worker /ops/status",
        "status_code": 503,
        "body": {"error": "scripted HTTP 503"},
    }


async def test_dead_service_is_one_tool_error(world: World) -> None:
    outcome = await call(
        world.executor(), run_context(), "call_ops_endpoint", service="api", endpoint="status"
    )
    assert (outcome.ok, outcome.error) == (False, "could not reach api /ops/status: ConnectError")


async def test_post_remediation_is_sent_with_its_body_and_is_a_write(world: World) -> None:
    executor, ctx = world.executor(), run_context()
    outcome = await call(
        executor,
        ctx,
        "call_ops_endpoint",
        service="worker",
        endpoint="/ops/restart",
        method="post",
        body={"graceful": True},
    )
    assert (outcome.ok, outcome.write) == (True, True)
    assert world.service.requests[-1].json == {"graceful": True}
    assert world.service.faulty is False


async def test_body_with_get_is_refused(world: World) -> None:
    outcome = await call(
        world.executor(),
        run_context(),
        "call_ops_endpoint",
        service="worker",
        endpoint="status",
        body={"x": 1},
    )
    assert outcome.error == "a body is only allowed with POST"


# --- arguments and unknown tools ----------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ("{not json", "arguments for call_ops_endpoint are not valid JSON"),
        ("", "arguments for call_ops_endpoint must be a JSON object"),
        ("[1, 2]", "arguments for call_ops_endpoint must be a JSON object"),
        ('"status"', "arguments for call_ops_endpoint must be a JSON object"),
        (
            '{"service": "worker"}',
            "invalid arguments for call_ops_endpoint: endpoint: Field required",
        ),
        (
            '{"service": "worker", "endpoint": "status", "method": "DELETE"}',
            "method: Input should be",
        ),
        ('{"service": "worker", "endpoint": "status", "host": "evil"}', "host: Extra inputs"),
    ],
)
async def test_bad_arguments_are_an_error_and_the_tool_is_not_called(
    world: World, arguments: str, error: str
) -> None:
    outcome = await world.executor().execute("call_ops_endpoint", arguments, run_context())
    assert not outcome.ok
    assert outcome.error is not None
    assert error in outcome.error
    assert world.sent == []


def nested(depth: int) -> str:
    """Arguments whose `body` nests `depth` more levels below the top-level object."""
    return (
        '{"service": "worker", "endpoint": "/ops/restart", "method": "POST", "body": '
        + "[" * depth
        + "]" * depth
        + "}"
    )


@pytest.mark.parametrize("depth", [64, 999, 30_000])
async def test_arguments_nested_deeper_than_64_levels_are_an_error_not_a_crash(
    world: World, depth: int
) -> None:
    outcome = await world.executor().execute("call_ops_endpoint", nested(depth), run_context())
    assert not outcome.ok
    assert outcome.error == "arguments for call_ops_endpoint are nested deeper than 64 levels"
    assert body_of(outcome) == {"error": outcome.error}
    assert world.sent == []


def test_arguments_nested_exactly_64_levels_are_decoded() -> None:
    decoded = tools.executor.decode_arguments('{"a": ' + "[" * 63 + "]" * 63 + "}")
    assert isinstance(decoded, dict)
    with pytest.raises(tools.executor.ArgumentsError, match="nested deeper than 64 levels"):
        tools.executor.decode_arguments('{"a": ' + "[" * 64 + "]" * 64 + "}")


async def test_arguments_longer_than_the_bound_are_an_error_without_parsing(
    world: World,
) -> None:
    arguments = json.dumps({"service": "worker", "endpoint": "status", "pad": "x" * 70_000})
    outcome = await world.executor().execute("call_ops_endpoint", arguments, run_context())
    assert outcome.error == (
        f"arguments for call_ops_endpoint are {len(arguments)} characters long; "
        f"at most {tools.executor.MAX_ARGUMENT_CHARS} are accepted"
    )
    assert world.sent == []


async def test_unknown_tool_is_an_error_listing_the_tools(world: World) -> None:
    outcome = await world.executor().execute("run_shell", '{"cmd": "rm -rf /"}', run_context())
    assert outcome.error == f"unknown tool 'run_shell'; available tools: {', '.join(TOOL_NAMES)}"


# --- output: redaction and the size cap --------------------------------------------------


async def test_secrets_in_tool_output_never_reach_the_model(world: World) -> None:
    world.service.bodies["/ops/config"] = {
        "llm_key": TEST_SECRETS["llm_api_key"],
        "dsn": "postgres://app:hunter2@db/x",
    }
    executor, ctx = world.executor(), run_context()
    echo = await call(executor, ctx, "call_ops_endpoint", service="worker", endpoint="echo")
    config = await call(executor, ctx, "call_ops_endpoint", service="worker", endpoint="config")
    assert body_of(echo)["body"]["headers"]["authorization"] == "[REDACTED]"
    for secret in (*TEST_SECRETS.values(), "hunter2"):
        assert secret not in echo.content + config.content


async def test_long_output_is_cut_with_a_marker_within_the_limit(world: World) -> None:
    world.service.bodies["/ops/config"] = {"blob": "x" * 50_000}
    outcome = await call(
        world.executor(tool_output_max_chars=1000),
        run_context(),
        "call_ops_endpoint",
        service="worker",
        endpoint="config",
    )
    assert len(outcome.content) <= 1000
    head, marker = outcome.content.split("…[truncated ")
    full = json.dumps({"status_code": 200, "body": {"blob": "x" * 50_000}})
    assert full.startswith(head)
    assert marker == f"{len(full) - len(head)} chars]"


# --- read cache ------------------------------------------------------------------------


async def test_identical_read_is_answered_from_the_cache_until_a_write(world: World) -> None:
    executor, ctx = world.executor(), run_context()
    first = await call(executor, ctx, "call_ops_endpoint", service="worker", endpoint="status")
    again = await call(executor, ctx, "call_ops_endpoint", service="worker", endpoint="status")
    assert world.service.paths() == ["/ops/status"]
    assert body_of(again)["cached"] is True
    assert body_of(again)["result"] == body_of(first)
    await call(
        executor, ctx, "call_ops_endpoint", service="worker", endpoint="restart", method="POST"
    )
    fresh = await call(executor, ctx, "call_ops_endpoint", service="worker", endpoint="status")
    assert world.service.paths("GET") == ["/ops/status", "/ops/status"]
    assert body_of(fresh)["body"]["status"] == "healthy"


async def test_failed_reads_are_not_cached(world: World) -> None:
    world.service.status_codes["/ops/status"] = 500
    executor, ctx = world.executor(), run_context()
    for _ in range(2):
        await call(executor, ctx, "call_ops_endpoint", service="worker", endpoint="status")
    assert world.service.paths() == ["/ops/status", "/ops/status"]


# --- scale_service ---------------------------------------------------------------------


async def test_scaling_within_bounds_posts_ops_scale(world: World) -> None:
    outcome = await call(
        world.executor(),
        run_context(),
        "scale_service",
        service="worker",
        replicas=4,
        reason="queue backlog growing",
    )
    assert (outcome.ok, outcome.write) == (True, True)
    assert (world.service.requests[-1].path, world.service.requests[-1].json) == (
        "/ops/scale",
        {"replicas": 4},
    )
    assert world.service.requests[-1].headers["authorization"] == f"Bearer {OPS_TOKEN}"
    assert world.service.replicas == 4


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            {"service": "worker", "replicas": 9, "reason": "r"},
            "replicas=9 is outside the allowed range for worker: 1..5",
        ),
        (
            {"service": "api", "replicas": 3, "reason": "r"},
            "cloud scaling is not available yet for api; escalate if more capacity is needed",
        ),
        ({"service": "db", "replicas": 3, "reason": "r"}, "service 'db' is not registered"),
        ({"service": "worker", "replicas": 3, "reason": "  "}, "reason: String should have"),
        ({"service": "worker", "replicas": 3}, "reason: Field required"),
    ],
)
async def test_scaling_is_refused_outside_its_rules(
    world: World, args: dict[str, Any], error: str
) -> None:
    outcome = await call(world.executor(), run_context(), "scale_service", **args)
    assert not outcome.ok
    assert outcome.error is not None
    assert error in outcome.error
    assert (world.sent, outcome.write) == ([], False)


async def test_scaling_without_limits_is_refused(world: World) -> None:
    outcome = await call(
        world.executor(scaling_limits=""),
        run_context(),
        "scale_service",
        service="worker",
        replicas=2,
        reason="r",
    )
    assert outcome.error == "scaling is not configured for worker (no SCALING_LIMITS entry)"


# --- shadow mode -----------------------------------------------------------------------


async def test_shadow_mode_withholds_every_write_and_records_it(world: World) -> None:
    executor, ctx = world.executor(), run_context(shadow=True)
    outcomes = [
        await call(
            executor,
            ctx,
            "call_ops_endpoint",
            service="worker",
            endpoint="restart",
            method="POST",
            body={"graceful": True},
        ),
        await call(executor, ctx, "scale_service", service="worker", replicas=3, reason="load"),
        await call(executor, ctx, "escalate_pagerduty", summary="worker down"),
        await call(executor, ctx, "acknowledge_alert", action="resolve"),
    ]
    assert ctx.withheld == [
        'POST worker /ops/restart {"graceful": true}',
        "scale worker to 3 replicas (reason: load)",
        "PagerDuty trigger for generic:inc-42: worker down",
        "PagerDuty resolve for generic:inc-42",
    ]
    assert [body_of(o) for o in outcomes] == [{"shadow": True, "withheld": w} for w in ctx.withheld]
    assert all(o.ok and o.write for o in outcomes)
    assert (world.sent, world.service.requests, world.pd.events, ctx.escalations) == (
        [],
        [],
        [],
        [],
    )


async def test_shadow_mode_still_reads_and_still_applies_guardrails(world: World) -> None:
    executor, ctx = world.executor(), run_context(shadow=True)
    read = await call(executor, ctx, "call_ops_endpoint", service="worker", endpoint="status")
    refused = await call(executor, ctx, "scale_service", service="worker", replicas=50, reason="r")
    assert read.ok
    assert not refused.ok
    assert ctx.withheld == []


# --- PagerDuty tools -------------------------------------------------------------------


async def test_escalation_triggers_pagerduty_and_is_recorded(world: World) -> None:
    executor, ctx = world.executor(), run_context(url="https://grafana.example/alert/1")
    await call(executor, ctx, "write_incident_report", content="# Findings", filename="inc-42")
    outcome = await call(
        executor,
        ctx,
        "escalate_pagerduty",
        summary="worker down",
        severity="critical",
        details="db pool exhausted",
    )
    assert (outcome.ok, outcome.write) == (True, True)
    (event,) = world.pd.events
    assert event.json["dedup_key"] == "generic:inc-42"
    assert event.json["payload"]["severity"] == "critical"
    assert event.json["payload"]["custom_details"]["report_file"] == "inc-42.md"
    assert event.json["payload"]["custom_details"]["trace_id"] == "trace-42"
    assert event.json["links"] == [
        {"href": "https://grafana.example/alert/1", "text": "Alert source"}
    ]
    assert [(e.ok, e.action, e.dedup_key) for e in ctx.escalations] == [
        (True, "trigger", "generic:inc-42")
    ]
    assert body_of(outcome)["ok"] is True


async def test_failed_escalation_is_an_error_and_is_still_recorded(world: World) -> None:
    world.pd.events_default = Scripted(500)
    ctx = run_context()
    outcome = await call(world.executor(), ctx, "escalate_pagerduty", summary="worker down")
    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error.startswith("PagerDuty escalation failed: HTTP 500")
    assert [(e.ok, e.attempts) for e in ctx.escalations] == [(False, 6)]


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
async def test_acknowledge_alert_sends_the_action_for_this_incident(world: World, action: str):
    ctx = run_context()
    outcome = await call(world.executor(), ctx, "acknowledge_alert", action=action, note="ok")
    assert (outcome.ok, outcome.write) == (True, True)
    assert [(e.json["event_action"], e.json["dedup_key"]) for e in world.pd.events] == [
        (action, "generic:inc-42")
    ]
    assert ctx.escalations == []


# --- write_incident_report -------------------------------------------------------------


async def test_report_gets_the_default_name_when_none_is_given(world: World) -> None:
    executor, ctx = world.executor(), run_context()
    outcome = await call(executor, ctx, "write_incident_report", content="# Report")
    name = body_of(outcome)["filename"]
    assert name.endswith("-worker-generic_inc-42.md")
    assert len(name.split("-")[0]) == 16
    assert (ctx.report_filename, ctx.report_content, outcome.write) == (name, "# Report", False)
    assert (world.settings().incidents_dir / name).read_text() == "# Report"


async def test_first_report_name_sticks_and_later_calls_overwrite_it(world: World) -> None:
    executor, ctx = world.executor(), run_context()
    await call(executor, ctx, "write_incident_report", content="v1", filename="db-outage")
    outcome = await call(executor, ctx, "write_incident_report", content="v2", filename="other")
    directory = world.settings().incidents_dir
    assert sorted(p.name for p in directory.iterdir()) == ["db-outage.md"]
    assert (directory / "db-outage.md").read_text() == "v2"
    assert "overwrote this incident's report db-outage.md" in body_of(outcome)["note"]
    assert "other.md was not used" in body_of(outcome)["note"]


@pytest.mark.parametrize("filename", ["../x", "/etc/x", "a/b", "a\\b", "x\x00", ".env"])
async def test_report_filename_traversal_is_refused_and_nothing_written(
    world: World, filename: str
) -> None:
    ctx = run_context()
    outcome = await call(
        world.executor(), ctx, "write_incident_report", content="x", filename=filename
    )
    assert not outcome.ok
    assert outcome.error is not None
    assert "refused" in outcome.error
    assert ctx.report_filename is None
    assert list(world.settings().incidents_dir.iterdir()) == []


async def test_report_content_is_redacted(world: World) -> None:
    ctx = run_context()
    content = f"token {OPS_TOKEN}\n" + "y" * 60_000
    outcome = await call(world.executor(), ctx, "write_incident_report", content=content)
    assert outcome.ok
    assert ctx.report_content is not None
    assert OPS_TOKEN not in ctx.report_content
    assert ctx.report_content.endswith("y" * 60_000)


async def test_report_content_over_the_argument_bound_is_refused_and_nothing_written(
    world: World,
) -> None:
    ctx = run_context()
    content = "y" * 300_000
    outcome = await call(world.executor(), ctx, "write_incident_report", content=content)
    assert not outcome.ok
    assert outcome.error is not None
    assert f"at most {tools.executor.MAX_ARGUMENT_CHARS} are accepted" in outcome.error
    assert ctx.report_content is None
    assert not world.settings().incidents_dir.exists() or not any(
        world.settings().incidents_dir.iterdir()
    )


# --- cloud tools and the executor boundary -----------------------------------------------


class FakeCloud:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.calls: list[Any] = []

    async def query_logs(self, args: QueryLogsArgs, ctx: RunContext) -> dict[str, Any]:
        self.calls.append(args)
        if self.error is not None:
            raise self.error
        return {"entries": [{"severity": args.severity, "message": "boom"}]}

    async def query_metrics(self, args: QueryMetricsArgs, ctx: RunContext) -> dict[str, Any]:
        self.calls.append(args)
        return {"points": [1, 2, 3]}


GCP = {"cloud_provider": "gcp", "gcp_project_id": "proj"}


async def test_cloud_tools_say_not_configured_by_default(world: World) -> None:
    outcome = await call(world.executor(**GCP), run_context(), "query_cloud_logs", service="worker")
    assert outcome.error == "cloud provider not configured: set CLOUD_PROVIDER=gcp or aws"


async def test_cloud_tools_receive_validated_args_with_the_registered_name(world: World):
    cloud = FakeCloud()
    executor, ctx = world.executor(cloud=cloud, **GCP), run_context()
    logs = await call(executor, ctx, "query_cloud_logs", service="WORKER", severity="error")
    metrics = await call(executor, ctx, "query_cloud_metrics", service="worker", metric_type="cpu")
    assert body_of(logs) == {"entries": [{"severity": "ERROR", "message": "boom"}]}
    assert body_of(metrics) == {"points": [1, 2, 3]}
    assert (cloud.calls[0].service, cloud.calls[0].minutes, cloud.calls[0].limit) == (
        "worker",
        30,
        50,
    )


async def test_unexpected_handler_failure_is_an_error_result_and_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    executor = world.executor(cloud=FakeCloud(RuntimeError("bug")), **GCP)
    with caplog.at_level(logging.WARNING, logger="tools.executor"):
        outcome = await call(executor, run_context(), "query_cloud_logs", service="worker")
    assert outcome.error == "internal error in query_cloud_logs: RuntimeError"
    assert caplog.records[0].exc_info is not None


async def test_cancellation_propagates(world: World) -> None:
    executor = world.executor(cloud=FakeCloud(asyncio.CancelledError()), **GCP)
    with pytest.raises(asyncio.CancelledError):
        await call(executor, run_context(), "query_cloud_logs", service="worker")


async def test_report_that_cannot_be_written_is_a_tool_error(world: World) -> None:
    executor, ctx = world.executor(), run_context()
    (world.settings().incidents_dir / "r.md").mkdir()  # os.replace cannot overwrite a directory
    outcome = await call(executor, ctx, "write_incident_report", content="# r", filename="r")
    assert outcome.error is not None
    assert outcome.error.startswith("could not write report r.md")
    assert [p.name for p in world.settings().incidents_dir.iterdir()] == ["r.md"]


async def test_wrong_ops_token_is_reported_as_http_401(world: World) -> None:
    executor = world.executor(ops_auth_token="not-the-token")
    outcome = await call(
        executor, run_context(), "call_ops_endpoint", service="worker", endpoint="status"
    )
    assert outcome.error == "HTTP 401 from worker /ops/status"


async def test_execute_and_ops_calls_are_traced(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for module in (tools.executor, tools.ops, tools.handlers):
        monkeypatch.setattr(module, "tracer", provider.get_tracer(module.__name__))
    executor, ctx = world.executor(), run_context()
    await call(executor, ctx, "call_ops_endpoint", service="worker", endpoint="status")
    await call(executor, ctx, "scale_service", service="worker", replicas=3, reason="load")
    spans = {
        (s.name, s.attributes.get("sre_agent.tool.name")): s for s in exporter.get_finished_spans()
    }
    execute = spans[(telemetry.SPAN_TOOL_EXECUTE, "call_ops_endpoint")]
    assert execute.attributes is not None
    assert execute.attributes["sre_agent.tool.ok"] is True
    assert (telemetry.SPAN_TOOL_CALL_OPS, None) in spans
    assert (telemetry.SPAN_TOOL_SCALE, None) in spans
    provider.shutdown()
