"""The optional LLM judge (`--judge-model`): grades a report's claims against expected facts.

A report cannot pass by quoting tool output: the judge sees only the model's own prose
(code blocks, quotations, inline code and JSON-looking lines removed) and is told to credit a
fact only when the report asserts it as a finding. Its answer must be one JSON object with a
`score` from 0 to 1; anything else is no grade (`None`, with the reason), never a guess.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import openai

from agent import LLM
from agent.completion import Message
from agent.llm import LLMError

TIMEOUT_SECONDS = 120.0
RUBRIC = """You grade the incident report an SRE agent wrote, against the facts an expert \
established about the incident.

Grade the report's own claims, not quotations: credit a fact only when the report states it \
as its finding (the cause, the impact, what was done and why). A fact that appears only in \
copied data, logs or tool output does not count, and the report you see has such material \
removed. A claim that contradicts a fact, or a confident cause the facts do not support, \
lowers the score.

Score from 0 to 1: the share of the facts the report states as findings, reduced for wrong \
or contradicting claims. Answer with exactly one JSON object and nothing else:
{"score": <number from 0 to 1>, "reason": "<one sentence>"}"""

_FENCED = re.compile(r"^\s*(```|~~~).*?^\s*\1[^\n]*$", re.DOTALL | re.MULTILINE)
_DATA_BLOCK = re.compile(r"<<<(\w+) \w+>>>.*?<<<END_\1 \w+>>>", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")


@dataclass(frozen=True, slots=True)
class Verdict:
    score: float | None
    reason: str


def claims_only(report: str) -> str:
    """The report's prose: fenced code, data blocks, quotations, inline code and lines that
    look like JSON are removed (they carry tool output, not the author's claims)."""
    text = _DATA_BLOCK.sub("", _FENCED.sub("", report))
    lines = [
        _INLINE_CODE.sub("", line)
        for line in text.splitlines()
        if not line.lstrip().startswith((">", "{", "[", '"'))
    ]
    return "\n".join(lines).strip()


def judge_messages(facts: Sequence[str], report: str) -> list[dict[str, str]]:
    listed = "\n".join(f"- {fact}" for fact in facts)
    user = (
        f"Expected facts:\n{listed}\n\n"
        f"The report's own text (tool output removed):\n<report>\n{claims_only(report)}\n</report>"
    )
    return [{"role": "system", "content": RUBRIC}, {"role": "user", "content": user}]


def parse_verdict(text: str | None) -> Verdict:
    """Strictly: one JSON object with a numeric `score` in [0, 1]."""
    try:
        data = json.loads((text or "").strip())
    except ValueError:
        return Verdict(None, "the judge did not answer with one JSON object")
    score = data.get("score") if isinstance(data, dict) else None
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
        return Verdict(None, "the judge's answer has no score from 0 to 1")
    reason = data.get("reason")
    return Verdict(float(score), reason if isinstance(reason, str) else "")


class Judge:
    """Grades reports with `model` through an OpenAI-compatible API (the runtime's client)."""

    def __init__(self, *, client: openai.AsyncOpenAI, model: str) -> None:
        self.model = model
        self._llm = LLM(client=client, model=model)

    async def grade(self, facts: Sequence[str], report: str) -> Verdict:
        if not facts:
            return Verdict(None, "the scenario expects no facts")
        deadline = time.monotonic() + TIMEOUT_SECONDS
        try:
            completion = await self._llm.complete(
                judge_messages(facts, report), tools=None, deadline=deadline, trace_id=_trace()
            )
        except LLMError as exc:
            return Verdict(None, f"judge call failed: {exc.kind}")
        message = completion.message
        return parse_verdict(message.content if isinstance(message, Message) else None)


def _trace() -> str:
    return f"eval-judge-{uuid.uuid4().hex[:12]}"
