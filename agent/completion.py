"""The part of a chat completion the loop reads, parsed leniently from the response JSON.

The SDK's own response models are built by a recursive, pure-Python `construct` that was
the largest remaining share of a turn's overhead; the loop needs five fields. Lenient on
purpose: providers omit fields (Azure drops `object` and `model`) and add others.

It is also where the model's output first becomes values, so the bounds of CONTRACT §4 are
applied here, once: text (`content`, `refusal`) is cleaned and cut to `MAX_TEXT_CHARS` with a
marker, tool-call ids and names to `MAX_NAME_CHARS`, and a message nested deeper than
`MAX_DEPTH` levels becomes `Unreadable` instead of a `Message`. Tool-call arguments stay the
model's exact string: the tool executor bounds, decodes and judges them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from intake.sanitize import MAX_DEPTH, safe, too_deep

MAX_TEXT_CHARS = 64 * 1024  # "64 KiB per message", counted in characters like every cut
MAX_NAME_CHARS = 256  # a tool call's id or function name; real ones are under 64


@dataclass(frozen=True, slots=True)
class FunctionCall:
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    type: str
    function: FunctionCall | None  # None for tool kinds other than "function"


@dataclass(frozen=True, slots=True)
class Message:
    content: str | None
    refusal: str | None
    tool_calls: tuple[ToolCall, ...]


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A model answer the runtime refuses to read because it is nested too deeply (or too
    deeply to decode at all). The run does not fail: the loop tells the model `reason` and
    goes on to the next turn."""

    reason: str


TOO_DEEP = Unreadable(
    f"your last message was nested deeper than {MAX_DEPTH} levels and was not read; "
    "answer again with plain text, or tool calls whose arguments are flat JSON objects"
)


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    # `prompt_tokens_details.cached_tokens`: prompt tokens served from the provider's cache;
    # None when the API does not say (not every provider reports it).
    cached_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    # The first choice's message; None when there is no choice.
    message: Message | Unreadable | None
    usage: Usage | None


def parse_completion(data: Any) -> Completion:
    """A `Completion` from a decoded chat-completions response body."""
    body = data if isinstance(data, dict) else {}
    choices = body.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    raw_message = first.get("message") if isinstance(first, dict) else None
    return Completion(
        message=_read(raw_message) if isinstance(raw_message, dict) else None,
        usage=_usage(body.get("usage")),
    )


def _read(raw: dict[str, Any]) -> Message | Unreadable:
    return TOO_DEEP if too_deep(raw) else _message(raw)


def _message(raw: dict[str, Any]) -> Message:
    calls = raw.get("tool_calls")
    return Message(
        content=_text(raw.get("content")),
        refusal=_text(raw.get("refusal")),
        tool_calls=tuple(_tool_call(c) for c in calls if isinstance(c, dict))
        if isinstance(calls, list)
        else (),
    )


def _tool_call(raw: dict[str, Any]) -> ToolCall:
    function = raw.get("function")
    parsed = (
        FunctionCall(name=_name(function.get("name", "")), arguments=_arguments(function))
        if isinstance(function, dict)
        else None
    )
    return ToolCall(
        id=_name(raw.get("id", "")), type=_name(raw.get("type", "function")), function=parsed
    )


def _arguments(function: dict[str, Any]) -> str:
    arguments = function.get("arguments")
    return arguments if isinstance(arguments, str) else ""


def _text(value: Any) -> str | None:
    return safe(value, MAX_TEXT_CHARS) if isinstance(value, str) else None


def _name(value: Any) -> str:
    return safe(str(value), MAX_NAME_CHARS)


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt, completion = _count(raw.get("prompt_tokens")), _count(raw.get("completion_tokens"))
    total = _count(raw.get("total_tokens")) or prompt + completion
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        cached_tokens=_cached(raw.get("prompt_tokens_details")),
    )


def _cached(details: Any) -> int | None:
    """`prompt_tokens_details.cached_tokens`; None when absent or not a count."""
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if isinstance(cached, int) and not isinstance(cached, bool) and cached >= 0:
        return cached
    return None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0
