from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from intake import Draining, Ending, Intake, Limits
from intake.queue import COMPACT_SLACK
from intake.workers import HOLD_SECONDS
from models import Alert, AlertState, AlertStatus, Priority, Provider, TimelineStatus
from tests.fakes.runner import FakeRunner, RecordingFinalizer


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def alert(
    incident: str,
    service: str | None = "api",
    priority: Priority = Priority.P3,
    state: AlertState = AlertState.FIRING,
) -> Alert:
    return Alert(
        incident_id=f"generic:{incident}",
        provider=Provider.GENERIC,
        service=service,
        priority=priority,
        state=state,
        summary=f"summary of {incident}",
    )


@dataclass
class Harness:
    intake: Intake
    runner: FakeRunner
    finalized: RecordingFinalizer
    clock: FakeClock

    def submit(self, item: Alert) -> tuple[AlertStatus, str | None]:
        outcome = self.intake.submit(item, trace_id="t-1")
        return outcome.status, outcome.reason


@asynccontextmanager
async def harness(
    *, budget: Callable[[], bool] = lambda: False, **limits: float
) -> AsyncIterator[Harness]:
    settings = Limits(**{"concurrency": 3, "tick_seconds": 3600, **limits})  # type: ignore[arg-type]
    runner = FakeRunner(limit=settings.concurrency)
    finalized = RecordingFinalizer()
    clock = FakeClock()
    intake = Intake(
        runner=runner, finalize=finalized, limits=settings, budget_exhausted=budget, clock=clock
    )
    async with intake:
        yield Harness(intake, runner, finalized, clock)
    assert runner.violations == []


async def test_alert_is_queued_then_runs_and_finishes_resolved() -> None:
    async with harness() as h:
        assert h.submit(alert("a")) == (AlertStatus.QUEUED, None)
        await h.runner.wait_started(1)
        assert h.intake.get("generic:a").status is AlertStatus.RUNNING
        h.runner.release("generic:a")
        await h.intake.wait_idle()
        record = h.intake.get("generic:a")
        assert record.status is AlertStatus.RESOLVED
        assert [e.status for e in record.timeline] == [
            AlertStatus.QUEUED,
            AlertStatus.RUNNING,
            AlertStatus.RESOLVED,
        ]
        assert h.finalized.records == []  # the run writes its own report


async def test_duplicate_incident_is_deduplicated_while_queued_and_running() -> None:
    async with harness(concurrency=1) as h:
        h.submit(alert("a", service="api"))
        h.submit(alert("b", service="worker"))
        await h.runner.wait_started(1)
        assert h.submit(alert("a")) == (AlertStatus.DEDUPLICATED, "running")
        assert h.submit(alert("b", service="worker")) == (AlertStatus.DEDUPLICATED, "queued")
        running = h.intake.get("generic:a")
        assert running.repeats == 1
        assert running.take_notices() == ["1 repeat notification(s) arrived; latest: summary of a"]
        h.runner.release("generic:a")
        h.runner.release("generic:b")
        await h.intake.wait_idle()
        assert h.runner.started == ["generic:a", "generic:b"]


async def test_finished_incident_is_deduplicated_within_the_window_only() -> None:
    async with harness(dedup_window_seconds=900) as h:
        h.runner.auto = True
        h.submit(alert("a"))
        await h.intake.wait_idle()
        h.clock.advance(899)
        assert h.submit(alert("a")) == (AlertStatus.DEDUPLICATED, "recently_handled")
        h.clock.advance(2)
        assert h.submit(alert("a")) == (AlertStatus.QUEUED, None)
        await h.intake.wait_idle()
        assert h.runner.started == ["generic:a", "generic:a"]


