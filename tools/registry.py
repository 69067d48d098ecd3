"""The tool registry: what a tool is, what its handler receives, and its OpenAI schema.

Adding a tool = one arguments model (tools.arguments) + one handler (tools.handlers) +
one `Tool(...)` line in `tools.handlers.TOOLS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from pydantic import BaseModel

from config import Settings
from tools.cloud import CloudTools
from tools.context import RunContext
from tools.pagerduty import PagerDutyEvents
from tools.redact import Redactor

JsonObject = dict[str, Any]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DependencyObserver(Protocol):
    """Told how each downstream call went (state.py feeds /ops/dependencies from it)."""

    def record_dependency(
        self, name: str, *, ok: bool, detail: str | None = None, latency_ms: float | None = None
    ) -> None: ...


class NoObserver:
    def record_dependency(
        self, name: str, *, ok: bool, detail: str | None = None, latency_ms: float | None = None
    ) -> None:
        pass


@dataclass(frozen=True, slots=True)
class ToolDeps:
    """Everything a handler may use; built once by the executor."""

    http: httpx.AsyncClient
    settings: Settings
    pagerduty: PagerDutyEvents
    cloud: CloudTools
    redactor: Redactor
    now: Callable[[], datetime] = field(default=_utcnow)
    observer: DependencyObserver = field(default_factory=NoObserver)


Handler = Callable[[ToolDeps, Any, RunContext], Awaitable[JsonObject]]


def _never(_args: Any) -> bool:
    return False


def _always(_args: Any) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Tool:
    """One tool: its name and description for the model, its arguments and its handler.

    `writes(args)` says whether a call changes something outside (shadow mode withholds
    it; it clears the run's read cache). A `cacheable` call that does not write is
    answered from the read cache when repeated identically within a run.
    """

    name: str
    description: str
    arguments: type[BaseModel]
    handler: Handler
    writes: Callable[[Any], bool] = _never
    cacheable: bool = True
    cloud: bool = False  # offered only when CLOUD_PROVIDER is set

    def uses_cache(self, args: BaseModel) -> bool:
        return self.cacheable and not self.writes(args)

    def definition(self) -> JsonObject:
        """The OpenAI `tools` entry (function format)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": clean_schema(self.arguments.model_json_schema()),
            },
        }


ALWAYS_WRITES = _always


def clean_schema(node: Any) -> Any:
    """Drop pydantic's `title` keywords (noise for the model), keeping property names."""
    if isinstance(node, list):
        return [clean_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    cleaned: JsonObject = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs"):
            cleaned[key] = {name: clean_schema(sub) for name, sub in value.items()}
        else:
            cleaned[key] = clean_schema(value)
    return cleaned
