"""The run context a tool call gets, for tests that call tools without an agent run."""

from __future__ import annotations

from typing import Any

from models import Alert, Priority, Provider
from tools import RunContext


def run_context(*, trace_id: str = "trace-42", shadow: bool = False, **alert: Any) -> RunContext:
    """A run for `generic:inc-42` on `worker` (P2); `alert` overrides any alert field."""
    values: dict[str, Any] = {
        "incident_id": "generic:inc-42",
        "provider": Provider.GENERIC,
        "service": "worker",
        "priority": Priority.P2,
        "summary": "worker error rate high",
        **alert,
    }
    return RunContext(alert=Alert.model_validate(values), trace_id=trace_id, shadow=shadow)
