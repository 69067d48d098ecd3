"""The lenient completion parser, on every real response shape of the corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.completion import parse_completion

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
