"""A run's conversation with the LLM, turn by turn, as sent and as received.

`Transcript` owns the run's conversation: the loop appends to `messages` and never changes a
message once appended (nothing the loop, the LLM client or the SDK does to a request touches
its messages). So a turn keeps no copy of what it sent, only how many messages went out (its
request is that prefix), and references to what came back: the assistant message as the
history keeps it, and the tool messages that answered its calls. Recording a turn costs a
few small objects whatever the size of the conversation; nothing is copied, redacted or
encoded before `view`, which redacts each message once and gives every turn its prefix.

A turn whose completion failed (an `LLMError` that survived retries, the run's timeout) keeps
what was sent and no response: content null, no tool calls, usage as reported (zero when
none was). So does an answer the runtime could not read (`Unreadable`): the model's next
request shows the `{"error": ...}` message it was given instead.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import models
from agent.completion import Usage
from intake.sanitize import map_strings
from tools import ToolOutcome

Message = dict[str, Any]


@dataclass(slots=True)
class Turn:
    """One turn as recorded: small values and references into the conversation."""

    number: int
    at: datetime  # when the request was sent (its first attempt, when retried)
    sent: int  # the request's messages: the conversation's first `sent`
    tools: list[str]  # names of the tools offered; empty on the last turn
    usage: Usage | None = None
    reply: Message | None = None  # the assistant message, as appended to the conversation
    results: Sequence[Message] = ()  # the tool messages answering `reply`'s calls, in order
    ok: tuple[bool, ...] = ()  # each result's outcome


@dataclass(slots=True)
class Transcript:
    """The recorder of one run; `view` is what `GET /alerts/{id}/transcript` serves.

    Append-only: `messages` is the conversation the loop sends, `turns` one entry per LLM
    request. The methods record on the latest turn, in the order a turn happens.
    """

    model: str
    messages: list[Message] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)

    def sent(self, number: int, tools: Sequence[dict[str, Any]] | None) -> None:
        """A request goes out now: the whole conversation so far, with these tool definitions."""
        names = [definition["function"]["name"] for definition in tools or ()]
        self.turns.append(Turn(number, datetime.now(UTC), len(self.messages), names))

    def received(self, usage: Usage | None) -> None:
        """The API answered, with this usage block (the message may still be unreadable)."""
        self.turns[-1].usage = usage

    def replied(self, reply: Message) -> None:
        """Append the model's answer to the conversation, as the history keeps it."""
        self.messages.append(reply)
        self.turns[-1].reply = reply

    def answered(self, results: list[Message], outcomes: Sequence[ToolOutcome]) -> None:
        """Append the tool messages (one per call of the reply, in call order)."""
        self.messages.extend(results)
        turn = self.turns[-1]
        turn.results, turn.ok = results, tuple(outcome.ok for outcome in outcomes)

    def dump(self) -> dict[str, Any]:
        """The transcript as JSON-able values, for a durable store (`load` reads it back):
        the conversation once, each turn pointing into it by position."""
        position = {id(message): index for index, message in enumerate(self.messages)}
        return {
            "model": self.model,
            "messages": self.messages,
            "turns": [
                {
                    "number": t.number,
                    "at": t.at.isoformat(),
                    "sent": t.sent,
                    "tools": t.tools,
                    "usage": None if t.usage is None else _usage_values(t.usage),
                    "reply": None if t.reply is None else position.get(id(t.reply)),
                    "results": [position[id(r)] for r in t.results if id(r) in position],
                    "ok": list(t.ok),
                }
                for t in self.turns
            ],
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> Transcript:
        messages: list[Message] = list(data["messages"])
        turns = [
            Turn(
                number=t["number"],
                at=datetime.fromisoformat(t["at"]),
                sent=t["sent"],
                tools=list(t["tools"]),
                usage=None if t["usage"] is None else Usage(*t["usage"]),
                reply=None if t["reply"] is None else messages[t["reply"]],
                results=[messages[i] for i in t["results"]],
                ok=tuple(t["ok"]),
            )
            for t in data["turns"]
        ]
        return cls(model=data["model"], messages=messages, turns=turns)

    def unanswered_calls(self) -> list[dict[str, Any]]:
        """The tool calls of the last reply that have no result: the run stopped while
        they were under way, so whether they happened is unknown."""
        if not self.turns:
            return []
        last = self.turns[-1]
        if last.reply is None or last.results or self.messages[-1] is not last.reply:
            return []
        calls: list[dict[str, Any]] = last.reply.get("tool_calls") or []
        return calls

    def view(
        self, *, incident_id: str, occurrence: int, redact: Callable[[str], str]
    ) -> models.Transcript:
        """The run's conversation with `redact` applied to every string of it."""
        conversation = [_redacted(message, redact) for message in self.messages]
        return models.Transcript(
            incident_id=incident_id,
            occurrence=occurrence,
            model=redact(self.model),
            turns=[_turn_view(turn, conversation, redact) for turn in self.turns],
        )


def _usage_values(usage: Usage) -> list[int | None]:
    return [usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, usage.cached_tokens]


def _turn_view(
    turn: Turn, conversation: list[Message], redact: Callable[[str], str]
) -> models.TranscriptTurn:
    return models.TranscriptTurn(
        turn=turn.number,
        at=turn.at,
        request=models.TranscriptRequest(
            messages=conversation[: turn.sent], tools=[redact(name) for name in turn.tools]
        ),
        response=_response_view(turn.reply, redact),
        usage=_usage_view(turn.usage),
        tool_results=_results_view(turn, redact),
    )


def _response_view(
    reply: Message | None, redact: Callable[[str], str]
) -> models.TranscriptResponse:
    if reply is None:
        return models.TranscriptResponse()
    shown = _redacted(reply, redact)
    return models.TranscriptResponse(
        content=shown.get("content"), tool_calls=shown.get("tool_calls", [])
    )


def _usage_view(usage: Usage | None) -> models.TranscriptUsage:
    if usage is None:
        return models.TranscriptUsage()
    return models.TranscriptUsage(
        input=usage.prompt_tokens, output=usage.completion_tokens, cached=usage.cached_tokens
    )


def _results_view(turn: Turn, redact: Callable[[str], str]) -> list[models.TranscriptToolResult]:
    if turn.reply is None or not turn.results:
        return []
    calls = turn.reply["tool_calls"]  # the loop answers every call of the reply, in order
    return [
        models.TranscriptToolResult(
            tool_call_id=redact(result["tool_call_id"]),
            name=redact(call["function"]["name"]),
            content=redact(result["content"]),
            ok=ok,
        )
        for call, result, ok in zip(calls, turn.results, turn.ok, strict=True)
    ]


def _redacted(message: Message, redact: Callable[[str], str]) -> Message:
    # `map_strings` changes its value in place: the recorded message must stay as sent.
    redacted: Message = map_strings(copy.deepcopy(message), redact)
    return redacted
