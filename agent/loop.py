"""The agent loop: complete → finish if no tool calls → run the calls concurrently → repeat.

One `Agent` serves every run; per-run state lives in the `AlertRecord` (what operators
see, its `Transcript` the conversation as sent and received) and the tools' `RunContext`
(what tools share). The loop ends on an answer without tool calls, or on a limit (turns,
wall clock, tokens) or an LLM error that survived retries; in the latter cases the runtime
escalates with what was found so far.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from opentelemetry import trace

from agent import prompt
from agent.approvals import RunApprovals
from agent.completion import Completion, Message, ToolCall, Unreadable
from agent.llm import LLM, LLMError
from agent.report import ReportInput, ReportWriter
from agent.transcript import Transcript
from config import Settings
from intake import AlertRecord
from intake.approvals import Desk
from intake.sanitize import cut
from models import AlertStatus, ToolCallRecord
from state import DEP_LLM, DEP_PAGERDUTY
from telemetry import SPAN_AGENT_TURN
from tools import (
    EscalationResult,
    Pager,
    Redactor,
    RunContext,
    ToolExecutor,
    ToolOutcome,
    promised_report_name,
)
from tools.executor import MAX_ARGUMENT_CHARS, ArgumentsError, decode_arguments

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

# Of the (at most MAX_TOOL_CALLS_PER_TURN) calls of one message, this many run at once: the
# model's parallelism must not become a burst against one service or the event loop.
MAX_PARALLEL_TOOLS = 8
RECORDED_ARGUMENT_CHARS = 4096  # arguments kept in the record when they cannot be decoded


class RunObserver(Protocol):
    """What runs report for /ops/* and telemetry (implemented by `state.RuntimeState`)."""

    def record_tokens(self, *, input_tokens: int, output_tokens: int) -> None: ...
    def record_run(self, *, ok: bool, duration_s: float, tokens: int) -> None: ...
    def record_error(self, kind: str, message: str) -> None: ...
    def record_dependency(
        self, name: str, *, ok: bool, detail: str | None = None, latency_ms: float | None = None
    ) -> None: ...


class NoRunObserver:
    def record_tokens(self, *, input_tokens: int, output_tokens: int) -> None:
        pass

    def record_run(self, *, ok: bool, duration_s: float, tokens: int) -> None:
        pass

    def record_error(self, kind: str, message: str) -> None:
        pass

    def record_dependency(
        self, name: str, *, ok: bool, detail: str | None = None, latency_ms: float | None = None
    ) -> None:
        pass


UNKNOWN_OUTCOME = (
    "outcome unknown: the runtime restarted during this call; check before repeating it"
)

Checkpoint = Callable[[AlertRecord], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Approvals:
    """What approve mode needs: the runtime's approval desk, and the pager for the
    "Approval needed" pages."""

    desk: Desk
    pager: Pager


@dataclass(slots=True)
class RunEnd:
    """How a conversation ended. `stop_reason` is None when the model concluded."""

    stop_reason: str | None
    final_text: str | None = None
    budget_exceeded: bool = False


class Agent:
    """The intake `Runner`: diagnoses one alert and returns resolved or escalated."""

    def __init__(
        self,
        *,
        llm: LLM,
        tools: ToolExecutor,
        reports: ReportWriter,
        settings: Settings,
        redactor: Redactor,
        observer: RunObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        approvals: Approvals | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        """`approvals`: the desk and pager of approve mode (None: writes are not held).
        `checkpoint`: stores a run's progress at every step and delivers the notices that
        arrived for it (STATE_BACKEND=postgres; None: the run lives in this process only)."""
        self._llm = llm
        self._approvals = approvals
        self._checkpoint = checkpoint
        self._tools = tools
        self._reports = reports
        self._settings = settings
        self._redactor = redactor
        self._observer = observer or NoRunObserver()
        self._clock = clock

    async def __call__(self, record: AlertRecord) -> AlertStatus:
        """Run the agent for `record`: from the start, or, when it carries a stored
        transcript (a run another replica began), from where that run stopped."""
        started = self._clock()
        ctx = run_context(
            record,
            shadow=self._settings.shadow,
            deadline=started + self._settings.agent_timeout_seconds,
        )
        if record.run is not None:  # resumed: what the tools found before
            resumed_from(ctx, record.run)
        record.run = ctx  # a shutdown cut-off still reports what was found
        if record.transcript is None:
            record.transcript = Transcript(model=self._settings.llm_model)
        transcript = record.transcript
        approvals = self._approver(record, ctx)
        try:
            end = await self._converse(record, ctx, transcript)
        finally:
            if approvals is not None:
                await approvals.close()
        record.reason = end.stop_reason or record.reason
        self._observer.record_run(
            ok=end.stop_reason is None,
            duration_s=self._clock() - started,
            tokens=record.tokens.total,
        )
        ctx.final_text, ctx.budget_exceeded = end.final_text, end.budget_exceeded
        if approvals is not None and approvals.expired and not triggered(ctx):
            record.reason = end.stop_reason or "approval_expired"
            record.handoff = True  # a proposed fix went without a decision: a human must look
            return AlertStatus.ESCALATED
        if end.stop_reason is not None and not triggered(ctx):
            # The runtime escalates: the finalizer pages (or, in shadow mode, lists the page
            # it withheld) and reports, outside this run's slot.
            record.handoff = True
            return AlertStatus.ESCALATED
        status = AlertStatus.ESCALATED if triggered(ctx) else AlertStatus.RESOLVED
        if approvals is not None and status is AlertStatus.RESOLVED:
            await approvals.resolve_page()
        await self._report(record, ctx, end, status)
        observe_escalations(self._observer, ctx.escalations)
        return status

    def _approver(self, record: AlertRecord, ctx: RunContext) -> RunApprovals | None:
        """Approve mode: the run's approvals, its tools' way to make a remediation write."""
        if self._approvals is None or not self._settings.approve:
            return None
        ctx.approver = approvals = RunApprovals(
            self._approvals.desk,
            record,
            pager=self._approvals.pager,
            redactor=self._redactor,
            console_url=self._settings.console_url(record.incident_id),
            report_file=lambda: promised_report_name(ctx, datetime.now(UTC)),
        )
        return approvals

    # -- the conversation ------------------------------------------------------------------

    async def _converse(
        self, record: AlertRecord, ctx: RunContext, transcript: Transcript
    ) -> RunEnd:
        messages = transcript.messages  # the conversation: only ever appended to
        if messages:
            self._resume(record, ctx, transcript)
        else:
            ctx.nonce = prompt.new_nonce()
            messages += self._opening(record, ctx.nonce)
        nonce = ctx.nonce
        try:
            async with asyncio.timeout(self._settings.agent_timeout_seconds) as scope:
                if isinstance(ctx.approver, RunApprovals):
                    ctx.approver.attach(ctx, scope)
                return await self._turns(record, ctx, transcript, nonce)
        except TimeoutError:
            return RunEnd("timeout", _last_text(messages))
        except LLMError as exc:
            logger.warning("LLM call failed for good: %s", exc.kind)
            self._observer.record_dependency(DEP_LLM, ok=False, detail=str(exc)[:300])
            self._observer.record_error("LLMError", str(exc))
            return RunEnd(f"llm_error: {exc.kind}", _last_text(messages))

    def _resume(self, record: AlertRecord, ctx: RunContext, transcript: Transcript) -> None:
        """Go on with a stored conversation. Calls whose results were never stored may or
        may not have happened: they are not made again, the model is told (CONTRACT §8)."""
        calls = transcript.unanswered_calls()
        if not calls:
            return
        logger.warning("resuming: %d tool call(s) with an unknown outcome", len(calls))
        outcome = ToolOutcome(
            json.dumps({"error": UNKNOWN_OUTCOME}), ok=False, error=UNKNOWN_OUTCOME, write=False
        )
        results = [
            {
                "role": "tool",
                "tool_call_id": call["id"],
                "content": prompt.tool_output(call["function"]["name"], ctx.nonce, outcome.content),
            }
            for call in calls
        ]
        transcript.answered(results, [outcome] * len(calls))
        record.tool_calls.extend(
            ToolCallRecord(
                turn=record.turns,
                name=call["function"]["name"],
                arguments=_recorded(self._redactor.redact(call["function"]["arguments"])),
                duration_ms=0.0,
                ok=False,
                error=UNKNOWN_OUTCOME,
            )
            for call in calls
        )

    def _opening(self, record: AlertRecord, nonce: str) -> list[dict[str, Any]]:
        system = self._settings.sre_prompt_path.read_text(encoding="utf-8")  # fresh each run
        names = [d["function"]["name"] for d in self._tools.definitions()]
        user = prompt.first_message(
            alert=record.alert,
            settings=self._settings,
            redactor=self._redactor,
            nonce=nonce,
            tool_names=names,
        )
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    async def _turns(
        self, record: AlertRecord, ctx: RunContext, transcript: Transcript, nonce: str
    ) -> RunEnd:
        limit = self._settings.agent_max_turns
        for turn in range(record.turns + 1, limit + 1):
            record.turns = turn
            attributes: dict[str, int | str] = {"turn": turn, "incident.id": record.incident_id}
            with tracer.start_as_current_span(SPAN_AGENT_TURN, attributes=attributes):
                end = await self._turn(record, ctx, transcript, nonce, final=turn == limit)
            if end is not None:
                return end
        return RunEnd("max_turns", _last_text(transcript.messages), self._over_budget(record))

    async def _turn(
        self,
        record: AlertRecord,
        ctx: RunContext,
        transcript: Transcript,
        nonce: str,
        *,
        final: bool,
    ) -> RunEnd | None:
        """One turn: notices, completion, then the tool calls. None: go on.

        An answer nested too deeply to be read (`Unreadable`) does not fail the run: the
        turn counts, the model gets a user message `{"error": ...}` saying why, and the
        next turn asks it again (on the last turn, the run ends on `max_turns`).
        """
        messages = transcript.messages
        await self._store(record)  # the last turn's results; takes the notices
        self._deliver_notices(record, messages, nonce)
        message = await self._complete(record, ctx, transcript, final=final)
        if isinstance(message, Unreadable):
            messages.append({"role": "user", "content": json.dumps({"error": message.reason})})
            return None
        transcript.replied(_assistant(message))
        await self._store(record)  # the calls about to be made: never made twice
        if not message.tool_calls:
            return RunEnd(None, message.content or message.refusal, self._over_budget(record))
        if final:  # tools were not offered; a model that still calls them has not concluded
            return RunEnd("max_turns", _last_text(messages), self._over_budget(record))
        if self._over_budget(record):
            return RunEnd("token_budget", message.content, budget_exceeded=True)
        outcomes = await self._run_tools(record, ctx, message, record.turns)
        transcript.answered(_tool_messages(message, outcomes, nonce), outcomes)
        return None

    async def _complete(
        self, record: AlertRecord, ctx: RunContext, transcript: Transcript, *, final: bool
    ) -> Message | Unreadable:
        """One completion, recorded: the request as it goes out, then the usage it reports
        (a call that raises leaves the turn with what was sent and no response)."""
        tools = None if final else self._tools.definitions()
        transcript.sent(record.turns, tools)
        started = time.perf_counter()
        completion = await self._llm.complete(
            transcript.messages, tools=tools, deadline=ctx.deadline or 0.0, trace_id=record.trace_id
        )
        latency_ms = (time.perf_counter() - started) * 1000
        self._observer.record_dependency(DEP_LLM, ok=True, latency_ms=latency_ms)
        self._account(record, completion)
        transcript.received(completion.usage)
        if completion.message is None:
            raise LLMError("empty_response", "the LLM API returned no choices")
        if isinstance(completion.message, Unreadable):
            logger.warning("agent turn %d: answer not read: nested too deeply", record.turns)
            return completion.message
        logger.info(
            "agent turn %d: %d tool call(s)",
            record.turns,
            len(completion.message.tool_calls),
        )
        return completion.message

    async def _store(self, record: AlertRecord) -> None:
        if self._checkpoint is not None:
            await self._checkpoint(record)

    def _deliver_notices(
        self, record: AlertRecord, messages: list[dict[str, Any]], nonce: str
    ) -> None:
        notices = record.take_notices()
        if notices:
            messages.append({"role": "user", "content": prompt.platform_update(nonce, notices)})

    def _account(self, record: AlertRecord, completion: Completion) -> None:
        usage = completion.usage
        if usage is None:
            return
        tokens = record.tokens
        tokens.input += usage.prompt_tokens
        tokens.output += usage.completion_tokens
        tokens.total += usage.total_tokens
        self._observer.record_tokens(
            input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens
        )

    def _over_budget(self, record: AlertRecord) -> bool:
        budget = self._settings.max_tokens_per_incident
        return budget > 0 and record.tokens.total >= budget

    # -- tools ------------------------------------------------------------------------------

    async def _run_tools(
        self, record: AlertRecord, ctx: RunContext, message: Message, turn: int
    ) -> list[ToolOutcome]:
        """The message's first MAX_TOOL_CALLS_PER_TURN calls, MAX_PARALLEL_TOOLS at a time;
        every later call is not run and gets an error result saying so.

        One outcome (and one record) per call, in the order of the calls: the API wants an
        answer to every call id.
        """
        limit = self._settings.max_tool_calls_per_turn
        allowed, refused = message.tool_calls[:limit], message.tool_calls[limit:]
        gate = asyncio.Semaphore(MAX_PARALLEL_TOOLS)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._run_tool(call, ctx, turn, gate)) for call in allowed]
        results = [task.result() for task in tasks]
        if refused:
            logger.warning(
                "agent turn %d: %d tool call(s) over MAX_TOOL_CALLS_PER_TURN=%d not run",
                turn,
                len(refused),
                limit,
            )
            outcome = _over_limit(limit)
            results += [(outcome, self._entry(call, turn, outcome, 0.0)) for call in refused]
        record.tool_calls.extend(entry for _, entry in results)
        return [outcome for outcome, _ in results]

    async def _run_tool(
        self, call: ToolCall, ctx: RunContext, turn: int, gate: asyncio.Semaphore
    ) -> tuple[ToolOutcome, ToolCallRecord]:
        name, arguments = _function_of(call)
        async with gate:
            started = time.perf_counter()
            outcome = await self._tools.execute(name, arguments, ctx)
            duration_ms = (time.perf_counter() - started) * 1000
        logger.info("tool %s ok=%s in %.0f ms", name[:64], outcome.ok, duration_ms)
        return outcome, self._entry(call, turn, outcome, duration_ms)

    def _entry(
        self, call: ToolCall, turn: int, outcome: ToolOutcome, duration_ms: float
    ) -> ToolCallRecord:
        name, arguments = _function_of(call)
        return ToolCallRecord(
            turn=turn,
            name=name,
            arguments=_recorded(self._redactor.redact(arguments)),
            duration_ms=round(duration_ms, 1),
            ok=outcome.ok,
            error=outcome.error,
        )

    # -- endings ----------------------------------------------------------------------------

    async def _report(
        self, record: AlertRecord, ctx: RunContext, end: RunEnd, status: AlertStatus
    ) -> None:
        report = ReportInput.of(
            ctx,
            outcome=status.value,
            stop_reason=end.stop_reason,
            console_url=self._settings.console_url(record.incident_id),
        )
        await self._reports.write(record, report, promised_report_name(ctx, datetime.now(UTC)))


def run_context(record: AlertRecord, *, shadow: bool, deadline: float | None = None) -> RunContext:
    """A new run context for one occurrence: its alert, trace and the report names its
    earlier occurrences took (its own report gets another)."""
    return RunContext(
        alert=record.alert,
        trace_id=record.trace_id,
        shadow=shadow,
        deadline=deadline,
        occurrence=record.occurrence,
        earlier_reports=frozenset(r.report_file for r in record.earlier() if r.report_file),
    )


def resumed_from(ctx: RunContext, before: RunContext) -> None:
    """A resumed run's context: what the tools found and the pages made before."""
    ctx.escalations[:] = before.escalations
    ctx.withheld[:] = before.withheld
    ctx.report_content, ctx.report_filename = before.report_content, before.report_filename
    ctx.nonce = before.nonce


def observe_escalations(observer: RunObserver, escalations: Sequence[EscalationResult]) -> None:
    """PagerDuty's last-seen status; a failed escalation is also a recorded error."""
    for result in escalations:
        detail = f"{result.action}: {'ok' if result.ok else result.error}"
        observer.record_dependency(DEP_PAGERDUTY, ok=result.ok, detail=detail)
        if not result.ok:
            observer.record_error("PagerDutyError", f"{result.action} failed: {result.error}")


def triggered(ctx: RunContext) -> bool:
    """True once a PagerDuty trigger was made for this run (failed or not)."""
    return any(e.action == "trigger" and not e.shadow for e in ctx.escalations)


def findings(record: AlertRecord, final_text: str | None) -> str:
    """What the run found so far, for a human picking the incident up."""
    lines = [f"Last model output: {final_text or '(none)'}", "Tool calls:"]
    lines += [
        f"- turn {c.turn} {c.name} {'ok' if c.ok else 'error: ' + (c.error or '')}"
        for c in record.tool_calls[-20:]
    ]
    return "\n".join(lines)[:4000]


def _assistant(message: Message) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": "assistant", "content": message.content}
    if message.tool_calls:
        entry["tool_calls"] = [_echoed(call) for call in message.tool_calls]
    return entry


def _echoed(call: ToolCall) -> dict[str, Any]:
    """A call as the history keeps it. Arguments over MAX_ARGUMENT_CHARS (refused unread)
    become a short valid JSON note: re-sending them every turn would grow each request by
    their size, and a provider may reject a call whose arguments are not JSON."""
    name, arguments = _function_of(call)
    if len(arguments) > MAX_ARGUMENT_CHARS:
        note = f"{len(arguments)} characters of arguments, over the limit of {MAX_ARGUMENT_CHARS}"
        arguments = json.dumps({"omitted": note})
    return {"id": call.id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _over_limit(limit: int) -> ToolOutcome:
    error = (
        f"not run: a message may make at most {limit} tool calls (MAX_TOOL_CALLS_PER_TURN); "
        "make this one again if still needed"
    )
    return ToolOutcome(json.dumps({"error": error}), ok=False, error=error, write=False)


def _tool_messages(
    message: Message, outcomes: Sequence[ToolOutcome], nonce: str
) -> list[dict[str, Any]]:
    return [
        {
            "role": "tool",
            "tool_call_id": call.id,
            "content": prompt.tool_output(_function_of(call)[0], nonce, outcome.content),
        }
        for call, outcome in zip(message.tool_calls, outcomes, strict=True)
    ]


def _function_of(call: ToolCall) -> tuple[str, str]:
    """(name, arguments) of a function tool call; other kinds get a name no tool has."""
    if call.function is None:
        return f"unsupported:{call.type}", "{}"
    return call.function.name, call.function.arguments


def _recorded(arguments: str) -> Any:
    """Arguments as the record keeps them: decoded, or (cut) as sent when the model's text
    is not JSON within the bounds."""
    try:
        decoded = decode_arguments(arguments)
    except ArgumentsError:
        return cut(arguments, RECORDED_ARGUMENT_CHARS)
    return arguments if decoded is None else decoded


def _last_text(messages: list[dict[str, Any]]) -> str | None:
    for message in reversed(messages):
        if message["role"] == "assistant" and message.get("content"):
            return str(message["content"])
    return None
