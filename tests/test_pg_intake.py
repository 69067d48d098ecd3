"""Intake on a real PostgreSQL server (CONTRACT §8): the §3 rules across replicas, durable.

Several `PgIntake`s on one database are several replicas; a `FakeRunner` shared by them
sees every run of every replica, so its live checks (one run per service, at most the
limit) hold across replicas. Runs are released by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.resume import restore, saved
from agent.transcript import Transcript
from intake import Ending, Intake, Limits
from intake.pg import schema, store
from intake.pg import service as pg_service
from intake.pg.service import PgIntake, _cancelled
from intake.pg.submit import Submission
from intake.records import AlertRecord
from intake.service import DatabaseUnavailable, IntakeService, MemoryIntake
from models import Alert, AlertState, AlertStatus, Priority, Provider
from tests.fakes.postgres import PostgresServer
from tests.fakes.runner import FakeRunner, RecordingFinalizer


def alert(
    incident: str,
    service: str | None = "api",
    *,
    priority: Priority = Priority.P3,
    state: AlertState = AlertState.FIRING,
    summary: str | None = None,
) -> Alert:
    return Alert(
        incident_id=f"generic:{incident}",
        provider=Provider.GENERIC,
        service=service,
        priority=priority,
        state=state,
        summary=summary or f"summary of {incident}",
    )


def replica(
    url: str,
    runner: Callable[..., Any],
    finalizer: RecordingFinalizer,
    *,
    lease_seconds: float = 30,
    max_tokens_per_hour: int = 0,
    **limits: Any,
) -> PgIntake:
    return PgIntake(
        conninfo=url,
        runner=runner,
        finalize=finalizer,
        limits=Limits(**{"concurrency": 2, "tick_seconds": 0.05, **limits}),
        lease_seconds=lease_seconds,
        restore=restore,
        saved=saved,
        load_transcript=Transcript.load,
        max_tokens_per_hour=max_tokens_per_hour,
    )


@contextlib.asynccontextmanager
async def replicas(
    url: str, count: int, runner: Callable[..., Any], **kw: Any
) -> AsyncIterator[tuple[list[PgIntake], RecordingFinalizer]]:
    finalizer = RecordingFinalizer()
    async with contextlib.AsyncExitStack() as stack:
        started = [
            await stack.enter_async_context(replica(url, runner, finalizer, **kw))
            for _ in range(count)
        ]
        yield started, finalizer


async def queue_lengths(intake: PgIntake) -> tuple[int, int]:
    """The queue's length as the triggers keep it, and as counted."""
    async with intake.connection() as conn:
        cursor = await conn.execute(
            "SELECT (SELECT queued FROM queue_length), "
            "(SELECT count(*) FROM occurrences WHERE status = 'queued')"
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def statuses(intake: PgIntake, alerts: list[Alert]) -> list[tuple[str, str | None]]:
    outcomes = await intake.submit_all(alerts, trace_id="t")
    return [(o.status.value, o.reason) for o in outcomes]


async def test_an_alert_is_stored_run_and_finished(database_url: str) -> None:
    runner = FakeRunner(limit=2, auto=True)
    async with replicas(database_url, 1, runner) as ([intake], _):
        decided = await statuses(intake, [alert("a")])
        await intake.wait_idle()
        record = await intake.get("generic:a")
    assert decided == [("queued", None)]
    assert runner.started == ["generic:a"]
    assert record is not None
    assert record.status is AlertStatus.RESOLVED
    assert [s.status.value for s in record.timeline] == ["queued", "running", "resolved"]


async def test_every_rule_holds_across_replicas_in_a_storm(database_url: str) -> None:
    """3 replicas, 600 alerts over 30 incidents and 6 services, sent to all at once: one
    run per incident, never two runs of a service, never more than the limit."""
    runner = FakeRunner(limit=3, auto=True)
    async with replicas(database_url, 3, runner, concurrency=3) as (intakes, _):
        batches = [
            [alert(f"i{(n + k) % 30}", f"svc{(n + k) % 6}") for k in range(10)] for n in range(60)
        ]
        results = await asyncio.gather(
            *(intakes[n % 3].submit_all(batch, trace_id="t") for n, batch in enumerate(batches))
        )
        await intakes[0].wait_idle()
        assert await queue_lengths(intakes[0]) == (0, 0)
    outcomes = [o.status for batch in results for o in batch]
    assert outcomes.count(AlertStatus.QUEUED) == 30
    assert sorted(runner.started) == sorted(f"generic:i{n}" for n in range(30))
    assert runner.violations == []


async def test_queue_size_is_exact_across_replicas(database_url: str) -> None:
    """20 new incidents at once on two replicas, the one run slot taken: exactly 5 queued
    (never more, and no refusal while there was room)."""
    runner = FakeRunner(limit=1)
    async with replicas(database_url, 2, runner, concurrency=1, queue_size=5) as (intakes, _):
        await statuses(intakes[0], [alert("running", "api")])
        await runner.wait_started(1)
        results = await asyncio.gather(
            *(intakes[n % 2].submit_all([alert(f"q{n}", "api")], trace_id="t") for n in range(20))
        )
        counted = await intakes[0].counts_now()
        lengths = await queue_lengths(intakes[0])
        runner.release("generic:running")
        reasons = [batch[0].reason for batch in results]
        refused = await intakes[1].get(f"generic:q{reasons.index('queue_full')}")
    assert refused is not None
    assert (refused.status, refused.reason) == (AlertStatus.ESCALATED, "queue_full")
    assert [s.status.value for s in refused.timeline] == ["queued", "escalated"]
    assert counted == (1, 5)
    assert lengths == (5, 5)
    assert (reasons.count(None), reasons.count("queue_full")) == (5, 15)


async def test_webhooks_that_arrive_together_are_decided_one_after_another(
    database_url: str,
) -> None:
    """Twenty webhooks for one new incident and five for others, at once on one replica
    (they share transactions): one opens the occurrence, the others are its repeats, and each
    stored occurrence carries the trace id of the webhook that opened it."""
    runner = FakeRunner(limit=1)
    async with replicas(database_url, 1, runner, concurrency=1) as ([intake], _):
        await statuses(intake, [alert("running", "api")])
        await runner.wait_started(1)  # from here everything stays queued
        same = [intake.submit_all([alert("same", "db")], trace_id=f"s{n}") for n in range(20)]
        others = [intake.submit_all([alert(f"o{n}", "db")], trace_id=f"o{n}") for n in range(5)]
        results = await asyncio.gather(*same, *others)
        record = await intake.get("generic:same")
        traces = [getattr(await intake.get(f"generic:o{n}"), "trace_id", None) for n in range(5)]
        runner.release("generic:running")
    decided = [(o.status, o.reason, o.occurrence) for [o] in results[:20]]
    opened = [n for n, outcome in enumerate(decided) if outcome[0] is AlertStatus.QUEUED]
    assert len(opened) == 1
    assert decided.count((AlertStatus.DEDUPLICATED, "queued", 1)) == 19
    assert [(o.status, o.occurrence) for [o] in results[20:]] == [(AlertStatus.QUEUED, 1)] * 5
    assert record is not None
    assert (record.trace_id, record.repeats) == (f"s{opened[0]}", 19)
    assert traces == [f"o{n}" for n in range(5)]


async def test_an_alert_that_cannot_be_stored_fails_only_its_own_webhook(
    database_url: str,
) -> None:
    """A webhook the database refuses (text with a NUL byte: the HTTP edge never lets one
    through) arrives with two others and shares their transaction: it fails alone."""
    async with replicas(database_url, 1, FakeRunner(limit=2)) as ([intake], _):
        bad = alert("bad", summary="a NUL \x00 byte")
        sent = [alert("a", "api"), bad, alert("b", "db")]
        results = await asyncio.gather(
            *(intake.submit_all([a], trace_id="t") for a in sent), return_exceptions=True
        )
        stored = [await intake.get(f"generic:{name}") for name in ("a", "bad", "b")]
    assert isinstance(results[1], psycopg.DataError)
    good = [r for r in results if isinstance(r, list)]
    assert [r[0].status for r in good] == [AlertStatus.QUEUED] * 2
    assert [r is not None for r in stored] == [True, False, True]


async def test_a_webhook_larger_than_a_group_is_stored_in_parts(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However large the webhook, a transaction locks at most GROUP_MAX_ALERTS incidents
    (PostgreSQL's lock table is shared and bounded): a larger one goes in parts, one after
    another, decided as if whole (here its repeats straddle the parts)."""
    monkeypatch.setattr(pg_service, "GROUP_MAX_ALERTS", 4)
    sizes: list[int] = []
    decide_all = Submission.decide_all

    async def counted(submission: Submission, alerts: list[Any]) -> list[Any]:
        sizes.append(len(alerts))
        return await decide_all(submission, alerts)

    monkeypatch.setattr(Submission, "decide_all", counted)
    webhook = [alert(f"i{n % 7}", f"svc{n % 7}") for n in range(10)]
    async with replicas(database_url, 1, FakeRunner(limit=2)) as ([intake], _):
        outcomes = await intake.submit_all(webhook, trace_id="t")
    assert sizes == [4, 4, 2]
    assert [o.status for o in outcomes] == [AlertStatus.QUEUED] * 7 + [AlertStatus.DEDUPLICATED] * 3
    assert {o.occurrence for o in outcomes} == {1}


MAX_EXAMPLES = 12  # each on a new database: about 1 s each
# A webhook of the property below: (incident, service, resolved?) per alert.
webhooks = st.lists(
    st.lists(
        st.tuples(st.sampled_from("abcdef"), st.sampled_from(["api", "db", None]), st.booleans()),
        min_size=1,
        max_size=4,
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(sequence=webhooks)
# A webhook that overflows the queue; one that resolves an incident while the queue is full.
@example([[("a", "api", False), ("b", "db", False), ("c", "api", False), ("d", "db", False)]])
@example(
    [
        [("a", "api", False), ("b", "db", False), ("c", "api", False)],
        [("d", "db", False), ("a", "api", True), ("e", "api", False), ("d", "db", True)],
    ]
)
def test_both_backends_decide_every_webhook_alike(
    postgres_server: PostgresServer, sequence: list[list[tuple[str, str | None, bool]]]
) -> None:
    """The same webhooks, in order, get the same outcomes from the in-memory intake and from
    PostgreSQL (its two round trips, the queue counted last, newest first): a small queue,
    one slot held by a run that never ends, incidents repeated within a webhook."""
    limits = {"concurrency": 1, "queue_size": 3}

    async def decide(intake: IntakeService, runner: FakeRunner) -> list[list[Any]]:
        await intake.submit_all([alert("blocker", "blocked")], trace_id="t")
        await runner.wait_started(1)  # from here nothing leaves the queue
        decided = []
        for webhook in sequence:
            batch = [
                alert(i, svc, state=AlertState.RESOLVED if resolved else AlertState.FIRING)
                for i, svc, resolved in webhook
            ]
            outcomes = await intake.submit_all(batch, trace_id="t")
            decided.append([(o.status, o.reason, o.occurrence) for o in outcomes])
        runner.release("generic:blocker")
        return decided

    async def in_memory() -> list[list[Any]]:
        runner = FakeRunner(limit=1)
        engine = Intake(runner=runner, finalize=RecordingFinalizer(), limits=Limits(**limits))
        async with MemoryIntake(engine, lambda _name: None) as intake:
            return await decide(intake, runner)

    async def on_postgres() -> list[list[Any]]:
        runner = FakeRunner(limit=1)
        url = postgres_server.create_database()
        async with replicas(url, 1, runner, **limits) as ([intake], _):
            decided = await decide(intake, runner)
            kept, counted = await queue_lengths(intake)
        assert kept == counted
        return decided

    # A bound of its own: a hang names its example (pytest-timeout would end the whole test).
    on_both = [asyncio.run(asyncio.wait_for(decided(), 30)) for decided in (on_postgres, in_memory)]
    assert on_both[0] == on_both[1]


async def test_repeats_resolves_and_a_restart_forget_nothing(database_url: str) -> None:
    runner = FakeRunner(limit=2)
    async with replicas(database_url, 2, runner) as ([first, second], finalized):
        await statuses(first, [alert("r")])
        await runner.wait_started(1)
        running = await statuses(second, [alert("r", summary="worse")])
        runner.release("generic:r")
        await first.wait_idle()
        await statuses(first, [alert("w", "worker")])
        queued_resolve = await statuses(second, [alert("w", "worker", state=AlertState.RESOLVED)])
        runner.release("generic:w")
        await second.wait_idle()
    async with replicas(database_url, 1, runner) as ([restarted], finalized_after):
        handled = await statuses(restarted, [alert("r")])
        resolved = await statuses(restarted, [alert("r", state=AlertState.RESOLVED)])
        refired = await statuses(restarted, [alert("r")])
        runner.release("generic:r")
        await restarted.wait_idle()
        latest = await restarted.get("generic:r")
        first_occurrence = await restarted.get("generic:r", 1)
    assert running == [("deduplicated", "running")]
    assert handled == [("deduplicated", "recently_handled")]  # remembered over the restart
    assert resolved == [("ignored", "finished")]
    assert refired == [("queued", None)]  # resolved by the platform, fired again: a new one
    assert latest is not None
    assert first_occurrence is not None
    assert (latest.occurrence, [r.occurrence for r in latest.earlier()]) == (2, [1])
    assert first_occurrence.repeats == 2
    assert first_occurrence.resolved_upstream
    assert ("generic:r", 1, Ending.RESOLVED_UPSTREAM) in finalized_after.endings
    # The worker alert was resolved while queued (closed, with its report), or while running
    # (the agent is told); which one depends on how fast a replica claimed it.
    if queued_resolve == [("resolved", "resolved_before_diagnosis")]:
        assert ("generic:w", 1, Ending.CLOSE) in finalized.endings
    else:
        assert queued_resolve == [("ignored", "running")]


async def test_unknown_service_is_escalated_at_once_and_stored(database_url: str) -> None:
    runner = FakeRunner(limit=2, auto=True)
    async with replicas(database_url, 1, runner) as ([intake], finalized):
        decided = await statuses(intake, [alert("u", None)])
        await intake.wait_idle()
        record = await intake.get("generic:u")
    assert decided == [("escalated", "unknown_service")]
    assert finalized.records == [("generic:u", AlertStatus.ESCALATED, "unknown_service")]
    assert record is not None
    assert record.status is AlertStatus.ESCALATED


async def test_the_hourly_token_budget_counts_every_replicas_spending(database_url: str) -> None:
    runner = FakeRunner(limit=2, auto=True)
    async with replicas(database_url, 2, runner, max_tokens_per_hour=1000) as (intakes, _):
        before = await statuses(intakes[0], [alert("b1")])
        async with intakes[1].connection() as conn:  # what runs on either replica spent
            await conn.execute("INSERT INTO token_usage (tokens) VALUES (600), (400)")
        after = await statuses(intakes[0], [alert("b2")])
        await intakes[0].wait_idle()
    assert before == [("queued", None)]
    assert after == [("escalated", "hourly_token_budget")]


async def test_a_run_whose_replica_stopped_renewing_is_taken_over(database_url: str) -> None:
    runner = FakeRunner(limit=2)
    async with replicas(database_url, 1, runner, lease_seconds=1.0) as ([dead], _):
        await statuses(dead, [alert("k")])
        await runner.wait_started(1)
        await _die(dead)
        async with replicas(database_url, 1, runner, lease_seconds=1.0) as ([alive], _):
            await runner.wait_started(2)  # taken over after the lease lapsed
            runner.release("generic:k")
            await alive.wait_idle()
            record = await alive.get("generic:k")
    assert runner.started == ["generic:k", "generic:k"]
    assert record is not None
    assert record.status is AlertStatus.RESOLVED
    assert any("taken over" in (step.note or "") for step in record.timeline)


async def test_database_down_refuses_and_recovers(runner_free_server: PostgresServer) -> None:
    url = runner_free_server.create_database()
    runner = FakeRunner(limit=2, auto=True)
    async with replicas(url, 1, runner) as ([intake], _):
        runner_free_server.stop()
        try:
            with pytest.raises(DatabaseUnavailable):
                await intake.submit_all([alert("d")], trace_id="t")
        finally:
            runner_free_server.start()
        decided = await statuses(intake, [alert("d")])
        await intake.wait_idle()
    assert decided == [("queued", None)]
    assert runner.started == ["generic:d"]


@pytest.fixture
def runner_free_server() -> Any:
    """A server of its own: this test stops it."""
    server = PostgresServer.start_new()
    try:
        yield server
    finally:
        server.close()


def test_psycopg_is_the_binary_build() -> None:
    assert psycopg.pq.__impl__ in ("binary", "c")


async def test_replicas_starting_together_migrate_once(database_url: str) -> None:
    runner = FakeRunner(limit=1)
    finalizer = RecordingFinalizer()
    intakes = [replica(database_url, runner, finalizer) for _ in range(4)]
    async with contextlib.AsyncExitStack() as stack:
        await asyncio.gather(*(stack.enter_async_context(i) for i in intakes))
        async with intakes[0].connection() as conn:
            cursor = await conn.execute("SELECT version FROM schema_version ORDER BY version")
            versions = [row[0] for row in await cursor.fetchall()]
    assert versions == list(range(1, len(schema.MIGRATIONS) + 1))


async def test_the_queue_length_is_counted_when_its_migration_runs(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database of the first schema, with a queue, migrated by this release: the kept
    length starts from the queue as it is, and then follows it."""
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await schema.migrate(conn)
        for n in range(4):
            record = AlertRecord(
                alert(f"m{n}", f"svc{n}"), trace_id="t", enqueued_at=time.time(), seq=0
            )
            record.move(AlertStatus.QUEUED)
            await conn.execute(*store.insert(record))
    monkeypatch.undo()
    runner = FakeRunner(limit=1)
    async with replicas(database_url, 1, runner, concurrency=1) as ([new], _):
        migrated = await queue_lengths(new)
        await runner.wait_started(1)  # the oldest left the queue for its run
        await statuses(new, [alert("m5", "svc5"), alert("m1", "svc1", state=AlertState.RESOLVED)])
        after = await queue_lengths(new)
    assert migrated[0] == migrated[1] in (3, 4)  # the run may have started already
    assert after == (3, 3)  # one started, one more queued, one resolved while queued


async def test_a_run_taken_over_a_second_time_is_escalated(database_url: str) -> None:
    runner = FakeRunner(limit=3)
    lease = {"lease_seconds": 1.0}
    async with replicas(database_url, 1, runner, **lease) as ([first], _):
        await statuses(first, [alert("t")])
        await runner.wait_started(1)
        await _die(first)
        async with replicas(database_url, 1, runner, **lease) as ([second], _):
            await runner.wait_started(2)  # the first takeover resumes the run
            await _die(second)
            async with replicas(database_url, 1, runner, **lease) as ([third], finalized):
                await third.wait_idle()
                record = await third.get("generic:t")
    assert runner.started == ["generic:t", "generic:t"]  # not a third time
    assert record is not None
    assert (record.status, record.reason) == (AlertStatus.ESCALATED, "taken_over_twice")
    assert finalized.records == [("generic:t", AlertStatus.ESCALATED, "taken_over_twice")]


async def test_shutdown_hands_runs_back_and_another_replica_resumes_them_at_once(
    database_url: str,
) -> None:
    runner = FakeRunner(limit=2)
    async with replicas(database_url, 1, runner) as ([leaving], _):
        await statuses(leaving, [alert("h")])
        await runner.wait_started(1)
        await leaving.stop(grace_seconds=0)  # SIGTERM with the run still going
        async with replicas(database_url, 1, runner) as ([staying], _):
            await runner.wait_started(2)  # no lease to wait out: handed back
            runner.release("generic:h")
            await staying.wait_idle()
            record = await staying.get("generic:h")
    assert record is not None
    assert record.status is AlertStatus.RESOLVED
    assert any("handed back" in (step.note or "") for step in record.timeline)


async def test_finished_occurrences_past_the_retention_are_pruned(database_url: str) -> None:
    runner = FakeRunner(limit=2, auto=True)
    async with replicas(database_url, 1, runner) as ([intake], _):
        await statuses(intake, [alert("old"), alert("open", "worker")])
        await intake.wait_idle()
        async with intake.connection() as conn:
            kept = await store.prune(conn, retention_seconds=3600)
            gone = await store.prune(conn, retention_seconds=0)
        remembered = await intake.get("generic:old")
    assert (kept, gone) == (0, 2)
    assert remembered is None


async def test_a_task_that_lost_its_cancellation_is_cancelled_again() -> None:
    """Stopping a replica cannot hang on a task whose cancellation was dropped (as
    psycopg_pool's wait for a connection can on Python 3.11)."""
    lost = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            lost.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)  # it starts waiting
    await _cancelled([task])
    assert lost.is_set()
    assert task.cancelled()


async def _die(intake: PgIntake) -> None:
    """The replica stops dead: no renewals, no claims, its runs gone, nothing handed back."""
    for task in [*intake._tasks, *intake._runs.values()]:
        task.cancel()
    await asyncio.gather(*intake._tasks, *intake._runs.values(), return_exceptions=True)
