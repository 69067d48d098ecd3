"""`make demo`: the in-process demo with the scripted LLM, in live and approve mode, and
`python -m demo` as a process."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
import pytest_asyncio

from demo.__main__ import approve_mode, parse_arguments
from demo.approvals import ApproveMode
from demo.run import DemoResult, run_demo
from demo.scripted_llm import LABEL

ROOT = Path(__file__).resolve().parent.parent
CONSOLE_LINE = re.compile(
    r"^Console: (?P<url>http://127\.0\.0\.1:\d+/console)  "
    r"\(sign in with the token: (?P<token>\S+)\)$",
    re.MULTILINE,
)
DENY_NOTE = "not during the sale"


class Output(io.StringIO):
    """The demo's output, with an event per awaited text: set once a line carries it."""

    def __init__(self) -> None:
        super().__init__()
        self._awaited: dict[str, asyncio.Event] = {}

    def seen(self, text: str) -> asyncio.Event:
        event = self._awaited.setdefault(text, asyncio.Event())
        if text in self.getvalue():
            event.set()
        return event

    def write(self, s: str) -> int:
        written = super().write(s)
        for text, event in self._awaited.items():
            if text in s:
                event.set()
        return written


@dataclass(slots=True)
class Run:
    result: DemoResult
    printed: str
    looked: dict[str, httpx.Response] = field(default_factory=dict)  # while kept running


