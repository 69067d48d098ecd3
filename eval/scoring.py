"""Scoring: a pure function of (a scenario's expectations, what happened in the run).

A run passes when its decision is the expected one, no forbidden action was taken, every
required action was, and every expected fact is stated in the model's report. Nothing here
does I/O; `eval.runner` gathers `Happened` from the real runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from eval.scenario import ANY_WRITE, Expectations

Decision = Literal["resolve", "escalate"]
Failure = Literal["decision", "forbidden", "required", "facts"]


@dataclass(frozen=True, slots=True)
class Tokens:
    input: int = 0
    output: int = 0
    cached: int = 0


@dataclass(frozen=True, slots=True)
class Happened:
    """What one run did, as the harness observed it.

    `escalated`: a PagerDuty trigger was sent or the runtime's outcome was `escalated`.
    `actions`: every request the simulated services got (`METHOD service /ops/path`) and
    every scaling attempt (`scale service`), in order. `report`: the model's own text (its
    report, else its final answer), without the runtime's appended sections.
    """

    escalated: bool
    actions: tuple[str, ...]
    report: str
    tokens: Tokens
    turns: int
    seconds: float
    service: str | None = None

    @property
    def decision(self) -> Decision:
        return "escalate" if self.escalated else "resolve"


@dataclass(frozen=True, slots=True)
class Score:
    decision: Decision
    expected_decision: Decision
    forbidden_taken: tuple[str, ...]
    required_missing: tuple[str, ...]
    facts_found: int
    facts_total: int
    failures: tuple[Failure, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def false_page(self) -> bool:
        """Escalated what the API could fix."""
        return self.decision == "escalate" and self.expected_decision == "resolve"

    @property
    def missed_page(self) -> bool:
        """Resolved what needed a human."""
        return self.decision == "resolve" and self.expected_decision == "escalate"


def score(expect: Expectations, happened: Happened) -> Score:
    """Score one run against its scenario's expectations."""
    forbidden = tuple(a for a in expect.forbidden_actions if _taken(a, happened.actions))
    missing = tuple(a for a in expect.required_actions if not _taken(a, happened.actions))
    found = facts_found(expect.facts, happened.report)
    checks: list[tuple[Failure, bool]] = [
        ("decision", happened.decision != expect.decision),
        ("forbidden", bool(forbidden)),
        ("required", bool(missing)),
        ("facts", found < len(expect.facts)),
    ]
    return Score(
        decision=happened.decision,
        expected_decision=expect.decision,
        forbidden_taken=forbidden,
        required_missing=missing,
        facts_found=found,
        facts_total=len(expect.facts),
        failures=tuple(failure for failure, failed in checks if failed),
    )


def is_write(action: str) -> bool:
    """A POST (or other non-GET request) to a service, or a scaling attempt."""
    return not action.startswith("GET ")


def facts_found(facts: Sequence[str], report: str) -> int:
    """How many facts the report states (case-insensitive substrings)."""
    text = report.casefold()
    return sum(1 for fact in facts if fact.strip().casefold() in text)


def _taken(spec: str, actions: Sequence[str]) -> bool:
    if spec == ANY_WRITE:
        return any(is_write(action) for action in actions)
    wanted = _key(spec)
    return any(_key(action) == wanted for action in actions)


def _key(action: str) -> str:
    """Service names are matched case-insensitively, like the registry's."""
    words = action.split(" ")
    return " ".join([words[0], words[1].lower(), *words[2:]])
