"""`make demo`: the in-process demo with the scripted LLM, and `python -m demo` as a process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_asyncio

from demo.run import DemoResult, run_demo
from demo.scripted_llm import LABEL

ROOT = Path(__file__).resolve().parent.parent


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoResult, str]:
    """One in-process run of the demo with the scripted LLM, shared by this module's tests."""
    out = io.StringIO()
    run_dir = tmp_path_factory.mktemp("demo") / "run"
    result = await run_demo(out, llm_api_key=None, run_dir=run_dir)
    return result, out.getvalue()


@pytest.mark.asyncio(loop_scope="module")
async def test_checkout_is_resolved_by_a_restart_that_clears_the_leak(
    demo: tuple[DemoResult, str],
) -> None:
    result, _ = demo
    checkout = result.incident("checkout")
    assert checkout.status == "resolved"
    assert result.checkout.posts == ["/ops/restart"]
    assert result.checkout.restarts == 1
    assert not result.checkout.fault_active
    assert [c["name"] for c in checkout.tool_calls][-1] == "write_incident_report"


@pytest.mark.asyncio(loop_scope="module")
async def test_payments_is_escalated_with_one_page_keyed_by_the_incident(
    demo: tuple[DemoResult, str],
) -> None:
    result, _ = demo
    payments = result.incident("payments")
    assert payments.status == "escalated"
    triggers = [e.json for e in result.pagerduty.events if e.json["event_action"] == "trigger"]
    assert len(triggers) == 1
    assert triggers[0]["dedup_key"] == payments.incident_id
    assert triggers[0]["payload"]["severity"] == "critical"
    assert result.payments.posts == []


@pytest.mark.asyncio(loop_scope="module")
async def test_both_reports_are_on_disk_and_printed(demo: tuple[DemoResult, str]) -> None:
    result, printed = demo
    assert result.ok, result.problems
    for incident in result.incidents:
        assert incident.report_file is not None
        on_disk = incident.report_file.read_text(encoding="utf-8")
        assert "## Token Usage" in on_disk
        assert incident.report_file.parent == result.incidents_dir
        assert on_disk.splitlines()[0] in printed
        assert incident.incident_id in printed
    assert LABEL in printed
    assert "PoolTimeoutError" in printed
    assert "event_action: trigger" in printed
    assert "\033[" not in printed  # no colour when not writing to a terminal


@pytest.mark.asyncio(loop_scope="module")
async def test_runtime_logs_go_to_the_log_file_not_the_output(
    demo: tuple[DemoResult, str],
) -> None:
    result, printed = demo
    assert '"message": "INCIDENT_REPORT"' in result.log_file.read_text(encoding="utf-8")
    assert '"level":' not in printed


def test_python_m_demo_exits_zero(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "PAGERDUTY_"))}
    completed = subprocess.run(
        [sys.executable, "-m", "demo", "--run-dir", str(tmp_path / "run")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "Demo finished" in completed.stdout
    assert "Traceback" not in completed.stdout + completed.stderr
    assert len(list((tmp_path / "run" / "incidents").glob("*.md"))) == 2