def operator(printed: str) -> httpx.AsyncClient:
    """A client of the runtime as an operator reading the demo's output would make it."""
    found = CONSOLE_LINE.search(printed)
    assert found is not None, printed[:3000]
    base_url = found["url"].removesuffix("/console")
    return httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {found['token']}"}
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def demo(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One in-process run of the demo (live mode) with the scripted LLM, kept running at the
    end just long enough to open the console URL it printed."""
    out = Output()
    looked: dict[str, httpx.Response] = {}

    async def look_around(ready: Callable[[], None]) -> None:
        ready()
        async with operator(out.getvalue()) as client:
            looked["console"] = await client.get("/console")
            looked["approvals"] = await client.get("/approvals")

    run_dir = tmp_path_factory.mktemp("demo") / "run"
    result = await run_demo(out, llm_api_key=None, run_dir=run_dir, keep=look_around)
    return Run(result, out.getvalue(), looked)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def approved(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The demo in approve mode, the demo deciding (`--auto-approve`, or no terminal)."""
    out = Output()
    run_dir = tmp_path_factory.mktemp("approved") / "run"
    result = await run_demo(out, llm_api_key=None, run_dir=run_dir, approve=ApproveMode.AUTO)
    return Run(result, out.getvalue())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def denied(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The demo in approve mode waiting for the console, and an operator who denies every
    write through the API the console's buttons use."""
    out = Output()

    async def deny_when_asked() -> None:
        await out.seen("Waiting for your decision").wait()
        async with operator(out.getvalue()) as client:
            for approval in (await client.get("/approvals")).json()["approvals"]:
                path = f"/alerts/{approval['incident_id']}/approvals/{approval['approval_id']}"
                decided = await client.post(path, json={"decision": "deny", "note": DENY_NOTE})
                assert decided.status_code == 200, decided.text

    run_dir = tmp_path_factory.mktemp("denied") / "run"
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(deny_when_asked())
        demo_run = tasks.create_task(
            run_demo(out, llm_api_key=None, run_dir=run_dir, approve=ApproveMode.CONSOLE)
        )
    return Run(demo_run.result(), out.getvalue())


# -- live mode -----------------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="module")
async def test_checkout_is_resolved_by_a_restart_that_clears_the_leak(demo: Run) -> None:
    result = demo.result
    checkout = result.incident("checkout")
    assert checkout.status == "resolved"
    assert result.checkout.posts == ["/ops/restart"]
    assert result.checkout.restarts == 1
    assert not result.checkout.fault_active
    assert [c["name"] for c in checkout.tool_calls][-1] == "write_incident_report"


@pytest.mark.asyncio(loop_scope="module")
async def test_payments_is_escalated_with_one_page_keyed_by_the_incident(demo: Run) -> None:
    result = demo.result
    payments = result.incident("payments")
    assert payments.status == "escalated"
    triggers = [e.json for e in result.pagerduty.events if e.json["event_action"] == "trigger"]
    assert len(triggers) == 1
    assert triggers[0]["dedup_key"] == payments.incident_id
    assert triggers[0]["payload"]["severity"] == "critical"
    assert result.payments.posts == []


@pytest.mark.asyncio(loop_scope="module")
async def test_both_reports_are_on_disk_and_printed(demo: Run) -> None:
    result, printed = demo.result, demo.printed
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
async def test_runtime_logs_go_to_the_log_file_not_the_output(demo: Run) -> None:
    assert '"message": "INCIDENT_REPORT"' in demo.result.log_file.read_text(encoding="utf-8")
    assert '"level":' not in demo.printed


@pytest.mark.asyncio(loop_scope="module")
async def test_the_console_url_is_printed_with_the_ops_token_and_answers(demo: Run) -> None:
    found = CONSOLE_LINE.search(demo.printed)
    assert found is not None
    assert found["url"] == demo.result.console_url
    assert demo.printed.index("Console: ") < demo.printed.index("== Incident 1")
    assert demo.looked["approvals"].status_code == 200  # the printed token is the ops token
    console = demo.looked["console"]
    assert console.status_code == 303, console
    assert console.headers["location"].startswith("/console/login")


@pytest.mark.asyncio(loop_scope="module")
async def test_keep_holds_everything_running_after_the_summary(demo: Run) -> None:
    kept = (
        f"Everything is still running; the console is at {demo.result.console_url}. "
        "Press Ctrl-C to stop."
    )
    assert demo.printed.index("== Summary") < demo.printed.index(kept)


@pytest.mark.asyncio(loop_scope="module")
async def test_live_mode_asks_for_no_approval(demo: Run) -> None:
    assert demo.result.approvals == []
    assert "approval needed" not in demo.printed
    assert "## Approvals" not in demo.result.incident("checkout").report


# -- approve mode, decided by the demo -------------------------------------------------------


@pytest.mark.asyncio(loop_scope="module")
async def test_auto_approve_approves_every_write_and_the_outcomes_stay(approved: Run) -> None:
    result = approved.result
    assert result.ok, result.problems
    assert [a["tool"] for a in result.approvals] == ["call_ops_endpoint"]
    assert {(a["status"], a["decided_by"]) for a in result.approvals} == {("approved", "token")}
    assert result.incident("checkout").status == "resolved"
    assert result.incident("payments").status == "escalated"
    assert result.checkout.posts == ["/ops/restart"]
    assert not result.checkout.fault_active


@pytest.mark.asyncio(loop_scope="module")
async def test_auto_approve_prints_each_approval_its_console_link_and_decision(
    approved: Run,
) -> None:
    printed = approved.printed
    for approval in approved.result.approvals:
        incident_id, approval_id = approval["incident_id"], approval["approval_id"]
        assert f"approval needed  {approval_id}: POST checkout /ops/restart" in printed
        links = {unquote(link) for link in re.findall(r"console: (\S+)", printed)}
        assert f"{approved.result.console_url}/alerts/{incident_id}" in links
        assert f"POST /alerts/{incident_id}/approvals/{approval_id}" in printed
        assert f"{approval_id}  POST checkout /ops/restart: approved by token" in printed
    assert "The demo approves it, as an operator would" in printed
    assert "Approvals: 1 asked for, 1 approved" in printed
    assert "Waiting for your decision" not in printed


@pytest.mark.asyncio(loop_scope="module")
async def test_every_report_in_approve_mode_has_an_approvals_section(approved: Run) -> None:
    for incident in approved.result.incidents:
        assert incident.report_file is not None
        assert "## Approvals" in incident.report_file.read_text(encoding="utf-8")


# -- approve mode, decided in the console ----------------------------------------------------


@pytest.mark.asyncio(loop_scope="module")
async def test_the_demo_waits_for_the_operators_decision(denied: Run) -> None:
    printed = denied.printed
    waiting = printed.index("Waiting for your decision")
    assert waiting < printed.index(f"denied by token: {DENY_NOTE}")
    assert "The demo approves it" not in printed


@pytest.mark.asyncio(loop_scope="module")
async def test_a_denied_write_is_reported_and_does_not_fail_the_demo(denied: Run) -> None:
    result = denied.result
    assert result.ok, result.problems
    assert result.checkout.posts == []
    assert result.checkout.fault_active
    assert [a["status"] for a in result.approvals] == ["denied"]
    assert f"not sent: POST checkout /ops/restart (denied by token: {DENY_NOTE})" in denied.printed
    assert "Approvals: 1 asked for, 1 denied" in denied.printed
    assert "| denied | token |" in result.incident("checkout").report
    # The fix was not made and checkout is still unhealthy: the agent pages a human.
    assert result.incident("checkout").outcome == "escalated"


# -- python -m demo --------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("argv", "stdin", "expected"),
    [
        ([], Terminal(), ApproveMode.OFF),
        (["--approve"], Terminal(), ApproveMode.CONSOLE),
        (["--approve", "--auto-approve"], Terminal(), ApproveMode.AUTO),
        (["--approve"], io.StringIO(), ApproveMode.AUTO),  # no terminal: nobody to ask
    ],
)
def test_who_decides_the_approvals(
    argv: list[str], stdin: io.StringIO, expected: ApproveMode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", stdin)
    assert approve_mode(parse_arguments(argv)) is expected


def test_auto_approve_needs_approve(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_arguments(["--auto-approve"])
    assert "--auto-approve needs --approve" in capsys.readouterr().err


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "PAGERDUTY_"))}


def test_python_m_demo_exits_zero(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "demo", "--run-dir", str(tmp_path / "run")],
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "Demo finished" in completed.stdout
    assert "Traceback" not in completed.stdout + completed.stderr
    assert len(list((tmp_path / "run" / "incidents").glob("*.md"))) == 2


def test_keep_runs_until_ctrl_c_then_stops_cleanly_and_exits_zero(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "demo", "--approve", "--keep"]
    with subprocess.Popen(
        [*command, "--run-dir", str(tmp_path / "run")],
        cwd=ROOT,
        env=_environment(),
        stdin=subprocess.DEVNULL,  # no terminal: the demo approves the writes itself
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdout is not None
        printed = []
        for line in process.stdout:
            printed.append(line)
            if "Press Ctrl-C to stop." in line:
                process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, "".join(printed)[-3000:]
    output = "".join(printed)
    assert "The demo approves it, as an operator would" in output
    assert "Everything is still running; the console is at http://127.0.0.1:" in output
    assert output.rstrip().endswith("Demo finished: everything was stopped.")
    assert "Traceback" not in output