async def test_at_most_one_run_per_service() -> None:
    async with harness(concurrency=3) as h:
        h.submit(alert("a", service="api"))
        h.submit(alert("b", service="api"))
        h.submit(alert("c", service="worker"))
        await h.runner.wait_started(2)
        assert h.runner.started == ["generic:a", "generic:c"]
        assert h.intake.get("generic:b").status is AlertStatus.QUEUED
        h.runner.release("generic:a")
        await h.runner.wait_started(3)
        assert h.runner.started[-1] == "generic:b"
        h.runner.release("generic:b")
        h.runner.release("generic:c")
        await h.intake.wait_idle()


async def test_global_limit_bounds_concurrent_runs() -> None:
    async with harness(concurrency=2) as h:
        for name in ("a", "b", "c"):
            h.submit(alert(name, service=name))
        await h.runner.wait_started(2)
        assert h.intake.stats()["running"] == 2
        assert h.intake.stats()["queued"] == 1
        h.runner.release("generic:b")
        await h.runner.wait_started(3)
        assert h.runner.started == ["generic:a", "generic:b", "generic:c"]
        h.runner.release("generic:a")
        h.runner.release("generic:c")
        await h.intake.wait_idle()


async def test_best_priority_then_oldest_runs_next() -> None:
    async with harness(concurrency=1) as h:
        h.submit(alert("blocker", service="s0"))
        await h.runner.wait_started(1)
        h.submit(alert("old-p3", service="s1", priority=Priority.P3))
        h.submit(alert("p1", service="s2", priority=Priority.P1))
        h.submit(alert("new-p3", service="s3", priority=Priority.P3))
        h.submit(alert("p2", service="s4", priority=Priority.P2))
        for incident in ("blocker", "p1", "p2", "old-p3", "new-p3"):
            h.runner.release(f"generic:{incident}")
        await h.intake.wait_idle()
        assert h.runner.started == [
            "generic:blocker",
            "generic:p1",
            "generic:p2",
            "generic:old-p3",
            "generic:new-p3",
        ]


async def test_priority_skips_alerts_whose_service_is_busy() -> None:
    async with harness(concurrency=2) as h:
        h.submit(alert("api-1", service="api"))
        h.submit(alert("other", service="other"))
        await h.runner.wait_started(2)
        h.submit(alert("api-p1", service="api", priority=Priority.P1))
        h.submit(alert("worker-p4", service="worker", priority=Priority.P4))
        h.runner.release("generic:other")
        await h.runner.wait_started(3)
        assert h.runner.started[-1] == "generic:worker-p4"
        for incident in ("api-1", "api-p1", "worker-p4"):
            h.runner.release(f"generic:{incident}")
        await h.intake.wait_idle()


async def test_queued_alert_past_ttl_expires_with_a_report() -> None:
    async with harness(concurrency=1, ttl_seconds=600) as h:
        h.submit(alert("a", service="api"))
        h.submit(alert("b", service="api"))
        await h.runner.wait_started(1)
        h.clock.advance(600)
        h.intake.tick()
        assert h.intake.get("generic:b").status is AlertStatus.EXPIRED
        h.runner.release("generic:a")
        await h.intake.wait_idle()
        assert h.finalized.records == [("generic:b", AlertStatus.EXPIRED, "ttl")]
        assert h.runner.started == ["generic:a"]
        assert h.intake.stats()["total_expired"] == 1


async def test_full_queue_escalates_new_alert_at_once() -> None:
    async with harness(concurrency=1, queue_size=1) as h:
        h.submit(alert("a", service="api"))
        await h.runner.wait_started(1)
        h.submit(alert("b", service="api"))
        assert h.submit(alert("c", service="api")) == (AlertStatus.ESCALATED, "queue_full")
        h.runner.release("generic:a")
        h.runner.release("generic:b")
        await h.intake.wait_idle()
        assert h.finalized.records == [("generic:c", AlertStatus.ESCALATED, "queue_full")]


async def test_unknown_service_is_escalated_never_dropped() -> None:
    async with harness() as h:
        assert h.submit(alert("a", service=None)) == (AlertStatus.ESCALATED, "unknown_service")
        await h.intake.wait_idle()
        assert h.finalized.records == [("generic:a", AlertStatus.ESCALATED, "unknown_service")]
        assert h.submit(alert("a", service=None)) == (AlertStatus.DEDUPLICATED, "recently_handled")


