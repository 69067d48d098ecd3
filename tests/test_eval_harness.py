"""The harness end to end, driven by scripted policies through the fake OpenAI-compatible
server: every run goes through the real runtime (webhook, intake, agent, tools, report).

The scenarios are the shipped ones (`eval/scenarios`); the small test set stands in only
while none are shipped.
"""

from __future__ import annotations

from pathlib import Path

from eval.harness import ModelResults, Plan, evaluate
from eval.policies import reference_policy
from eval.probes import oracle, reckless, timid
from eval.report import why
from eval.runner import ModelTarget, PolicyFactory, logs_into, run_scenario
from eval.scenario import Scenario, load_scenarios

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "eval" / "scenarios"
PROMPT = ROOT / "WINDSURF_SRE.md"
KEY = "sk-eval-test-0123456789abcdef"


def scenarios() -> list[Scenario]:
    loaded = load_scenarios(SHIPPED)
    assert loaded.invalid == [], [i.error for i in loaded.invalid]
    assert len(loaded.scenarios) >= 20  # CONTRACT §10: at least 20 shipped
    return loaded.scenarios


async def run_all(
    policy: PolicyFactory, out: Path, *, concurrency: int = 4, name: str = "probe"
) -> ModelResults:
    plan = Plan(
        scenarios=scenarios(),
        models=[ModelTarget(name, KEY, policy=policy)],
        prompt=PROMPT,
        out=out,
        concurrency=concurrency,
    )
    with (out / "runtime.log").open("w") as log, logs_into(log) as hook:
        [result] = await evaluate(plan, on_app=hook)
    assert result.invalid == [], [i.error for i in result.invalid]
    assert len(result.runs) == len(plan.scenarios)
    return result


def expectations() -> dict[str, Scenario]:
    return {s.name: s for s in scenarios()}


async def test_the_oracle_passes_every_scenario(tmp_path: Path) -> None:
    result = await run_all(oracle, tmp_path)
    failed = {run.scenario: why(run) for run in result.runs if not run.score.passed}
    assert failed == {}


async def test_reckless_fails_every_scenario_that_forbids_a_restart_or_scaling(
    tmp_path: Path,
) -> None:
    result = await run_all(reckless, tmp_path)
    by_name = expectations()
    checked = 0
    for run in result.runs:
        target = (run.happened.service or "").lower()
        forbidden = {f.lower() for f in by_name[run.scenario].expect.forbidden_actions}
        reckless_actions = {"any_write", f"post {target} /ops/restart", f"scale {target}"}
        if run.happened.turns == 0 or not forbidden & reckless_actions:
            continue
        checked += 1
        assert not run.score.passed, run.scenario
        assert "forbidden" in run.score.failures, run.scenario
        assert run.score.forbidden_taken, run.scenario
    assert checked > 0


async def test_timid_fails_every_fixable_scenario_on_its_decision(tmp_path: Path) -> None:
    result = await run_all(timid, tmp_path)
    by_name = expectations()
    fixable = [r for r in result.runs if by_name[r.scenario].expect.decision == "resolve"]
    assert fixable
    for run in fixable:
        assert "decision" in run.score.failures, run.scenario
        assert run.score.false_page, run.scenario


async def test_the_reference_policy_runs_every_scenario_and_keeps_its_files(
    tmp_path: Path,
) -> None:
    """(How long it takes is measured by `python -m eval` and stated in the README.)"""
    result = await run_all(
        lambda _s: reference_policy, tmp_path, concurrency=1, name="scripted-reference"
    )
    for run in result.runs:
        assert (tmp_path / "scripted-reference" / run.report).is_file()
        assert (tmp_path / "scripted-reference" / run.transcript).is_file()


async def test_a_notification_during_the_run_reaches_the_agent(tmp_path: Path) -> None:
    """`during_run`: the platform's resolve, sent once the services answered a request, is
    told to the agent at its next turn, and the occurrence's timeline shows it."""
    [scenario] = [s for s in scenarios() if s.during_run]
    record = await run_scenario(
        scenario,
        model=ModelTarget("probe", KEY, policy=lambda _scenario: reference_policy),
        prompt=PROMPT,
        workdir=tmp_path,
    )
    [transcript] = record.transcripts
    told = [
        message["content"]
        for turn in transcript["turns"]
        for message in turn["request"]["messages"]
        if message["role"] == "user"
    ]
    assert any("reports this incident as resolved" in text for text in told)
    [detail] = record.details
    assert "resolved_upstream" in [entry["status"] for entry in detail["timeline"]]
