"""The seven tools of CONTRACT §4: one handler each, and the `TOOLS` registry.

A handler receives validated arguments, applies its guardrails, and returns a JSON-able
dict or raises `ToolError`/`Refused`. Writes check `ctx.shadow` only after every guardrail
passed, so shadow mode reports exactly the write a live run would have made; in approve
mode a remediation write (a POST to `/ops/*`, a scaling) that passed them goes to
`ctx.approver`, which makes it only once a human approved it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict

from opentelemetry import trace

import telemetry
from tools import descriptions
from tools.arguments import (
    AcknowledgeArgs,
    CallOpsArgs,
    EscalateArgs,
    QueryLogsArgs,
    QueryMetricsArgs,
    ReportArgs,
    ScaleArgs,
)
from tools.context import RunContext
from tools.errors import Refused, ToolError
from tools.guardrails import (
    check_method,
    check_report_filename,
    check_scaling,
    normalize_endpoint,
    resolve_service,
)
from tools.ops import call_ops
from tools.pagerduty import Escalation, EscalationResult
from tools.registry import ALWAYS_WRITES, JsonObject, Tool, ToolDeps
from tools.reports import promised_report_name, write_report

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


def withhold(ctx: RunContext, line: str) -> JsonObject:
    """Shadow mode: record the write that was not made and tell the model so."""
    ctx.withheld.append(line)
    logger.info("shadow mode: withheld %s", line)
    return {"shadow": True, "withheld": line}


async def call_ops_endpoint(deps: ToolDeps, args: CallOpsArgs, ctx: RunContext) -> JsonObject:
    entry = resolve_service(deps.settings, args.service)
    path = normalize_endpoint(args.endpoint)
    body = check_method(args.method, args.body)
    if args.method == "POST" and ctx.shadow:
        sent = json.dumps(body or {}, ensure_ascii=False, sort_keys=True)
        return withhold(ctx, deps.redactor.redact(f"POST {entry.name} {path} {sent}"))
    if args.method != "POST":
        return await call_ops(
            deps, entry, path=path, method="GET", body=None, trace_id=ctx.trace_id
        )

    async def post() -> JsonObject:
        logger.info("POST %s %s", entry.name, path)
        return await call_ops(
            deps, entry, path=path, method="POST", body=body, trace_id=ctx.trace_id
        )

    if ctx.approver is None:
        return await post()
    proposed = {"service": entry.name, "endpoint": path, "method": "POST", "body": body or {}}
    return await ctx.approver.send("call_ops_endpoint", proposed, None, post)


async def query_cloud_logs(deps: ToolDeps, args: QueryLogsArgs, ctx: RunContext) -> JsonObject:
    entry = resolve_service(deps.settings, args.service)
    result = await deps.cloud.query_logs(args.model_copy(update={"service": entry.name}), ctx)
    return _cloud_result(result)


async def query_cloud_metrics(
    deps: ToolDeps, args: QueryMetricsArgs, ctx: RunContext
) -> JsonObject:
    entry = resolve_service(deps.settings, args.service)
    result = await deps.cloud.query_metrics(args.model_copy(update={"service": entry.name}), ctx)
    return _cloud_result(result)


def _cloud_result(result: JsonObject) -> JsonObject:
    if "error" in result:
        details = {k: v for k, v in result.items() if k != "error"}
        raise ToolError(str(result["error"]), details)
    return result


async def scale_service(deps: ToolDeps, args: ScaleArgs, ctx: RunContext) -> JsonObject:
    attributes: dict[str, str | int] = {
        "sre_agent.service": args.service,
        "sre_agent.replicas": args.replicas,
    }
    with tracer.start_as_current_span(telemetry.SPAN_TOOL_SCALE, attributes=attributes):
        entry, limit = check_scaling(deps.settings, args.service, args.replicas)
        if limit.mode == "cloud":
            raise Refused(
                f"cloud scaling is not available yet for {entry.name}; "
                "escalate if more capacity is needed"
            )
        if ctx.shadow:
            line = f"scale {entry.name} to {args.replicas} replicas (reason: {args.reason})"
            return withhold(ctx, deps.redactor.redact(line))

        async def scale() -> JsonObject:
            logger.info("scaling %s to %d replicas: %s", entry.name, args.replicas, args.reason)
            result = await call_ops(
                deps,
                entry,
                path="/ops/scale",
                method="POST",
                body={"replicas": args.replicas},
                trace_id=ctx.trace_id,
            )
            return {**result, "scaled": {"service": entry.name, "replicas": args.replicas}}

        if ctx.approver is None:
            return await scale()
        proposed = {"service": entry.name, "replicas": args.replicas, "reason": args.reason}
        return await ctx.approver.send("scale_service", proposed, args.reason, scale)


async def escalate_pagerduty(deps: ToolDeps, args: EscalateArgs, ctx: RunContext) -> JsonObject:
    alert = ctx.alert
    if ctx.shadow:
        line = f"PagerDuty trigger for {alert.incident_id}: {args.summary[:300]}"
        return withhold(ctx, deps.redactor.redact(line))
    result = await deps.pagerduty.trigger(
        Escalation(  # the PagerDuty client redacts summary and details
            alert=alert,
            summary=args.summary,
            trace_id=ctx.trace_id,
            severity=args.severity,
            details=args.details,
            report_file=promised_report_name(ctx, deps.now()),
        ),
        deadline=ctx.deadline,
    )
    ctx.escalations.append(result)
    return _pagerduty_result(result, "escalation")


async def acknowledge_alert(deps: ToolDeps, args: AcknowledgeArgs, ctx: RunContext) -> JsonObject:
    dedup_key = ctx.alert.incident_id
    if ctx.shadow:
        return withhold(ctx, f"PagerDuty {args.action} for {dedup_key}")
    send = deps.pagerduty.acknowledge if args.action == "acknowledge" else deps.pagerduty.resolve
    result = await send(dedup_key=dedup_key, trace_id=ctx.trace_id, deadline=ctx.deadline)
    logger.info("PagerDuty %s for %s (note: %s)", args.action, dedup_key, args.note or "-")
    return _pagerduty_result(result, args.action)


def _pagerduty_result(result: EscalationResult, what: str) -> JsonObject:
    payload = asdict(result)
    if not result.ok:
        raise ToolError(f"PagerDuty {what} failed: {result.error}", payload)
    return payload


async def write_incident_report(deps: ToolDeps, args: ReportArgs, ctx: RunContext) -> JsonObject:
    requested = check_report_filename(args.filename) if args.filename else None
    previous = ctx.report_filename
    # Chosen before the first await: concurrent calls in one turn agree on one file.
    filename = promised_report_name(ctx, deps.now(), requested)
    # Bounded already: arguments are at most MAX_ARGUMENT_CHARS (tools.executor), well under
    # the report cap `write_report` applies.
    content = deps.redactor.redact(args.content)
    try:
        await asyncio.to_thread(write_report, deps.settings.incidents_dir, filename, content)
    except OSError as exc:
        raise ToolError(f"could not write report {filename}: {exc.strerror or exc}") from exc
    ctx.report_content = content
    return _report_result(filename, previous, requested, len(content))


def _report_result(
    filename: str, previous: str | None, requested: str | None, chars: int
) -> JsonObject:
    result: JsonObject = {"written": True, "filename": filename, "chars": chars}
    if previous:
        result["note"] = f"overwrote this incident's report {previous} (one file per incident)"
        if requested and requested != previous:
            result["note"] += f"; the requested name {requested} was not used"
    return result


def _posts(args: CallOpsArgs) -> bool:
    return args.method == "POST"


TOOLS: tuple[Tool, ...] = (
    Tool("call_ops_endpoint", descriptions.CALL_OPS, CallOpsArgs, call_ops_endpoint, _posts),
    Tool("query_cloud_logs", descriptions.LOGS, QueryLogsArgs, query_cloud_logs, cloud=True),
    Tool(
        "query_cloud_metrics",
        descriptions.METRICS,
        QueryMetricsArgs,
        query_cloud_metrics,
        cloud=True,
    ),
    Tool("scale_service", descriptions.SCALE, ScaleArgs, scale_service, ALWAYS_WRITES),
    Tool(
        "escalate_pagerduty",
        descriptions.ESCALATE,
        EscalateArgs,
        escalate_pagerduty,
        ALWAYS_WRITES,
    ),
    Tool(
        "acknowledge_alert",
        descriptions.ACKNOWLEDGE,
        AcknowledgeArgs,
        acknowledge_alert,
        ALWAYS_WRITES,
    ),
    Tool(
        "write_incident_report",
        descriptions.REPORT,
        ReportArgs,
        write_incident_report,
        cacheable=False,
    ),
)
