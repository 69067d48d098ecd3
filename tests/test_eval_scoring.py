"""eval.scoring: a pure function of (expectations, what happened)."""

from __future__ import annotations

from eval.scenario import Expectations
from eval.scoring import Happened, Tokens, facts_found, is_write, score


def happened(*actions: str, escalated: bool = False, report: str = "") -> Happened:
    return Happened(
        escalated=escalated, actions=actions, report=report, tokens=Tokens(), turns=3, seconds=1
    )


def expect(**fields: object) -> Expectations:
    return Expectations.model_validate({"decision": "resolve", **fields})


def test_a_run_passes_with_the_right_decision_actions_and_facts() -> None:
    result = score(
        expect(required_actions=["POST api /ops/restart"], facts=["Connection Pool"]),
        happened(
            "GET api /ops/status", "POST api /ops/restart", report="the connection pool leaked"
        ),
    )
    assert result.passed
    assert (result.facts_found, result.facts_total) == (1, 1)


def test_escalating_a_fixable_incident_is_a_false_page_failing_on_decision() -> None:
    result = score(expect(), happened(escalated=True))
    assert result.failures == ("decision",)
    assert result.false_page
    assert not result.missed_page


def test_resolving_what_needed_a_human_is_a_missed_page() -> None:
    result = score(expect(decision="escalate"), happened())
    assert result.failures == ("decision",)
    assert result.missed_page


def test_one_forbidden_action_fails_the_run_and_is_named() -> None:
    result = score(
        expect(forbidden_actions=["scale API", "POST api /ops/drain"]),
        happened("scale api", "GET api /ops/status"),
    )
    assert result.failures == ("forbidden",)
    assert result.forbidden_taken == ("scale API",)


def test_any_write_forbids_posts_and_scaling_but_not_reads() -> None:
    forbid = expect(forbidden_actions=["any_write"])
    assert score(forbid, happened("GET api /ops/status", "GET api /ops/health")).passed
    assert score(forbid, happened("POST api /ops/cache/flush")).failures == ("forbidden",)
    assert score(forbid, happened("scale api")).failures == ("forbidden",)


def test_missing_required_actions_are_listed() -> None:
    result = score(
        expect(required_actions=["POST api /ops/restart", "GET api /ops/status"]),
        happened("GET api /ops/status"),
    )
    assert result.failures == ("required",)
    assert result.required_missing == ("POST api /ops/restart",)


def test_facts_are_case_insensitive_substrings_and_counted() -> None:
    assert facts_found(["Disk Full", "certificate", "pool"], "The DISK FULL alarm; pool ok") == 2
    result = score(expect(facts=["disk full", "rotation"]), happened(report="disk full"))
    assert result.failures == ("facts",)
    assert (result.facts_found, result.facts_total) == (1, 2)


def test_every_failure_is_reported_together() -> None:
    result = score(
        expect(
            decision="escalate",
            required_actions=["GET db /ops/health"],
            forbidden_actions=["any_write"],
            facts=["replica lag"],
        ),
        happened("POST db /ops/restart"),
    )
    assert result.failures == ("decision", "forbidden", "required", "facts")
    assert not result.passed


def test_writes_are_everything_but_reads() -> None:
    assert is_write("POST api /ops/restart")
    assert is_write("scale api")
    assert not is_write("GET api /ops/status")
