"""eval.judge: grades claims, not quotations; its answer is parsed strictly."""

from __future__ import annotations

import json

import openai
import pytest

from demo.simulators.llm import FakeLLM, say
from demo.simulators.server import serve
from eval.judge import Judge, claims_only, parse_verdict

REPORT = """# checkout: resolved

The database connection pool was exhausted by a leak; a restart returned the connections.

```json
{"errors": [{"type": "PoolTimeout", "last_message": "replica lag 40 s"}]}
```
> GET /ops/metrics: {"cache": "stampede"}
- `disk full` appeared in a log line
{"status": "certificate expired"}
"""


def test_claims_only_drops_quoted_tool_output() -> None:
    text = claims_only(REPORT)
    assert "connection pool was exhausted" in text
    for quoted in ("replica lag", "stampede", "disk full", "certificate expired"):
        assert quoted not in text


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        ('{"score": 0.75, "reason": "one fact is only quoted"}', 0.75),
        ('{"score": 1}', 1.0),
        ('{"score": 1.5}', None),
        ('{"score": true}', None),
        ('{"score": "0.8"}', None),
        ("Score: 0.8", None),
        ('```json\n{"score": 0.8}\n```', None),
        ("", None),
    ],
)
def test_verdicts_are_parsed_strictly(answer: str, score: float | None) -> None:
    assert parse_verdict(answer).score == score


async def test_the_judge_sees_the_facts_and_the_prose_but_not_the_quotes() -> None:
    llm = FakeLLM(script=[say(json.dumps({"score": 0.5, "reason": "half"}))])
    async with (
        serve(llm.app()) as url,
        openai.AsyncOpenAI(api_key="judge-key", base_url=url, max_retries=0) as client,
    ):
        verdict = await Judge(client=client, model="judge-1").grade(
            ["connection pool", "replica lag"], REPORT
        )
    assert verdict.score == 0.5
    request = llm.requests[0]
    assert request["model"] == "judge-1"
    system, user = (m["content"] for m in request["messages"])
    assert "claims" in system
    assert "- connection pool\n- replica lag" in user
    assert "connection pool was exhausted" in user
    assert "PoolTimeout" not in user


async def test_an_unparseable_judge_answer_is_no_grade() -> None:
    llm = FakeLLM(script=[say("I would say about 0.8.")])
    async with (
        serve(llm.app()) as url,
        openai.AsyncOpenAI(api_key="judge-key", base_url=url, max_retries=0) as client,
    ):
        verdict = await Judge(client=client, model="judge-1").grade(["x"], "x happened")
    assert verdict.score is None
    assert "JSON" in verdict.reason