async def test_exhausted_hourly_budget_escalates_without_diagnosis() -> None:
    async with harness(budget=lambda: True) as h:
        assert h.submit(alert("a")) == (AlertStatus.ESCALATED, "hourly_token_budget")
        await h.intake.wait_idle()
        assert h.runner.started == []


async def test_resolved_event_removes_queued_incident() -> None:
    async with harness(concurrency=1) as h:
        h.submit(alert("a", service="api"))
        h.submit(alert("b", service="api"))
        await h.runner.wait_started(1)
        resolved = alert("b", service="api", state=AlertState.RESOLVED)
        assert h.submit(resolved) == (AlertStatus.RESOLVED, "resolved_before_diagnosis")
        h.runner.release("generic:a")
        await h.intake.wait_idle()
        assert h.runner.started == ["generic:a"]
        assert h.finalized.records == [
            ("generic:b", AlertStatus.RESOLVED, "resolved_before_diagnosis")
        ]


async def test_resolved_event_for_running_incident_is_told_to_the_agent() -> None:
    async with harness() as h:
        h.submit(alert("a"))
        await h.runner.wait_started(1)
        resolved = alert("a", state=AlertState.RESOLVED)
        assert h.submit(resolved) == (AlertStatus.IGNORED, "running")
        record = h.intake.get("generic:a")
        assert record.resolved_upstream
        assert "resolved" in record.take_notices()[0]
        h.runner.release("generic:a")
        await h.intake.wait_idle()


async def test_resolved_event_for_unknown_incident_is_ignored() -> None:
    async with harness() as h:
        resolved = alert("zzz", state=AlertState.RESOLVED)
        assert h.submit(resolved) == (AlertStatus.IGNORED, "not_active")


async def test_drain_refuses_new_alerts_but_finishes_queued_ones() -> None:
    async with harness(concurrency=1) as h:
        h.submit(alert("a", service="api"))
        h.submit(alert("b", service="api"))
        await h.intake.drain()
        with pytest.raises(Draining):
            h.submit(alert("c"))
        h.runner.release("generic:a")
        h.runner.release("generic:b")
        await h.intake.wait_idle()
        assert h.runner.started == ["generic:a", "generic:b"]


async def test_shutdown_escalates_queued_and_cuts_off_runs_past_grace() -> None:
    async with harness(concurrency=1) as h:
        h.submit(alert("running", service="api"))
        h.submit(alert("waiting", service="api"))
        await h.runner.wait_started(1)
        await h.intake.close(grace_seconds=0)
        assert sorted(h.finalized.records) == [
            ("generic:running", AlertStatus.ESCALATED, "shutdown_grace_exceeded"),
            ("generic:waiting", AlertStatus.ESCALATED, "shutdown"),
        ]
        assert h.intake.get("generic:running").status is AlertStatus.ESCALATED


async def test_shutdown_names_alerts_whose_page_and_report_missed_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class StuckFinalizer:
        async def __call__(self, _record: object, _ending: object) -> None:
            await asyncio.Event().wait()  # a page that never comes back

    intake = Intake(runner=FakeRunner(limit=1), finalize=StuckFinalizer(), clock=FakeClock())
    async with intake:
        intake.submit(alert("stuck", service=None), trace_id="t-1")  # escalated at once
        await intake.close(grace_seconds=0, cleanup_seconds=0.01)
    [line] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "1 alert(s) left without a finished page and report" in line.getMessage()
    assert "generic:stuck" in line.getMessage()


async def test_shutdown_lets_a_run_finish_within_grace() -> None:
    async with harness() as h:
        h.submit(alert("a"))
        await h.runner.wait_started(1)
        h.runner.release("generic:a")
        await h.intake.close(grace_seconds=30)
        assert h.intake.get("generic:a").status is AlertStatus.RESOLVED
        assert h.finalized.records == []


