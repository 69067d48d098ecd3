"""The scripted reference policy: what `make eval` runs without `LLM_API_KEY`.

A generic SRE heuristic served through the fake OpenAI-compatible server, so the whole
runtime is exercised: read `/ops/status`; a service that does not answer is escalated; a
healthy one with healthy checks is a false alarm; a failing dependency in `/ops/health` is
escalated; otherwise restart, if the service offers `POST /ops/restart`, verify, and escalate
when that did not make it healthy. It knows only what the conversation shows, never the
scenario's expectations: its numbers measure the harness, not a model.
"""

from __future__ import annotations

import json
from typing import Any

from demo.scripted_llm import Conversation, Observation, read_conversation, with_usage
from demo.simulators.llm import Call, Step, say, tools

LABEL = "scripted reference policy (no LLM_API_KEY): these numbers measure the harness, not a model"
HEALTHY = {"healthy", "ok", "up", "pass", "passing"}
FAILING = {"failing", "down", "error", "unhealthy", "unreachable", "fail", "critical"}


def reference_policy(messages: list[dict[str, Any]]) -> Step:
    """The next answer for this conversation (a `FakeLLM` policy)."""
    return with_usage(_decide(read_conversation(messages)), messages)


def _decide(c: Conversation) -> Step:
    if c.calls("write_incident_report"):
        return say(f"{c.service}: done; the incident report is written.")
    verified = _verified(c)
    if c.calls("escalate_pagerduty") or verified:
        return tools(Call("write_incident_report", {"content": _report(c)}))
    if verified is False:
        return _escalate(c, "still not healthy after a restart")
    statuses = c.reads("/ops/status")
    if not statuses:
        return tools(_call(c.service, "GET", "/ops/status"))
    if failed(statuses[0]):
        return _escalate(c, "its /ops/status does not answer")
    if not c.reads("/ops/health"):
        return tools(_call(c.service, "GET", "/ops/health"))
    if failing := failing_checks(c.latest("/ops/health")):
        return _escalate(c, f"a dependency is failing: {', '.join(failing)}")
    if healthy(statuses[0].body):
        return tools(Call("write_incident_report", {"content": _report(c)}))
    return _remediate(c)


def _remediate(c: Conversation) -> Step:
    restarts = c.remediations()
    if not restarts:
        return tools(_call(c.service, "POST", "/ops/restart"))
    if failed(restarts[-1]):
        return _escalate(c, "the service offers no restart that worked")
    return tools(_call(c.service, "GET", "/ops/status"))


def _verified(c: Conversation) -> bool | None:
    """After a restart and a fresh status read: healthy or not; else None."""
    statuses = c.reads("/ops/status")
    if not c.remediations() or len(statuses) < 2:
        return None
    return healthy(statuses[-1].body)


def healthy(status: dict[str, Any]) -> bool:
    return str(status.get("status", "")).lower() in HEALTHY


def failed(observation: Observation) -> bool:
    """The call came back as an `{"error": ...}` result."""
    result = observation.result
    return not isinstance(result, dict) or "error" in result


def failing_checks(health: dict[str, Any]) -> list[str]:
    """Names of the checks (or dependencies) a health body reports as failing."""
    checks = health.get("checks") or health.get("dependencies") or {}
    if not isinstance(checks, dict):
        return []
    return [
        name
        for name, check in checks.items()
        if str(check.get("status", "") if isinstance(check, dict) else check).lower() in FAILING
    ]


def _call(service: str, method: str, endpoint: str) -> Call:
    arguments = {"service": service, "endpoint": endpoint, "method": method}
    return Call("call_ops_endpoint", arguments)


def _escalate(c: Conversation, cause: str) -> Step:
    summary = f"{c.service}: {cause}; not fixable through /ops/*"
    details = "\n".join(_evidence(c))
    return tools(Call("escalate_pagerduty", {"summary": summary, "details": details}))


def _report(c: Conversation) -> str:
    escalated = bool(c.calls("escalate_pagerduty"))
    verdict = "escalated to a human" if escalated else "resolved"
    actions = [f"- {o.method} {o.endpoint}: {_short(o.result)}" for o in c.remediations()]
    sections = [
        f"# {c.service}: {verdict}",
        "## Evidence\n" + "\n".join(_evidence(c)),
        "## Actions\n" + ("\n".join(actions) or "- None."),
    ]
    return "\n\n".join(sections)


def _evidence(c: Conversation) -> list[str]:
    return [
        f"- {o.method} {o.endpoint}: {_short(o.result)}"
        for o in c.calls("call_ops_endpoint")
        if o.method == "GET"
    ]


def _short(value: Any, limit: int = 600) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"
