"""Three runtime processes on one PostgreSQL database (CONTRACT §8), end to end.

Each replica is `python -m main` on its own port with STATE_BACKEND=postgres; the fake model,
services and PagerDuty run in the test process (tests/fakes/replicas.py). What the replicas
decide together is measured where it shows: the fake model sees every run, the fake service
every remediation, and `/alerts*` on any replica (or the database itself) what was stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import psycopg

from demo.simulators.llm import Call, FakeLLM, Policy, Step, say, tools
from demo.simulators.ops_service import FakeOpsService
from demo.simulators.pagerduty import FakePagerDuty
from tests.fakes.policies import incident_of, status_then_conclude
from tests.fakes.postgres import PostgresServer
from tests.fakes.replicas import (
    Answer,
    Fleet,
    MeteredModel,
    Replica,
    Webhook,
    eventually,
    first_turns,
    fleet,
    post,
    send_all,
    spread,
)
from tests.fakes.stack import start_fakes

LIMIT = 4  # MAX_CONCURRENT_ALERTS
SERVICES = {f"svc{n:02d}": False for n in range(20)}
TERMINAL = ("resolved", "escalated", "expired")


@contextlib.asynccontextmanager
async def world(
    llm: FakeLLM, services: Mapping[str, bool], database_url: str, workdir: Path, **settings: Any
) -> AsyncIterator[tuple[Fleet, FakePagerDuty, dict[str, FakeOpsService]]]:
    """The fakes served here, and a fleet of replicas (none started yet) pointed at them."""
    async with contextlib.AsyncExitStack() as stack:
        values, pagerduty, fakes = await start_fakes(stack, llm, services)
        replicas = await stack.enter_async_context(
            fleet(values, database_url, workdir, max_concurrent_alerts=LIMIT, **settings)
        )
        yield replicas, pagerduty, fakes


async def detail(client: httpx.AsyncClient, replica: Replica, incident_id: str) -> Any:
    response = await client.get(f"{replica.url}/alerts/{incident_id}")
    return response.json() if response.status_code == 200 else None


async def finished(client: httpx.AsyncClient, replica: Replica, incident_id: str) -> Any:
    """The incident's detail once its latest occurrence reached a terminal status."""
    found = await detail(client, replica, incident_id)
    return found if found is not None and found["status"] in TERMINAL else None


async def all_finished(client: httpx.AsyncClient, replica: Replica, count: int) -> Any:
    """`GET /alerts` once nothing runs or waits and `count` occurrences finished."""
    listing = (await client.get(f"{replica.url}/alerts", params={"limit": 1000})).json()
    idle = not listing["running"] and not listing["queued"]
    return listing if idle and len(listing["recent"]) >= count else None


