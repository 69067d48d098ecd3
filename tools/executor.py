"""The tool executor: the one boundary between the model's tool calls and the tools.

`execute` never raises (except `CancelledError`): unknown tools, unparsable or invalid
arguments, guardrail refusals and downstream failures all come back as an
`{"error": ...}` result the model can read. Every result is JSON, redacted, then cut to
TOOL_OUTPUT_MAX_CHARS (redaction first, so a cut never leaves part of a secret).

Arguments are bounded before anything else looks at them (CONTRACT §4): longer than
`MAX_ARGUMENT_CHARS`, or nested deeper than `MAX_DEPTH` levels, is an error result, never
a parse that could exhaust memory or the stack.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx
from opentelemetry import trace
from pydantic import BaseModel, ValidationError

import telemetry
from config import Settings
from intake.sanitize import MAX_DEPTH, TooDeep, cut, load_json
from tools.cloud import CloudTools, NotConfiguredCloud
from tools.context import RunContext, ToolOutcome
from tools.errors import Refused, ToolError
from tools.handlers import TOOLS
from tools.pagerduty import PagerDutyEvents
from tools.redact import Redactor
from tools.registry import DependencyObserver, NoObserver, Tool, ToolDeps

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

CACHED_NOTE = "identical call already made in this run; this is its first result"
# The contract's 64 KiB of model text per message, in characters; a report written through
# write_incident_report is part of it (no model writes a longer one in one answer).
MAX_ARGUMENT_CHARS = 64 * 1024


class ArgumentsError(Exception):
    """The model's arguments could not be parsed or validated."""


def decode_arguments(arguments: str) -> Any:
    """The decoded JSON of a tool call's arguments (None when blank), within the bounds;
    `ArgumentsError` otherwise, its message completing "arguments ..."."""
    if len(arguments) > MAX_ARGUMENT_CHARS:
        raise ArgumentsError(
            f"are {len(arguments)} characters long; at most {MAX_ARGUMENT_CHARS} are accepted"
        )
    try:
        return load_json(arguments) if arguments.strip() else None  # bounded and clean
    except TooDeep:
        raise ArgumentsError(f"are nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise ArgumentsError(f"are not valid JSON: {exc}") from None


def parse_arguments(tool: Tool, arguments: str) -> BaseModel:
    """Validated arguments, or `ArgumentsError` with a message naming each bad field."""
    try:
        raw = decode_arguments(arguments)
    except ArgumentsError as exc:
        raise ArgumentsError(f"arguments for {tool.name} {exc}") from None
    if not isinstance(raw, dict):
        raise ArgumentsError(f"arguments for {tool.name} must be a JSON object")
    try:
        return tool.arguments.model_validate(raw)
    except ValidationError as exc:
        raise ArgumentsError(f"invalid arguments for {tool.name}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "arguments"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


class ToolExecutor:
    """Runs the model's tool calls for one runtime; state of a run lives in `RunContext`."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        settings: Settings,
        pagerduty: PagerDutyEvents,
        redactor: Redactor | None = None,
        cloud: CloudTools | None = None,
        observer: DependencyObserver | None = None,
    ) -> None:
        self._settings = settings
        self._redactor = redactor or Redactor(settings.secret_values())
        self._deps = ToolDeps(
            http=http,
            settings=settings,
            pagerduty=pagerduty,
            cloud=cloud or NotConfiguredCloud(),
            redactor=self._redactor,
            observer=observer or NoObserver(),
        )
        offer_cloud = settings.cloud_provider != "none"
        self._tools = {t.name: t for t in TOOLS if offer_cloud or not t.cloud}
        self._definitions = [t.definition() for t in self._tools.values()]

    def definitions(self) -> list[dict[str, Any]]:
        """The OpenAI `tools` list (function format), built once: serialize it, don't mutate it
        (it is sent with every turn, so copying it each time was a tenth of a turn's cost)."""
        return self._definitions

    async def execute(self, name: str, arguments: str, ctx: RunContext) -> ToolOutcome:
        """Run one tool call; never raises except `CancelledError`."""
        with tracer.start_as_current_span(
            telemetry.SPAN_TOOL_EXECUTE, attributes={"sre_agent.tool.name": name[:64]}
        ) as span:
            started = time.monotonic()
            outcome = await self._execute(name, arguments, ctx)
            span.set_attribute("sre_agent.tool.ok", outcome.ok)
            span.set_attribute("sre_agent.tool.write", outcome.write)
            level = logging.INFO if outcome.write or not outcome.ok else logging.DEBUG
            logger.log(
                level,
                "tool %s ok=%s write=%s in %.0f ms%s",
                name[:64],
                outcome.ok,
                outcome.write,
                (time.monotonic() - started) * 1000,
                f": {outcome.error}" if outcome.error else "",
            )
            return outcome

    async def _execute(self, name: str, arguments: str, ctx: RunContext) -> ToolOutcome:
        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(self._tools)
            return self._error(f"unknown tool {name[:64]!r}; available tools: {known}")
        try:
            args = parse_arguments(tool, arguments)
        except ArgumentsError as exc:
            return self._error(str(exc))
        if tool.uses_cache(args):
            return await self._cached(tool, args, ctx)
        write = tool.writes(args)
        if write:
            ctx.read_cache.clear()
        outcome, _full = await self._call(tool, args, ctx, write=write)
        return outcome

    async def _cached(self, tool: Tool, args: BaseModel, ctx: RunContext) -> ToolOutcome:
        key = f"{tool.name}:{json.dumps(args.model_dump(mode='json'), sort_keys=True)}"
        if key in ctx.read_cache:
            text = f'{{"cached": true, "note": "{CACHED_NOTE}", "result": {ctx.read_cache[key]}}}'
            return ToolOutcome(self._cut(text), ok=True, error=None, write=False)
        outcome, full = await self._call(tool, args, ctx, write=False)
        if outcome.ok:
            ctx.read_cache[key] = full
        return outcome

    async def _call(
        self, tool: Tool, args: BaseModel, ctx: RunContext, *, write: bool
    ) -> tuple[ToolOutcome, str]:
        """The outcome, and the redacted result before the cut (what the cache keeps)."""
        try:
            result = await tool.handler(self._deps, args, ctx)
        except Refused as exc:
            return self._failure(exc, write=False)
        except ToolError as exc:
            return self._failure(exc, write=write)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("tool %s failed unexpectedly", tool.name, exc_info=True)
            message = f"internal error in {tool.name}: {type(exc).__name__}"
            return self._failure(ToolError(message), write=write)
        full = self._redactor.redact(_dumps(result))
        return ToolOutcome(self._cut(full), ok=True, error=None, write=write), full

    def _failure(self, exc: ToolError, *, write: bool) -> tuple[ToolOutcome, str]:
        details = {k: v for k, v in exc.details.items() if k != "error"}
        if exc.redacted and not details:
            message, full = exc.message, _dumps({"error": exc.message})
        else:
            message = self._redactor.redact(exc.message)
            full = self._redactor.redact(_dumps({"error": exc.message, **details}))
        return ToolOutcome(self._cut(full), ok=False, error=message, write=write), full

    def _error(self, message: str) -> ToolOutcome:
        outcome, _full = self._failure(ToolError(message), write=False)
        return outcome

    def _cut(self, text: str) -> str:
        return cut(text, self._settings.tool_output_max_chars)