async def test_failing_run_is_escalated_and_pipeline_goes_on() -> None:
    async with harness(concurrency=1) as h:
        h.runner.failures.add("generic:a")
        h.submit(alert("a", service="api"))
        h.submit(alert("b", service="api"))
        h.runner.release("generic:a")
        h.runner.release("generic:b")
        await h.intake.wait_idle()
        assert h.intake.get("generic:a").status is AlertStatus.ESCALATED
        assert h.intake.get("generic:b").status is AlertStatus.RESOLVED
        assert h.finalized.records == [("generic:a", AlertStatus.ESCALATED, "agent_failed")]


async def test_listing_shows_running_queued_and_recent() -> None:
    async with harness(concurrency=1) as h:
        h.runner.auto = False
        h.submit(alert("a", service="api"))
        h.submit(alert("b", service="api", priority=Priority.P4))
        h.submit(alert("c", service="api", priority=Priority.P2))
        await h.runner.wait_started(1)
        listing = h.intake.listing()
        assert [r.incident_id for r in listing["running"]] == ["generic:a"]
        assert [r.incident_id for r in listing["queued"]] == ["generic:c", "generic:b"]
        for incident in ("a", "b", "c"):
            h.runner.release(f"generic:{incident}")
        await h.intake.wait_idle()
        recent = h.intake.listing()["recent"]
        assert [r.incident_id for r in recent] == ["generic:b", "generic:c", "generic:a"]


async def test_better_alert_for_a_service_never_lets_a_stale_candidate_run_alongside() -> None:
    async with harness(concurrency=2) as h:
        h.submit(alert("a", service="s0"))
        h.submit(alert("b", service="s9"))
        await h.runner.wait_started(2)
        h.submit(alert("x1", service="api", priority=Priority.P3))
        h.submit(alert("x2", service="api", priority=Priority.P1))
        h.runner.release("generic:a")
        await h.runner.wait_started(3)
        h.runner.release("generic:b")
        h.runner.release("generic:x1")
        h.runner.release("generic:x2")
        await h.intake.wait_idle()
        assert h.runner.started[2:] == ["generic:x2", "generic:x1"]


async def test_totals_count_every_terminal_status_once() -> None:
    async with harness(concurrency=1, queue_size=1) as h:
        h.runner.outcomes["generic:paged"] = AlertStatus.ESCALATED
        h.submit(alert("paged", service="api"))  # a run that escalates
        await h.runner.wait_started(1)
        h.submit(alert("fixed", service="api"))  # queued behind it, then resolved by a run
        h.submit(alert("ghost", service=None))  # escalated at once: unknown service
        h.submit(alert("full", service="api"))  # escalated at once: queue full
        for incident in ("paged", "fixed"):
            h.runner.release(f"generic:{incident}")
        await h.intake.wait_idle()
        stats = h.intake.stats()
    assert (stats["total_escalated"], stats["total_resolved"]) == (3, 1)


async def test_dead_entries_behind_a_waiting_alert_are_dropped_on_tick() -> None:
    """One alert waiting out its TTL must not keep every later finished record alive."""
    async with harness(concurrency=2) as h:
        h.submit(alert("blocker", service="slow"))
        h.submit(alert("waiting", service="slow"))  # queued behind the blocker's run
        h.runner.auto = True
        for n in range(3 * COMPACT_SLACK):
            h.submit(alert(f"quick-{n}", service=f"svc-{n}"))
            h.submit(alert(f"quick-{n}", service=f"svc-{n}", state=AlertState.RESOLVED))
        queue = h.intake._runs.queue
        assert len(queue.fifo) > 3 * COMPACT_SLACK  # held behind "waiting" until a tick
        h.intake.tick()
        assert len(queue.fifo) <= 2 * queue.size + COMPACT_SLACK
        assert queue.heaped <= 2 * queue.size + COMPACT_SLACK
        assert h.intake.get("generic:waiting").status is AlertStatus.QUEUED
        h.runner.release("generic:blocker")
        await h.intake.wait_idle()
        assert h.intake.get("generic:waiting").status is AlertStatus.RESOLVED


