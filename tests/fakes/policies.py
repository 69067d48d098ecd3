"""Reactive FakeLLM policies for end-to-end tests: read the conversation, answer one step.

    llm = FakeLLM(policy=status_then_conclude(holds={"generic:blocker": release}))

`status_then_conclude` reads the target service from the first user message, calls its
`/ops/status` once, then concludes. A run whose incident id starts with a key of `holds`
keeps its first LLM answer until that event is set (the test sets it in `finally`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

from demo.simulators.llm import Call, Policy, Step, say, tools

_SERVICE = re.compile(r"Target service: `([^`]+)`")
_INCIDENT = re.compile(r"Incident id: (\S+)\.")


def opening(messages: list[dict[str, Any]]) -> str:
    return next((str(m.get("content")) for m in messages if m.get("role") == "user"), "")


def incident_of(request: dict[str, Any]) -> str | None:
    """The incident id a recorded chat-completions request is about."""
    found = _INCIDENT.search(opening(request["messages"]))
    return found.group(1) if found else None


def status_then_conclude(holds: Mapping[str, asyncio.Event] | None = None) -> Policy:
    def policy(messages: list[dict[str, Any]]) -> Step:
        text = opening(messages)
        incident = _INCIDENT.search(text)
        hold = _hold_for(incident.group(1) if incident else "", holds or {})
        if any(m.get("role") == "tool" for m in messages):
            return say("Checked status; nothing else to do.")
        service = _SERVICE.search(text)
        if service is None:
            return say("No service to diagnose.", hold=hold)
        status = Call("call_ops_endpoint", {"service": service.group(1), "endpoint": "status"})
        return tools(status, hold=hold)

    return policy


def _hold_for(incident_id: str, holds: Mapping[str, asyncio.Event]) -> asyncio.Event | None:
    return next((event for key, event in holds.items() if incident_id.startswith(key)), None)


def propose_then_conclude(*writes: Call, report: str | None = None) -> Policy:
    """Approve-mode runs: the first turn makes `writes` (each a proposed remediation), the
    next writes `report` (when given), then the model concludes quoting the tool results
    it read, so a test can see what the writes returned."""

    def policy(messages: list[dict[str, Any]]) -> Step:
        results = [str(m.get("content")) for m in messages if m.get("role") == "tool"]
        if not results:
            return tools(*writes)
        if report is not None and not any('"written": true' in r for r in results):
            return tools(Call("write_incident_report", {"content": report}))
        return say("Concluded. Tool results: " + " | ".join(results))

    return policy
