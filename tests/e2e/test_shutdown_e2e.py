"""The real process: `uvicorn main:app` started as a subprocess, configured by environment.

The fakes (LLM, PagerDuty, services) run in the test process on loopback. Waiting for the
subprocess to serve and to stop is a bounded poll: it is the only way to watch a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from demo.simulators.llm import FakeLLM, say
from demo.simulators.ops_service import make_ops_service
from demo.simulators.pagerduty import FakePagerDuty, make_fake_pagerduty
from demo.simulators.server import free_port, serve
from tests.conftest import TEST_SECRETS
from tests.fakes.process import clean_environment

ROOT = Path(__file__).resolve().parents[2]
GRACE_SECONDS = 1
EXIT_MARGIN_SECONDS = 15


def runtime_environment(tmp: Path, llm: str, pagerduty: str, worker: str) -> dict[str, str]:
    prompt = tmp / "prompt.md"
    prompt.write_text("# SRE prompt\nDiagnose through /ops/*.\n", encoding="utf-8")
    return {
        **clean_environment(),
        "LLM_API_KEY": TEST_SECRETS["llm_api_key"],
        "LLM_API_BASE_URL": llm,
        "PAGERDUTY_API_TOKEN": TEST_SECRETS["pagerduty_api_token"],
        "PAGERDUTY_ROUTING_KEY": TEST_SECRETS["pagerduty_routing_key"],
        "PAGERDUTY_EVENTS_URL": f"{pagerduty}/v2/enqueue",
        "PAGERDUTY_API_URL": pagerduty,
        "OPS_AUTH_TOKEN": TEST_SECRETS["ops_auth_token"],
        "SERVICE_REGISTRY": f"worker|{worker}|false",
        "SRE_PROMPT_PATH": str(prompt),
        "INCIDENTS_DIR": str(tmp / "incidents"),
        "SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
    }


@contextlib.asynccontextmanager
async def uvicorn_process(env: dict[str, str], log: Path) -> AsyncIterator[tuple[Any, str]]:
    port = free_port()
    with log.open("w") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "uvicorn",
            "main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            await wait_until_serving(url, process)
            yield process, url
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def wait_until_serving(url: str, process: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline and process.returncode is None:
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{url}/health")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError("the runtime did not start serving")


async def wait_for_events(pagerduty: FakePagerDuty, count: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    # A bounded poll on what the subprocess does; the fake offers no event to await.
    while len(pagerduty.events) < count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)


def webhook(url: str, incident: str) -> tuple[str, dict[str, object]]:
    body = {"incident_id": incident, "summary": "Error rate above 5%", "service": "worker"}
    return f"{url}/webhook/generic?auth_token={TEST_SECRETS['ops_auth_token']}", body


async def test_sigterm_escalates_queued_and_cut_off_runs_then_exits(tmp_path: Path) -> None:
    held = asyncio.Event()
    llm = FakeLLM(script=[say("never seen", hold=held)])
    pd_app, pagerduty = make_fake_pagerduty()
    worker_app, _worker = make_ops_service(name="worker", token=TEST_SECRETS["ops_auth_token"])
    async with (
        serve(llm.app()) as llm_url,
        serve(pd_app) as pd_url,
        serve(worker_app) as worker_url,
        httpx.AsyncClient() as client,
    ):
        env = runtime_environment(tmp_path, llm_url, pd_url, worker_url)
        try:
            async with uvicorn_process(env, tmp_path / "runtime.log") as (process, url):
                running = await _post(client, webhook(url, "running"))
                await llm.wait_for_requests(1)  # its run waits on the held LLM answer
                queued = await _post(client, webhook(url, "queued"))
                process.send_signal(signal.SIGTERM)
                stopped_at = time.monotonic()
                await wait_for_events(pagerduty, 1, seconds=10)  # the queued one, at once
                late = await _post_or_refused(client, webhook(url, "late"))
                code = await asyncio.wait_for(process.wait(), GRACE_SECONDS + EXIT_MARGIN_SECONDS)
                took = time.monotonic() - stopped_at
        finally:
            held.set()
    assert running.json()["alerts"][0]["status"] == "queued"
    assert queued.json()["alerts"][0]["status"] == "queued"
    # uvicorn >= 0.29 re-raises the captured SIGTERM after its graceful shutdown, so the
    # exit status is "terminated by SIGTERM" (-15; 143 in a shell), not 0.
    assert code in (0, -signal.SIGTERM)
    assert took < GRACE_SECONDS + EXIT_MARGIN_SECONDS
    assert "Application shutdown complete" in (tmp_path / "runtime.log").read_text()
    assert late is None or late == 503  # refused: connection refused, or 503 draining
    events = {e.json["dedup_key"]: e.json for e in pagerduty.events}
    assert set(events) == {"generic:running", "generic:queued"}
    assert [e.json["event_action"] for e in pagerduty.events] == ["trigger", "trigger"]
    assert "shutdown]" in events["generic:queued"]["payload"]["summary"]
    assert "shutdown_grace_exceeded" in events["generic:running"]["payload"]["summary"]
    reports = {p.name: p.read_text() for p in (tmp_path / "incidents").glob("*.md")}
    assert len(reports) == 2
    assert any("generic:queued" in t and "shut down before" in t for t in reports.values())
    assert any("generic:running" in t and "still diagnosing" in t for t in reports.values())
    assert all("## Token Usage" in t for t in reports.values())


async def _post(
    client: httpx.AsyncClient, request: tuple[str, dict[str, object]]
) -> httpx.Response:
    return await client.post(request[0], json=request[1])


async def _post_or_refused(
    client: httpx.AsyncClient, request: tuple[str, dict[str, object]]
) -> int | None:
    """The status code of a webhook sent now, or None when the connection was refused."""
    try:
        response = await client.post(request[0], json=request[1])
    except httpx.TransportError:
        return None
    return response.status_code


def test_bad_environment_fails_before_serving_with_one_message(tmp_path: Path) -> None:
    secrets = {
        "LLM_API_KEY": "sk-very-secret-llm-key-987654321",
        "OPS_AUTH_TOKEN": "ops-very-secret-token-123456789",
    }
    env = {
        **clean_environment(),
        **secrets,
        "SERVICE_REGISTRY": "api|ftp://nowhere|maybe",
        "MAX_CONCURRENT_ALERTS": "0",
        "AGENT_MODE": "yolo",
        "SRE_PROMPT_PATH": str(tmp_path / "missing.md"),
        "INCIDENTS_DIR": str(tmp_path / "incidents"),
    }
    port = str(free_port())
    completed = subprocess.run(
        [sys.executable, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", port],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0
    assert output.count("invalid configuration") == 1
    for variable in (
        "PAGERDUTY_API_TOKEN",
        "PAGERDUTY_ROUTING_KEY",
        "SERVICE_REGISTRY",
        "MAX_CONCURRENT_ALERTS",
        "AGENT_MODE",
        "SRE_PROMPT_PATH",
    ):
        assert variable in completed.stderr
    assert "Uvicorn running" not in output
    assert "Traceback" not in output
    assert not any(secret in output for secret in secrets.values())


async def test_webhook_token_in_the_query_never_reaches_the_process_output(
    tmp_path: Path,
) -> None:
    llm = FakeLLM()
    pd_app, _pagerduty = make_fake_pagerduty()
    worker_app, _worker = make_ops_service(name="worker", token=TEST_SECRETS["ops_auth_token"])
    async with (
        serve(llm.app()) as llm_url,
        serve(pd_app) as pd_url,
        serve(worker_app) as worker_url,
        httpx.AsyncClient() as client,
    ):
        env = runtime_environment(tmp_path, llm_url, pd_url, worker_url)
        async with uvicorn_process(env, tmp_path / "runtime.log") as (process, url):
            response = await _post(client, webhook(url, "token-check"))
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), GRACE_SECONDS + EXIT_MARGIN_SECONDS)
    assert response.status_code == 202
    assert TEST_SECRETS["ops_auth_token"] not in (tmp_path / "runtime.log").read_text()
