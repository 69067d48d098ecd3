"""What an evaluation writes: `results.json` (CONTRACT §10) and a markdown table per model.

Pure functions from results to JSON-able values and text, plus `write`, the one function
that touches the disk.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean
from typing import Any

from eval.harness import ModelResults, RunResult

COLUMNS = (
    "scenario",
    "pass rate",
    "decision accuracy",
    "false pages",
    "missed pages",
    "unsafe actions",
    "mean tokens (in / out / cached)",
    "mean seconds",
)


def run_json(run: RunResult) -> dict[str, Any]:
    s, h = run.score, run.happened
    return {
        "scenario": run.scenario,
        "iteration": run.iteration,
        "passed": s.passed,
        "decision": s.decision,
        "expected_decision": s.expected_decision,
        "forbidden_taken": list(s.forbidden_taken),
        "required_missing": list(s.required_missing),
        "facts_found": s.facts_found,
        "facts_total": s.facts_total,
        "judge": run.verdict.score if run.verdict else None,
        "tokens": {"input": h.tokens.input, "output": h.tokens.output, "cached": h.tokens.cached},
        "turns": h.turns,
        "seconds": h.seconds,
        "transcript": run.transcript,
        "report": run.report,
    }


def summary(runs: Sequence[RunResult]) -> dict[str, Any]:
    """Aggregates over runs (over iterations too: `pass_rate` is passed / runs)."""
    count = len(runs)
    judged = [r.verdict.score for r in runs if r.verdict and r.verdict.score is not None]
    return {
        "runs": count,
        "passed": sum(r.score.passed for r in runs),
        "pass_rate": _rate(sum(r.score.passed for r in runs), count),
        "decision_accuracy": _rate(
            sum(r.score.decision == r.score.expected_decision for r in runs), count
        ),
        "false_pages": sum(r.score.false_page for r in runs),
        "missed_pages": sum(r.score.missed_page for r in runs),
        "unsafe_actions": sum(len(r.score.forbidden_taken) for r in runs),
        "mean_tokens": {
            "input": _mean([r.happened.tokens.input for r in runs]),
            "output": _mean([r.happened.tokens.output for r in runs]),
            "cached": _mean([r.happened.tokens.cached for r in runs]),
        },
        "mean_turns": _mean([r.happened.turns for r in runs]),
        "mean_seconds": _mean([r.happened.seconds for r in runs], 2),
        "mean_judge": _mean(judged, 3) if judged else None,
    }


def results_json(result: ModelResults) -> dict[str, Any]:
    by_scenario: dict[str, list[RunResult]] = {}
    for run in result.runs:
        by_scenario.setdefault(run.scenario, []).append(run)
    return {
        "model": result.model.name,
        "prompt_sha256": result.prompt_sha256,
        "runs": [run_json(run) for run in result.runs],
        "summary": {
            **summary(result.runs),
            "scripted": result.model.scripted,
            "scenarios": {name: summary(runs) for name, runs in by_scenario.items()},
            "invalid_scenarios": [{"path": str(i.path), "error": i.error} for i in result.invalid],
        },
    }


def table(result: ModelResults) -> str:
    """The model's markdown table: one row per scenario, then all of them, then failures."""
    by_scenario: dict[str, list[RunResult]] = {}
    for run in result.runs:
        by_scenario.setdefault(run.scenario, []).append(run)
    rows = [_row(name, runs) for name, runs in by_scenario.items()]
    rows.append(_row("**all**", result.runs))
    lines = [
        f"### {result.model.name}" + (" (scripted)" if result.model.scripted else ""),
        "",
        f"Prompt sha256 `{result.prompt_sha256[:12]}`.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    lines += _failures(result)
    return "\n".join(lines) + "\n"


def _row(name: str, runs: Sequence[RunResult]) -> list[str]:
    s = summary(runs)
    tokens = s["mean_tokens"]
    return [
        name,
        f"{s['passed']}/{s['runs']} ({_percent(s['pass_rate'])})",
        _percent(s["decision_accuracy"]),
        str(s["false_pages"]),
        str(s["missed_pages"]),
        str(s["unsafe_actions"]),
        f"{tokens['input']:,.0f} / {tokens['output']:,.0f} / {tokens['cached']:,.0f}",
        f"{s['mean_seconds']:.2f}",
    ]


def _failures(result: ModelResults) -> list[str]:
    lines = [
        f"- `{run.scenario}` #{run.iteration}: {why(run)}"
        for run in result.runs
        if not run.score.passed
    ]
    lines += [f"- not run: {i.error}" for i in result.invalid]
    return ["", "Failures:", "", *lines] if lines else []


def why(run: RunResult) -> str:
    """The reasons a run failed, in words."""
    s = run.score
    parts = []
    if "decision" in s.failures:
        parts.append(f"decision {s.decision} (expected {s.expected_decision})")
    if s.forbidden_taken:
        parts.append("forbidden: " + ", ".join(s.forbidden_taken))
    if s.required_missing:
        parts.append("required missing: " + ", ".join(s.required_missing))
    if "facts" in s.failures:
        parts.append(f"facts {s.facts_found}/{s.facts_total}")
    return "; ".join(parts)


def write(results: Sequence[ModelResults], out: Path) -> str:
    """Write each model's results.json and table.md, and `<out>/summary.md`; return that."""
    tables = []
    for result in results:
        result.folder.mkdir(parents=True, exist_ok=True)
        data = json.dumps(results_json(result), indent=2, ensure_ascii=False)
        (result.folder / "results.json").write_text(data + "\n", encoding="utf-8")
        text = table(result)
        (result.folder / "table.md").write_text(text, encoding="utf-8")
        tables.append(text)
    text = "\n".join(tables)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(text, encoding="utf-8")
    return text


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _mean(values: Sequence[float], digits: int = 1) -> float:
    return round(fmean(values), digits) if values else 0.0


def _percent(rate: float) -> str:
    return f"{rate:.0%}"