async def test_a_backlog_of_instant_runs_lets_the_event_loop_serve_others() -> None:
    async with harness(concurrency=1) as h:
        h.runner.auto = True  # each run returns without ever suspending, after 1 ms
        h.runner.on_start = lambda _record: h.clock.advance(0.001)
        for n in range(100):
            h.submit(alert(f"a{n}", service=f"svc-{n}"))
        seen: list[int] = []
        asyncio.get_running_loop().call_soon(lambda: seen.append(len(h.runner.started)))
        await h.intake.wait_idle()
        assert len(seen) == 1
        # The loop got control once the worker had held it for HOLD_SECONDS, not after 100 runs.
        assert 0 < seen[0] <= HOLD_SECONDS / 0.001 + 1


async def test_runs_do_not_inherit_the_context_of_the_request_that_started_them() -> None:
    request_only: contextvars.ContextVar[str] = contextvars.ContextVar("request_only")
    inherited: list[str | None] = []
    async with harness() as h:
        h.runner.on_start = lambda record: inherited.append(request_only.get(None))
        h.runner.auto = True
        request_only.set("request-1")
        h.submit(alert("a"))
        await h.intake.wait_idle()
        request_only.set("request-2")
        h.submit(alert("b"))
        await h.intake.wait_idle()
    assert inherited == [None, None]


async def test_workers_are_reused_and_never_outnumber_the_limit() -> None:
    async with harness(concurrency=2) as h:
        h.runner.auto = True
        for burst in range(3):  # between bursts every worker is parked
            for n in range(10):
                h.submit(alert(f"a{burst}-{n}", service=f"svc-{n % 5}"))
                assert len(h.intake._runs.workers) <= 2
            await h.intake.wait_idle()
        assert len(h.runner.started) == 30
        assert len(h.intake._runs.workers) == 2  # parked and handed work, not one per run


# -- occurrences ---------------------------------------------------------------------------


def at(incident: str, minute: int | None, state: AlertState = AlertState.FIRING) -> Alert:
    """An alert of `incident` whose episode began at `minute` (None: the platform does not say)."""
    started = None if minute is None else datetime(2026, 12, 1, 3, minute, tzinfo=UTC)
    return alert(incident, state=state).model_copy(update={"started_at": started})


async def run_to_end(h: Harness, incident: str, outcome: AlertStatus) -> None:
    await h.runner.wait_started(len(h.runner.started) + 1)
    h.runner.outcomes[f"generic:{incident}"] = outcome
    h.runner.release(f"generic:{incident}")
    await h.intake.wait_idle()


async def test_refire_opens_the_next_occurrence_and_keeps_the_first() -> None:
    async with harness() as h:
        h.runner.on_start = lambda record: setattr(record, "turns", 1)
        assert h.submit(at("a", 0)) == (AlertStatus.QUEUED, None)
        await run_to_end(h, "a", AlertStatus.RESOLVED)
        assert h.submit(at("a", 0)) == (AlertStatus.DEDUPLICATED, "recently_handled")
        outcome = h.intake.submit(at("a", 5), trace_id="t-2")
        assert (outcome.status, outcome.occurrence) == (AlertStatus.QUEUED, 2)
        await run_to_end(h, "a", AlertStatus.RESOLVED)
        latest = h.intake.get("generic:a")
        first = h.intake.get("generic:a", 1)
        assert latest is not None
        assert first is not None
        assert (latest.occurrence, first.occurrence, latest.previous) == (2, 1, first)
        assert [o.occurrence for o in latest.detail().occurrences] == [2, 1]
        assert h.intake.get("generic:a", 3) is None