def stored_alerts(database_url: str) -> dict[str, int]:
    """Per incident, the alerts the database holds: each occurrence and its repeats."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT incident_id, sum(1 + repeats) FROM occurrences GROUP BY incident_id"
        ).fetchall()
    return {incident: int(count) for incident, count in rows}


def notes(found: Mapping[str, Any]) -> str:
    return " | ".join(str(step.get("note")) for step in found["timeline"])


async def test_an_alert_storm_over_three_replicas_runs_each_incident_once_within_the_limits(
    database_url: str, tmp_path: Path
) -> None:
    model = MeteredModel(seconds=0.05)
    llm = FakeLLM(policy=model.policy)
    async with world(llm, SERVICES, database_url, tmp_path, log_level="WARNING") as (
        replicas,
        _pagerduty,
        _services,
    ):
        nodes = await replicas.start("a", "b", "c")
        storm = spread(nodes, 10_000, incidents=100, services=len(SERVICES))
        answers = await send_all(storm, concurrency=64)
        listing = await eventually(
            lambda: all_finished(replicas.client, nodes[0], 100),
            seconds=60,
            what="every incident of the storm finished",
        )
        incidents = sorted({w.incident_id for w in storm})
        details = [await detail(replicas.client, nodes[n % 3], i) for n, i in enumerate(incidents)]
    assert Counter(a.code for a in answers) == {202: 10_000}
    opened = Counter(a.webhook.incident_id for a in answers if a.status == "queued")
    assert opened == dict.fromkeys(incidents, 1)  # one occurrence per incident
    assert {a.status for a in answers} == {"queued", "deduplicated"}
    runs = first_turns(llm.requests)
    assert len(runs) == 100
    assert sorted(incident_of(r) or "" for r in runs) == incidents
    assert {r["model"] for r in runs} == {"a", "b", "c"}  # every replica took runs
    assert model.peak_runs_per_service == 1
    assert model.peak_requests_per_service == 1
    assert model.peak_runs == LIMIT  # the limit was reached, and never passed
    assert model.peak_requests <= LIMIT
    assert [d["status"] for d in details] == ["resolved"] * 100
    assert len(listing["recent"]) == 100
    assert stored_alerts(database_url) == Counter(a.webhook.incident_id for a in answers)


RESTART = Call(
    "call_ops_endpoint", {"service": "worker", "endpoint": "/ops/restart", "method": "POST"}
)
# CONTRACT §8, word for word: what the model is told of a call whose result was never stored.
UNKNOWN = "outcome unknown: the runtime restarted during this call; check before repeating it"


async def test_a_killed_replicas_run_is_taken_over_and_its_unknown_call_not_sent_again(
    database_url: str, tmp_path: Path
) -> None:
    llm = FakeLLM(script=[tools(RESTART), say("Restart outcome unknown; the worker is healthy.")])
    async with world(llm, {"worker": False}, database_url, tmp_path) as (replicas, _pd, fakes):
        worker = fakes["worker"]
        worker.hold("/ops/restart")
        try:
            nodes = await replicas.start("a", "b", "c")
            accepted = await post(replicas.client, Webhook(nodes[0].url, "killed", "worker"))
            async with asyncio.timeout(30):
                await worker.arrived("/ops/restart")  # the run's POST is in flight, held
            owner = next(n for n in nodes if n.name == llm.requests[0]["model"])
            owner.kill()
            await owner.process.wait()
            live = [n for n in nodes if n is not owner]
            found = await eventually(
                lambda: finished(replicas.client, live[0], "generic:killed"),
                seconds=30,
                what="the killed replica's run finished by another replica",
            )
            report = await replicas.client.get(f"{live[1].url}/alerts/generic:killed/report")
        finally:
            worker.release()
    assert accepted.status == "queued"
    assert owner.process.returncode == -signal.SIGKILL
    assert worker.paths("POST") == ["/ops/restart"]  # sent once, never again
    assert len(llm.requests) == 2
    resumed = llm.requests[1]
    assert resumed["model"] in {n.name for n in live}
    answer = [m for m in resumed["messages"] if m["role"] == "tool"]
    assert len(answer) == 1
    assert f'"{UNKNOWN}"' in answer[0]["content"]
    assert found["status"] == "resolved"
    assert "taken over" in notes(found)
    assert [(c["name"], c["ok"], c["error"]) for c in found["tool_calls"]] == [
        ("call_ops_endpoint", False, UNKNOWN)
    ]
    assert report.status_code == 200
    assert "taken over" in report.text
    assert "Restart outcome unknown" in report.text


async def test_sigterm_hands_a_run_back_and_another_replica_finishes_it(
    database_url: str, tmp_path: Path
) -> None:
    gate = asyncio.Event()
    llm = FakeLLM(script=[say("never delivered", hold=gate)])  # then: "Diagnosis complete."
    async with world(llm, {"worker": False}, database_url, tmp_path) as (replicas, pd, _fakes):
        try:
            nodes = await replicas.start("a", "b", "c")
            await post(replicas.client, Webhook(nodes[0].url, "handed", "worker"))
            async with asyncio.timeout(30):
                await llm.wait_for_requests(1)
            owner = next(n for n in nodes if n.name == llm.requests[0]["model"])
            code = await owner.terminate()
            live = [n for n in nodes if n is not owner]
            found = await eventually(
                lambda: finished(replicas.client, live[0], "generic:handed"),
                seconds=30,
                what="the handed-back run finished by another replica",
            )
        finally:
            gate.set()
    assert code in (0, -signal.SIGTERM)
    assert [r["model"] for r in llm.requests][0] == owner.name
    assert [r["model"] for r in llm.requests][1] in {n.name for n in live}
    assert len(llm.requests) == 2
    assert found["status"] == "resolved"
    assert "handed back" in notes(found)
    assert pd.events == []  # handed back, not escalated as a cut-off run


async def snapshot(client: httpx.AsyncClient, replica: Replica, incident_id: str) -> Any:
    """Everything `/alerts*` shows of an incident."""
    base = f"{replica.url}/alerts/{incident_id}"
    return (
        (await client.get(base)).json(),
        (await client.get(f"{base}/report")).text,
        (await client.get(f"{base}/transcript")).json(),
    )


async def test_a_full_restart_of_every_replica_forgets_nothing(
    database_url: str, tmp_path: Path
) -> None:
    gate = asyncio.Event()
    llm = FakeLLM(policy=status_then_conclude(holds={"generic:inflight": gate}))
    services = {"api": True, "worker": False, "db": False}
    async with world(llm, services, database_url, tmp_path) as (replicas, pd, _fakes):
        client = replicas.client
        try:
            first = await replicas.start("a1", "b1", "c1")
            done = [
                Webhook(first[n % 3].url, f"done-{n}", ("api", "worker")[n % 2]) for n in range(6)
            ]
            handled = await send_all(done, concurrency=6)
            await eventually(
                lambda: all_finished(client, first[0], 6), seconds=30, what="six alerts handled"
            )
            asked = len(llm.requests)
            inflight = await post(client, Webhook(first[0].url, "inflight", "db"))
            async with asyncio.timeout(30):
                await llm.wait_for_requests(asked + 1)  # its run waits for the model
            behind = await post(client, Webhook(first[1].url, "behind", "db"))
            ids = [w.incident_id for w in done]
            before = [await snapshot(client, first[2], i) for i in ids]
            codes = await asyncio.gather(*(r.terminate() for r in first))
            gate.set()
            second = await replicas.start("a2", "b2", "c2")
            listing = await eventually(
                lambda: all_finished(client, second[0], 8),
                seconds=30,
                what="the run and the queued alert left at shutdown finished after the restart",
            )
            after = [await snapshot(client, second[n % 3], i) for n, i in enumerate(ids)]
            asked = len(llm.requests)
            repeat = await post(client, Webhook(second[1].url, "done-0", "api"))
            resumed = await detail(client, second[2], "generic:inflight")
            queued = await detail(client, second[0], "generic:behind")
            again = (await client.get(f"{second[1].url}/alerts", params={"limit": 1000})).json()
        finally:
            gate.set()
    assert [a.status for a in handled] == ["queued"] * 6
    assert (inflight.status, behind.status) == ("queued", "queued")
    assert all(code in (0, -signal.SIGTERM) for code in codes)
    assert after == before  # status, timeline, tool calls, report and transcript, all kept
    assert all(d["status"] == "resolved" and "## Timeline" in r for d, r, _ in after)
    assert (repeat.status, repeat.reason) == ("deduplicated", "recently_handled")
    assert len(llm.requests) == asked  # the repeat started no run
    assert resumed["status"] == "resolved"
    assert "handed back" in notes(resumed)
    models = [r["model"] for r in llm.requests if incident_of(r) == "generic:inflight"]
    assert models[0] in {"a1", "b1", "c1"}
    assert set(models[1:]) <= {"a2", "b2", "c2"}  # resumed by the new replicas
    assert queued["status"] == "resolved"
    assert [incident_of(r) for r in first_turns(llm.requests)].count("generic:behind") == 1
    recent = {r["incident_id"] for r in again["recent"]}
    assert (
        recent
        == {*ids, "generic:inflight", "generic:behind"}
        == {r["incident_id"] for r in listing["recent"]}
    )
    assert pd.events == []  # nothing escalated: the shutdown left the work to the next start


async def test_the_database_stopped_and_started_mid_storm_loses_no_acknowledged_alert(
    tmp_path: Path,
) -> None:
    server = await asyncio.to_thread(PostgresServer.start_new)  # this test's own: it stops it
    gate = asyncio.Event()
    try:
        database_url = server.create_database()
        model = MeteredModel(seconds=0.05)
        # The first run waits for its first answer until the database is back: one run at
        # least spans the outage.
        llm = FakeLLM(policy=holding_first_answer(model.policy, "generic:inc-000", gate))
        async with world(llm, SERVICES, database_url, tmp_path, log_level="WARNING") as (
            replicas,
            pd,
            _fakes,
        ):
            nodes = await replicas.start("a", "b", "c")
            storm = spread(nodes, 2_000, incidents=50, services=len(SERVICES))
            answers = await storm_with_outage(storm, server, gate)
            refused = [a for a in answers if a.code != 202]
            retried = await retry_until_accepted([a.webhook for a in refused])
            await eventually(
                lambda: all_finished(replicas.client, nodes[0], 50),
                seconds=60,
                what="every incident finished after the outage",
            )
            incidents = sorted({w.incident_id for w in storm})
            details = {
                i: await detail(replicas.client, nodes[n % 3], i) for n, i in enumerate(incidents)
            }
        stored = stored_alerts(database_url)
    finally:
        gate.set()
        await asyncio.to_thread(server.close)
    assert refused, "no webhook met the outage"
    # Every answered refusal is the outage's 503 (a connection that ended with no answer, a
    # rare race of a kept-alive connection, is retried like a refusal).
    assert {(a.code, a.retry_after, a.error) for a in refused if a.code} == {
        (503, "10", "database_unavailable")
    }
    acknowledged = Counter(a.webhook.incident_id for a in [*answers, *retried] if a.code == 202)
    assert sorted(acknowledged) == incidents
    opened = Counter(a.webhook.incident_id for a in [*answers, *retried] if a.status == "queued")
    assert max(opened.values()) == 1  # never a second occurrence
    for incident, count in acknowledged.items():  # every acknowledged alert is stored
        assert stored[incident] >= count, incident
    assert sum(stored.values()) - acknowledged.total() <= len(refused)
    ran = {incident_of(r) for r in first_turns(llm.requests)}
    assert ran == set(incidents)  # every incident ran
    # A run the outage cut off is resumed once the database is back, not failed.
    assert {i: d and d["status"] for i, d in details.items()} == dict.fromkeys(
        incidents, "resolved"
    )
    assert pd.events == []


def holding_first_answer(policy: Policy, incident_id: str, gate: asyncio.Event) -> Policy:
    """`policy`, except that the first answer of `incident_id`'s run also waits for `gate`."""

    def held(messages: list[dict[str, Any]]) -> Step:
        step = policy(messages)
        first = not any(m["role"] == "assistant" for m in messages)
        if first and incident_of({"messages": messages}) == incident_id:
            return dataclasses.replace(step, hold=gate)
        return step

    return held


