"""`python -m eval`: options, results.json, the table, malformed scenarios, and capture."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import yaml

from demo.simulators.llm import Call, FakeLLM, say, tools
from eval.__main__ import main
from eval.capture import CaptureError, capture
from eval.policies import LABEL
from eval.scenario import Scenario
from tests.conftest import SettingsFactory
from tests.fakes.stack import running_stack

DATA = Path(__file__).parent / "data" / "eval"
RUN_KEYS = {
    "scenario",
    "iteration",
    "passed",
    "decision",
    "expected_decision",
    "forbidden_taken",
    "required_missing",
    "facts_found",
    "facts_total",
    "judge",
    "tokens",
    "turns",
    "seconds",
    "transcript",
    "report",
}


def run_cli(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), env or {}, out), out.getvalue()


def test_without_a_key_the_reference_policy_runs_and_says_it_measures_the_harness(
    tmp_path: Path,
) -> None:
    code, printed = run_cli(
        "--scenarios",
        str(DATA),
        "--out",
        str(tmp_path),
        "--iterations",
        "2",
        "--judge-model",
        "judge-1",
    )
    assert code == 0
    assert LABEL in printed
    assert "--judge-model needs LLM_API_KEY" in printed
    results = json.loads((tmp_path / "scripted-reference" / "results.json").read_text())
    assert set(results) == {"model", "prompt_sha256", "runs", "summary"}
    assert len(results["runs"]) == 6
    assert all(set(run) == RUN_KEYS for run in results["runs"])
    assert set(results["runs"][0]["tokens"]) == {"input", "output", "cached"}
    assert results["summary"]["scenarios"]["false-alarm"]["runs"] == 2
    assert "| pool-leak | " in printed
    assert "| **all** | " in printed
    assert (tmp_path / "summary.md").read_text() in printed


def test_a_malformed_scenario_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    scenarios = tmp_path / "scenarios"
    shutil.copytree(DATA, scenarios)
    broken = scenarios / "broken" / "scenario.yaml"
    broken.parent.mkdir()
    data = yaml.safe_load((DATA / "pool-leak" / "scenario.yaml").read_text())
    data.update(name="broken", expect={"decision": "fix it"})
    broken.write_text(yaml.safe_dump(data))
    code, printed = run_cli("--scenarios", str(scenarios), "--out", str(tmp_path / "out"))
    assert code == 0
    assert f"invalid scenario: {broken}: expect.decision" in printed
    results = json.loads((tmp_path / "out" / "scripted-reference" / "results.json").read_text())
    assert sorted(r["scenario"] for r in results["runs"]) == [
        "db-outage",
        "false-alarm",
        "pool-leak",
    ]
    assert results["summary"]["invalid_scenarios"][0]["path"] == str(broken)


def test_capture_without_a_url_says_postgres_capture_is_not_available() -> None:
    code, printed = run_cli("capture", "gcp:0.abc")
    assert code == 2
    assert "STATE_BACKEND=postgres" in printed
    assert "not available yet" in printed


async def test_capture_writes_a_skeleton_with_the_alert_and_every_answer_seen(
    make_settings: SettingsFactory,
) -> None:
    status = Call("call_ops_endpoint", {"service": "worker", "endpoint": "/ops/status"})
    restart = {"service": "worker", "endpoint": "/ops/restart", "method": "POST"}
    llm = FakeLLM(
        script=[
            tools(status),
            tools(Call("call_ops_endpoint", restart)),
            tools(status),
            say("Restarted; healthy again."),
        ]
    )
    alert = {"incident_id": "w-1", "summary": "worker slow", "service": "worker"}
    async with running_stack(make_settings, llm) as stack:
        stack.services["worker"].faulty = True
        assert (await stack.webhook("generic", alert)).status_code == 202
        await stack.idle()
        text = await capture(stack.client, "generic:w-1")
    skeleton = yaml.safe_load(text)
    assert text.startswith("# Scenario skeleton captured from")
    assert skeleton["alert"]["provider"] == "generic"
    assert skeleton["alert"]["payload"]["incident_id"] == "w-1"
    worker = skeleton["services"]["worker"]
    assert worker["GET /ops/status"]["body"]["status"] == "degraded"
    assert worker["POST /ops/restart"]["status"] == 200
    assert worker["POST /ops/restart"]["after"]["GET /ops/status"]["body"]["status"] == "healthy"
    assert skeleton["expect"]["decision"] is None
    skeleton["expect"]["decision"] = "resolve"
    assert Scenario.model_validate(skeleton).name == "generic-w-1"


async def test_capture_of_an_unknown_incident_is_a_clear_error(
    make_settings: SettingsFactory,
) -> None:
    async with running_stack(make_settings, FakeLLM()) as stack:
        with pytest.raises(CaptureError, match="404"):
            await capture(stack.client, "generic:nope")


def test_capture_cli_refuses_an_unreachable_runtime(tmp_path: Path) -> None:
    code, printed = run_cli(
        "capture", "x", "--from-url", "http://127.0.0.1:9", "--out", str(tmp_path / "s.yaml")
    )
    assert code == 2
    assert "cannot reach" in printed
    assert not (tmp_path / "s.yaml").exists()
