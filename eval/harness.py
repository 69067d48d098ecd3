"""The evaluation: every model × scenario × iteration, run, scored, judged and kept on disk.

Per model, `<out>/<model>/runs/<scenario>/<iteration>/` keeps the run's transcript
(`transcript.json`, as `GET /alerts/{id}/transcript` served it), its report (`report.md`, as
`GET /alerts/{id}/report` served it) and the runtime's incidents directory. A scenario the
runtime could not replay (its alert refused) is reported like a malformed one and the others
go on; anything else that fails is the harness failing, and propagates.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from config import Settings
from eval.judge import Judge, Verdict
from eval.runner import ModelTarget, RunRecord, ScenarioRunError, run_scenario
from eval.scenario import InvalidScenario, Scenario
from eval.scoring import Happened, Score, score


@dataclass(frozen=True, slots=True)
class Plan:
    scenarios: list[Scenario]
    models: list[ModelTarget]
    prompt: Path
    out: Path
    iterations: int = 1
    invalid: list[InvalidScenario] = field(default_factory=list)
    judge: Judge | None = None
    concurrency: int = 1  # runs at once; 1 keeps `seconds` comparable between runs


@dataclass(frozen=True, slots=True)
class RunResult:
    scenario: str
    iteration: int
    happened: Happened
    score: Score
    verdict: Verdict | None
    transcript: str  # paths relative to the model's results folder
    report: str


@dataclass(slots=True)
class ModelResults:
    model: ModelTarget
    folder: Path
    prompt_sha256: str
    runs: list[RunResult] = field(default_factory=list)
    invalid: list[InvalidScenario] = field(default_factory=list)


def slug(name: str) -> str:
    """A folder name for a model or scenario name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


def prompt_sha256(prompt: Path) -> str:
    return hashlib.sha256(prompt.read_bytes()).hexdigest()


async def evaluate(
    plan: Plan,
    *,
    progress: Callable[[str], None] = lambda _line: None,
    on_app: Callable[[Settings], None] = lambda _settings: None,
) -> list[ModelResults]:
    """Run the plan; `progress` gets one line per finished run."""
    return [await _evaluate_model(plan, model, progress, on_app) for model in plan.models]


async def _evaluate_model(
    plan: Plan,
    model: ModelTarget,
    progress: Callable[[str], None],
    on_app: Callable[[Settings], None],
) -> ModelResults:
    folder = plan.out / slug(model.name)
    result = ModelResults(model, folder, prompt_sha256(plan.prompt), invalid=list(plan.invalid))
    slots = asyncio.Semaphore(plan.concurrency)

    async def one(scenario: Scenario, iteration: int) -> None:
        async with slots:
            await _run(plan, result, scenario, iteration, progress, on_app)

    async with asyncio.TaskGroup() as group:
        for scenario in plan.scenarios:
            for iteration in range(1, plan.iterations + 1):
                group.create_task(one(scenario, iteration))
    result.runs.sort(key=lambda r: (r.scenario, r.iteration))
    return result


async def _run(
    plan: Plan,
    result: ModelResults,
    scenario: Scenario,
    iteration: int,
    progress: Callable[[str], None],
    on_app: Callable[[Settings], None],
) -> None:
    workdir = result.folder / "runs" / slug(scenario.name) / str(iteration)
    try:
        record = await run_scenario(
            scenario, model=result.model, prompt=plan.prompt, workdir=workdir, on_app=on_app
        )
    except ScenarioRunError as exc:
        if not any(i.path.parent.name == scenario.name for i in result.invalid):
            path = Path(scenario.name) / "scenario.yaml"
            result.invalid.append(InvalidScenario(path, f"{scenario.name}: {exc}"))
        progress(f"{result.model.name}  {scenario.name} #{iteration}: NOT RUN ({exc})")
        return
    verdict = None
    if plan.judge is not None:
        verdict = await plan.judge.grade(scenario.expect.facts, record.happened.report)
    run = RunResult(
        scenario=scenario.name,
        iteration=iteration,
        happened=record.happened,
        score=score(scenario.expect, record.happened),
        verdict=verdict,
        transcript=_keep(workdir / "transcript.json", _transcript(record), result.folder),
        report=_keep(workdir / "report.md", "\n\n---\n\n".join(record.reports), result.folder),
    )
    result.runs.append(run)
    progress(_line(result.model.name, run))


def _transcript(record: RunRecord) -> str:
    data = record.transcripts[0] if len(record.transcripts) == 1 else record.transcripts
    return json.dumps(data, indent=1, ensure_ascii=False)


def _keep(path: Path, text: str, folder: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path.relative_to(folder))


def _line(model: str, run: RunResult) -> str:
    verdict = "PASS" if run.score.passed else "FAIL (" + ", ".join(run.score.failures) + ")"
    h = run.happened
    return (
        f"{model}  {run.scenario} #{run.iteration}: {verdict}  "
        f"{h.decision}, {h.turns} turns, {h.tokens.input + h.tokens.output} tokens, "
        f"{h.seconds:.1f} s"
    )
