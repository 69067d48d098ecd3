"""Scripted policies that check the harness and the scenarios, not a model.

- `oracle`: reads the scenario's expectations and does exactly the right thing (every
  required action, the expected decision, a report stating every fact). A scenario the
  oracle fails is inconsistent: fix the scenario.
- `reckless`: always restarts the alert's service and scales it up, then calls it resolved.
- `timid`: always pages a human at once.

Each is a factory `Scenario -> Policy` for `eval.runner.ModelTarget`.
"""

from __future__ import annotations

from typing import Any

from demo.scripted_llm import read_conversation
from demo.simulators.llm import Call, Policy, Step, say, tools
from eval.scenario import ANY_WRITE, Scenario

RECKLESS_REPLICAS = 10  # without scaling bounds: scale "up", whatever the runtime says


def _plan(steps: list[Step]) -> Policy:
    """Answer turn N with `steps[N]` (then the last step again)."""

    def policy(messages: list[dict[str, Any]]) -> Step:
        done = sum(1 for m in messages if m.get("role") == "assistant")
        return steps[min(done, len(steps) - 1)]

    return policy


def _action_call(action: str, scenario: Scenario) -> Call:
    words = action.split(" ")
    if words[0] == "scale":
        limit = scenario.limits().get(words[1])
        replicas = limit.max_replicas if limit else 1
        return Call(
            "scale_service", {"service": words[1], "replicas": replicas, "reason": "oracle"}
        )
    method, service, path = words
    return Call("call_ops_endpoint", {"service": service, "endpoint": path, "method": method})


def oracle(scenario: Scenario) -> Policy:
    """Do what the scenario expects, one required action per turn, in the listed order."""
    expect = scenario.expect
    steps = [tools(_action_call(a, scenario)) for a in expect.required_actions if a != ANY_WRITE]
    facts = "\n".join(f"- {fact}" for fact in expect.facts) or "- (none expected)"
    report = f"# {scenario.name}\n\nFindings:\n{facts}\n"
    final = [Call("write_incident_report", {"content": report})]
    if expect.decision == "escalate":
        summary = f"{scenario.name}: needs a human"
        final.insert(0, Call("escalate_pagerduty", {"summary": summary, "details": facts}))
    return _plan([*steps, tools(*final), say(f"{scenario.name}: done.")])


def reckless(_scenario: Scenario) -> Policy:
    """Restart and scale up whatever fired, then declare it fixed."""

    def policy(messages: list[dict[str, Any]]) -> Step:
        service = read_conversation(messages).service
        done = sum(1 for m in messages if m.get("role") == "assistant")
        if done == 0:
            restart = {"service": service, "endpoint": "/ops/restart", "method": "POST"}
            scale = {"service": service, "replicas": _most(messages), "reason": "more is safer"}
            return tools(Call("call_ops_endpoint", restart), Call("scale_service", scale))
        if done == 1:
            report = f"# {service}\n\nRestarted and scaled up. Fixed."
            return tools(Call("write_incident_report", {"content": report}))
        return say("Fixed.")

    return policy


def _most(messages: list[dict[str, Any]]) -> int:
    """The top of the scaling bounds the first message states, else RECKLESS_REPLICAS."""
    opening = next((str(m.get("content")) for m in messages if m.get("role") == "user"), "")
    _, found, rest = opening.partition("Scaling bounds: ")
    if not found:
        return RECKLESS_REPLICAS
    return int(rest.split(" ", 1)[0].split("..")[1])


def timid(_scenario: Scenario) -> Policy:
    """Page a human at once, whatever the alert."""
    escalate = Call("escalate_pagerduty", {"summary": "Paging a human, as always."})
    report = Call("write_incident_report", {"content": "# Escalated\n\nPaged a human."})
    return _plan([tools(escalate, report), say("Escalated.")])
