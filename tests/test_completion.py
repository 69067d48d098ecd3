"""The lenient completion parser, on every real response shape of the corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.completion import MAX_NAME_CHARS, MAX_TEXT_CHARS, TOO_DEEP, Message, parse_completion

DATA = Path(__file__).parent / "data" / "openai"


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def test_parallel_tool_calls_keep_order_ids_and_argument_strings() -> None:
    completion = parse_completion(load("chat-completion-parallel-tool-calls-openai-python.json"))
    assert completion.message is not None
    calls = completion.message.tool_calls
    assert [c.function.name for c in calls if c.function] == ["GetWeatherArgs", "get_stock_price"]
    assert all(c.id and c.type == "function" for c in calls)
    assert all(isinstance(json.loads(c.function.arguments), dict) for c in calls if c.function)
    assert completion.usage is not None
    assert completion.usage.total_tokens > 0


def test_azure_forced_tool_choice_has_tool_calls_despite_finish_reason_stop() -> None:
    body = load("azure-forced-tool-choice-finish-stop-with-tool-calls-instructor-capture.json")
    completion = parse_completion(body)
    assert completion.message is not None
    assert completion.message.tool_calls  # detected by presence, not finish_reason
    assert completion.usage is None  # the capture has no usage block: counted as zero


def test_azure_spec_example_without_object_and_model_parses() -> None:
    spec = load("azure-openai-chat-completions-spec-example-2024-10-21.json")
    completion = parse_completion(spec["responses"]["200"]["body"])
    assert completion.message is not None
    assert completion.message.content


@pytest.mark.parametrize(
    ("name", "content", "refusal"),
    [
        ("chat-completion-finish-stop-text-openai-python.json", True, False),
        ("chat-completion-finish-length-openai-python.json", True, False),
        ("chat-completion-refusal-openai-python.json", False, True),
        ("chat-completion-finish-stop-openapi-spec-example.json", True, False),
    ],
)
def test_text_answers_and_refusals(name: str, content: bool, refusal: bool) -> None:
    completion = parse_completion(load(name))
    assert completion.message is not None
    assert completion.message.tool_calls == ()
    assert bool(completion.message.content) is content
    assert bool(completion.message.refusal) is refusal


def test_no_choices_means_no_message() -> None:
    assert parse_completion({"choices": [], "usage": None}).message is None


@given(
    st.recursive(
        st.none() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
    )
)
def test_any_json_parses_without_raising(data: Any) -> None:
    parse_completion(data)


def answer(message: dict[str, Any]) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", **message}}]}


def read(message: dict[str, Any]) -> Message:
    parsed = parse_completion(answer(message)).message
    assert isinstance(parsed, Message)
    return parsed


@pytest.mark.parametrize("field", ["content", "refusal"])
def test_model_text_is_cut_to_64_kib_with_a_marker(field: str) -> None:
    text = getattr(read({field: "x" * 5_000_000}), field)
    kept, marker = text.split("…")
    assert MAX_TEXT_CHARS - 40 < len(text) <= MAX_TEXT_CHARS == 65_536
    assert kept == "x" * len(kept)
    assert marker == f"[truncated {5_000_000 - len(kept)} chars]"


def test_model_text_within_the_bound_is_kept_whole() -> None:
    assert read({"content": "y" * MAX_TEXT_CHARS}).content == "y" * MAX_TEXT_CHARS


def test_model_text_loses_lone_surrogates_and_control_characters() -> None:
    message = read({"content": "ok\ud800\x1b[31m\u202eend\n", "refusal": "\x00no"})
    assert message.content == "ok\ufffd\ufffd[31m\ufffdend\n"
    assert message.refusal == "\ufffdno"


def test_tool_call_ids_and_names_are_bounded_but_arguments_are_kept_exact() -> None:
    arguments = '{"pad": "' + "a" * 100_000 + '"}'
    call = {"id": "c" * 10_000, "type": "function", "function": {"name": "n" * 10_000}}
    call["function"]["arguments"] = arguments  # type: ignore[index]  # a nested dict literal
    (parsed,) = read({"tool_calls": [call]}).tool_calls
    assert parsed.id.startswith("c" * 200)
    assert len(parsed.id) <= MAX_NAME_CHARS
    assert "truncated" in parsed.id
    assert parsed.function is not None
    assert parsed.function.name.startswith("n" * 200)
    assert len(parsed.function.name) <= MAX_NAME_CHARS
    assert parsed.function.arguments == arguments  # the executor bounds and judges them


def nest(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def test_message_nested_deeper_than_64_levels_is_unreadable() -> None:
    # the message object is level 1: content parts nested 64 more make 65
    assert parse_completion(answer({"content": nest(64)})).message is TOO_DEEP
    assert isinstance(parse_completion(answer({"content": nest(63)})).message, Message)


def test_deep_tool_call_structure_makes_the_message_unreadable() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "x", "arguments": nest(200)}}
    completion = parse_completion(answer({"tool_calls": [call]}))
    assert completion.message is TOO_DEEP


def test_too_deep_reason_tells_the_model_what_to_do() -> None:
    assert "nested deeper than 64 levels" in TOO_DEEP.reason