async def storm_with_outage(
    storm: list[Webhook], server: PostgresServer, gate: asyncio.Event
) -> list[Answer]:
    """Send the storm; after a fifth of it is answered, stop the database, and start it again
    once a webhook was refused; then set `gate`."""
    flowing, refused = asyncio.Event(), asyncio.Event()
    answered = 0

    def seen(answer: Answer) -> None:
        nonlocal answered
        answered += 1
        if answered >= len(storm) // 5:
            flowing.set()
        if answer.code != 202:
            refused.set()

    async with asyncio.TaskGroup() as group:
        sending = group.create_task(send_all(storm, seen=seen))
        async with asyncio.timeout(60):
            await flowing.wait()
        await asyncio.to_thread(server.stop)
        try:
            async with asyncio.timeout(60):
                await refused.wait()
        finally:
            await asyncio.to_thread(server.start)
            gate.set()
    return sending.result()


async def retry_until_accepted(webhooks: list[Webhook]) -> list[Answer]:
    """Send the refused webhooks again, as a platform does, until each is accepted; every
    answer, the last round last."""
    pending, answers = webhooks, []

    async def accepted() -> bool:
        nonlocal pending
        round_ = await send_all(pending)
        answers.extend(round_)
        pending = [a.webhook for a in round_ if a.code != 202]
        return not pending

    await eventually(accepted, seconds=60, what="the refused webhooks accepted")
    return answers
