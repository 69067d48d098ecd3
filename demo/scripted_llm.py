"""A scripted stand-in for a real model: a reactive policy for `demo.simulators.llm.FakeLLM`.

It reads the conversation the runtime sends (the first message names the target service;
tool results arrive in delimited blocks) and decides like a careful SRE:
status → health → (a failing dependency: escalate) → errors + metrics → the remediation
the evidence points at → verify → report → final answer. It knows no more than the tool
results tell it; nothing here peeks at the demo services.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from demo.simulators.llm import Call, FakeLLM, Step, say, tools

LABEL = "scripted local LLM — set LLM_API_KEY to use a real model"

_SERVICE = re.compile(r"Target service: `([^`]+)`")
_INCIDENT = re.compile(r"Incident id: (\S+)\.")
_TOOL_OUTPUT = re.compile(r"<<<TOOL_OUTPUT \w+>>>\n(.*)\n<<<END_TOOL_OUTPUT", re.DOTALL)
FAILING = {"failing", "down", "error", "unhealthy", "unreachable"}


@dataclass(slots=True)
class Observation:
    """One tool call of the conversation and its (decoded) result."""

    name: str
    arguments: dict[str, Any]
    result: Any

    @property
    def endpoint(self) -> str:
        endpoint = str(self.arguments.get("endpoint", ""))
        return endpoint if endpoint.startswith("/ops/") else f"/ops/{endpoint}"

    @property
    def method(self) -> str:
        return str(self.arguments.get("method", "GET")).upper()

    @property
    def body(self) -> dict[str, Any]:
        result = self.result if isinstance(self.result, dict) else {}
        inner = result.get("result", result) if result.get("cached") else result
        body = inner.get("body") if isinstance(inner, dict) else None
        return body if isinstance(body, dict) else {}


@dataclass(slots=True)
class Conversation:
    """What the model has seen so far."""

    service: str
    incident_id: str
    observations: list[Observation] = field(default_factory=list)

    def calls(self, name: str) -> list[Observation]:
        return [o for o in self.observations if o.name == name]

    def reads(self, endpoint: str) -> list[Observation]:
        return [
            o
            for o in self.calls("call_ops_endpoint")
            if o.method == "GET" and o.endpoint == endpoint
        ]

    def latest(self, endpoint: str) -> dict[str, Any]:
        found = self.reads(endpoint)
        return found[-1].body if found else {}

    def remediations(self) -> list[Observation]:
        return [o for o in self.calls("call_ops_endpoint") if o.method == "POST"]


def read_conversation(messages: list[dict[str, Any]]) -> Conversation:
    opening = next((str(m.get("content")) for m in messages if m.get("role") == "user"), "")
    service = _SERVICE.search(opening)
    incident = _INCIDENT.search(opening)
    conversation = Conversation(
        service=service.group(1) if service else "unknown",
        incident_id=incident.group(1) if incident else "unknown",
    )
    results = {
        m.get("tool_call_id"): _decode(m.get("content")) for m in messages if m["role"] == "tool"
    }
    for message in messages:
        for call in message.get("tool_calls") or []:
            function = call["function"]
            arguments = _json(function.get("arguments")) or {}
            conversation.observations.append(
                Observation(function["name"], arguments, results.get(call["id"]))
            )
    return conversation


def _decode(content: object) -> Any:
    found = _TOOL_OUTPUT.search(str(content or ""))
    return _json(found.group(1)) if found else None


def _json(text: object) -> Any:
    try:
        return json.loads(str(text))
    except ValueError:
        return None


# -- the decision --------------------------------------------------------------------------


def sre_policy(messages: list[dict[str, Any]]) -> Step:
    """The next answer for this conversation (a FakeLLM `policy`)."""
    conversation = read_conversation(messages)
    step = _decide(conversation)
    return with_usage(step, messages)


def _decide(c: Conversation) -> Step:
    if c.calls("write_incident_report"):
        return say(_final_answer(c))
    if c.calls("escalate_pagerduty") or _verified(c):  # paged, or the fix held
        return tools(Call("write_incident_report", {"content": _report(c)}))
    for endpoint in ("status", "health"):
        if not c.reads(f"/ops/{endpoint}"):
            return tools(_read(c.service, endpoint))
    if failing := _failing_checks(c.latest("/ops/health")):
        return _escalate(c, f"dependency failing: {', '.join(failing)}")
    if not c.reads("/ops/errors"):
        return tools(_read(c.service, "errors"), _read(c.service, "metrics"))
    return _act(c)


def _act(c: Conversation) -> Step:
    if not c.remediations():
        if _pool_exhausted(c):
            return tools(_write(c.service, "restart"))
        return _escalate(c, "no cause found that an /ops/* remediation addresses")
    if len(c.reads("/ops/status")) < 2:
        return tools(_read(c.service, "status"))
    return _escalate(c, "status not healthy after one remediation")


def _verified(c: Conversation) -> bool | None:
    """After a remediation and a fresh status read: healthy or not; else None."""
    statuses = c.reads("/ops/status")
    if not c.remediations() or len(statuses) < 2:
        return None
    return statuses[-1].body.get("status") == "healthy"


def _failing_checks(health: dict[str, Any]) -> list[str]:
    checks = health.get("checks", {})
    return [
        name
        for name, check in checks.items()
        if isinstance(check, dict) and str(check.get("status", "")).lower() in FAILING
    ]


def _pool_exhausted(c: Conversation) -> bool:
    errors = c.latest("/ops/errors").get("errors", [])
    timeouts = any("PoolTimeout" in str(e.get("type", "")) for e in errors)
    pool = c.latest("/ops/metrics").get("db_pool", {})
    return timeouts and pool.get("in_use", 0) >= pool.get("max", 1)


def _read(service: str, endpoint: str) -> Call:
    return Call("call_ops_endpoint", {"service": service, "endpoint": f"/ops/{endpoint}"})


def _write(service: str, endpoint: str) -> Call:
    arguments = {"service": service, "endpoint": f"/ops/{endpoint}", "method": "POST"}
    return Call("call_ops_endpoint", arguments)


def _escalate(c: Conversation, cause: str) -> Step:
    summary = f"{c.service}: {_symptom(c)}; {cause}. Not fixable through /ops/*."
    details = "\n".join(_evidence(c))
    arguments = {"summary": summary, "severity": "critical", "details": details}
    return tools(Call("escalate_pagerduty", arguments))


# -- what it writes ------------------------------------------------------------------------


def _symptom(c: Conversation) -> str:
    reads = c.reads("/ops/status")
    first = reads[0].body if reads else {}
    signals = first.get("golden_signals", {})
    status = first.get("status", "unknown")
    return (
        f"{status}, error rate {signals.get('error_rate', '?')}, "
        f"p99 {signals.get('latency_p99_ms', '?')} ms"
    )


def _evidence(c: Conversation) -> list[str]:
    lines = [f"- /ops/status (first read): {_first_status(c)}"]
    health = c.latest("/ops/health")
    for name, check in health.get("checks", {}).items():
        lines.append(f"- /ops/health {name}: {json.dumps(check, sort_keys=True)}")
    for error in c.latest("/ops/errors").get("errors", [])[:3]:
        lines.append(
            f"- /ops/errors: {error.get('type')} x{error.get('count')}: {error.get('last_message')}"
        )
    pool = c.latest("/ops/metrics").get("db_pool")
    if pool:
        lines.append(
            f"- /ops/metrics db_pool in_use history: {pool.get('in_use_history')}"
            f" (max {pool.get('max')})"
        )
    return lines


def _first_status(c: Conversation) -> str:
    reads = c.reads("/ops/status")
    return json.dumps(reads[0].body.get("golden_signals", {}), sort_keys=True) if reads else "-"


def _report(c: Conversation) -> str:
    resolved = bool(_verified(c)) and not c.calls("escalate_pagerduty")
    verdict = "resolved" if resolved else "escalated"
    sections = [
        f"# {c.service}: {_headline(c)} — {verdict}",
        "## Summary\n" + _summary(c, resolved),
        "## Evidence\n" + "\n".join(_evidence(c)),
        "## Actions\n" + _actions(c),
        "## Verification\n" + _verification(c),
        "## Follow-up\n" + _follow_up(c, resolved),
    ]
    return "\n\n".join(sections)


def _headline(c: Conversation) -> str:
    if _failing_checks(c.latest("/ops/health")):
        return "dependency down, requests failing"
    return "DB connection pool exhausted, latency and errors up"


def _summary(c: Conversation, resolved: bool) -> str:
    if resolved:
        return (
            f"The {c.service} database connection pool leaked connections until it was "
            "exhausted; requests then timed out waiting for a connection (PoolTimeoutError), "
            "raising p99 latency and the error rate. A restart returned the connections; "
            "status is healthy again."
        )
    failing = ", ".join(_failing_checks(c.latest("/ops/health"))) or "unknown"
    return (
        f"{c.service} is failing because its dependency `{failing}` is down. Nothing the "
        "service's /ops/* API offers can bring that dependency back, so a human was paged."
    )


def _actions(c: Conversation) -> str:
    lines = [f"- POST {o.endpoint} on {c.service}: {_outcome(o)}" for o in c.remediations()]
    lines += [
        f"- Paged PagerDuty: {o.arguments.get('summary')}" for o in c.calls("escalate_pagerduty")
    ]
    return "\n".join(lines) or "- None."


def _outcome(observation: Observation) -> str:
    body = observation.body
    return json.dumps(body, sort_keys=True) if body else "error"


def _verification(c: Conversation) -> str:
    if _verified(c) is None:
        return "- Not applicable: no remediation was possible."
    after = c.reads("/ops/status")[-1].body
    return f"- /ops/status after the restart: {after.get('status')} " + json.dumps(
        after.get("golden_signals", {}), sort_keys=True
    )


def _follow_up(c: Conversation, resolved: bool) -> str:
    if resolved:
        return (
            "- Find and fix the connection leak (a code path that does not return its "
            "connection); the pool will fill up again until then.\n"
            "- Alert on db_pool saturation > 80% to catch it before customers do."
        )
    return f"- Restore the {c.service} database, then confirm /ops/health is green."


def _final_answer(c: Conversation) -> str:
    if c.calls("escalate_pagerduty"):
        return f"{c.service}: escalated to the on-call human; the incident report is written."
    return f"{c.service}: remediated with a restart and verified healthy; report written."


# -- usage ---------------------------------------------------------------------------------


def with_usage(step: Step, messages: list[dict[str, Any]]) -> Step:
    """`step` with plausible token counts for a scripted answer (about four characters per
    token)."""
    prompt_chars = sum(len(json.dumps(m, ensure_ascii=False)) for m in messages)
    answer_chars = len(step.text or "") + sum(len(json.dumps(c.arguments)) for c in step.calls)
    return Step(
        calls=step.calls,
        text=step.text,
        prompt_tokens=prompt_chars // 4,
        completion_tokens=answer_chars // 4 + 12,
    )


def scripted_llm() -> FakeLLM:
    """A local OpenAI-compatible server that answers with `sre_policy`."""
    return FakeLLM(policy=sre_policy)


def paced(app: ASGIApp, seconds: float) -> ASGIApp:
    """`app`, answering each HTTP request after `seconds` (a model takes time to think),
    so a person watching the demo sees the turns go by."""

    async def thinking(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and seconds > 0:
            await asyncio.sleep(seconds)
        await app(scope, receive, send)

    return thinking