async def test_still_firing_after_the_grace_escalates_the_occurrence_once() -> None:
    async with harness(resolve_grace_seconds=100) as h:
        h.runner.on_start = lambda record: setattr(record, "turns", 1)
        h.submit(at("a", 0))
        await run_to_end(h, "a", AlertStatus.RESOLVED)
        h.clock.advance(100)
        assert h.submit(at("a", 0)) == (AlertStatus.DEDUPLICATED, "recently_handled")
        h.clock.advance(1)
        assert h.submit(at("a", 0)) == (AlertStatus.ESCALATED, "still_firing")
        assert h.submit(at("a", 0)) == (AlertStatus.DEDUPLICATED, "recently_handled")
        await h.intake.wait_idle()
        record = h.intake.get("generic:a")
        assert record is not None
        assert (record.occurrence, record.status, record.reason) == (
            1,
            AlertStatus.ESCALATED,
            "still_firing",
        )
        assert [e.status for e in record.timeline][-1] == TimelineStatus.STILL_FIRING
        assert h.finalized.endings == [("generic:a", 1, Ending.STILL_FIRING)]
        assert h.intake.stats()["total_escalated"] == 1


async def test_platform_resolve_after_an_escalation_resolves_its_page_once() -> None:
    async with harness() as h:
        h.submit(at("a", 0))
        await run_to_end(h, "a", AlertStatus.ESCALATED)
        resolved = at("a", 0, AlertState.RESOLVED)
        assert h.submit(resolved) == (AlertStatus.RESOLVED, "resolved_upstream")
        assert h.submit(resolved) == (AlertStatus.IGNORED, "already_resolved")
        assert h.submit(at("a", 0)) == (AlertStatus.DEDUPLICATED, "stale")
        await h.intake.wait_idle()
        assert h.finalized.endings == [("generic:a", 1, Ending.AUTO_RESOLVE)]
        record = h.intake.get("generic:a")
        assert record is not None
        assert [e.status for e in record.timeline][-1] == TimelineStatus.RESOLVED_UPSTREAM


async def test_platform_resolve_is_only_recorded_without_auto_resolve() -> None:
    async with harness(auto_resolve=False) as h:
        h.submit(at("a", 0))
        await run_to_end(h, "a", AlertStatus.ESCALATED)
        assert h.submit(at("a", 0, AlertState.RESOLVED)) == (AlertStatus.IGNORED, "finished")
        await h.intake.wait_idle()
        assert h.finalized.endings == [("generic:a", 1, Ending.RESOLVED_UPSTREAM)]


async def test_a_resolve_of_an_older_episode_leaves_the_queued_one_alone() -> None:
    async with harness(concurrency=1) as h:
        h.submit(at("blocker", 0))
        await h.runner.wait_started(1)
        h.submit(at("a", 5))
        assert h.submit(at("a", 0, AlertState.RESOLVED)) == (AlertStatus.IGNORED, "stale")
        record = h.intake.get("generic:a")
        assert record is not None
        assert record.status is AlertStatus.QUEUED
        h.runner.auto = True
        h.runner.release("generic:blocker")
        await h.intake.wait_idle()


async def test_an_ending_after_the_run_waits_for_the_page_and_report_under_way() -> None:
    release = asyncio.Event()
    order: list[Ending] = []

    class SlowClose:
        async def __call__(self, record: object, ending: Ending) -> None:
            if ending is Ending.CLOSE:
                await release.wait()
            order.append(ending)

    intake = Intake(runner=FakeRunner(limit=1), finalize=SlowClose(), clock=FakeClock())
    async with intake:
        unknown = at("lost", 0).model_copy(update={"service": None})
        assert intake.submit(unknown, trace_id="t").reason == "unknown_service"
        resolved = unknown.model_copy(update={"state": AlertState.RESOLVED})
        assert intake.submit(resolved, trace_id="t").reason == "resolved_upstream"
        for _ in range(5):
            await asyncio.sleep(0)
        assert order == []  # the resolve waits for the page it resolves
        release.set()
        await intake.wait_idle()
    assert order == [Ending.CLOSE, Ending.AUTO_RESOLVE]
