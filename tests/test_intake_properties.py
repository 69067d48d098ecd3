"""Property tests: intake's invariants hold for any interleaving of events."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intake import AlertRecord, Intake, Limits
from models import Alert, AlertState, AlertStatus, Priority, Provider
from tests.fakes.runner import FakeRunner, RecordingFinalizer

SERVICES = ["s0", "s1", "s2"]


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def random_operations(rnd: random.Random) -> list[tuple[object, ...]]:
    """Arrivals (fresh ids, repeats, resolutions), completions and clock ticks, interleaved."""
    ops: list[tuple[object, ...]] = []
    for _ in range(rnd.randint(5, 80)):
        roll = rnd.random()
        if roll < 0.5:
            state = AlertState.RESOLVED if rnd.random() < 0.2 else AlertState.FIRING
            priority = rnd.choice(list(Priority))
            ops.append(("submit", rnd.randint(0, 30), rnd.choice(SERVICES), priority, state))
        elif roll < 0.83:
            ops.append(("complete", rnd.randint(0, 10)))
        else:
            ops.append(("tick", rnd.uniform(0, 250)))
    return ops


async def settle() -> None:
    """Let started runs reach their gate and finished runs release their service."""
    for _ in range(6):
        await asyncio.sleep(0)


async def scenario(ops: list[tuple[object, ...]], limit: int) -> None:
    clock = Clock()
    runner = FakeRunner(limit=limit)
    intake = Intake(
        runner=runner,
        finalize=RecordingFinalizer(),
        limits=Limits(
            concurrency=limit,
            queue_size=6,
            ttl_seconds=600,
            dedup_window_seconds=300,
            tick_seconds=3600,
        ),
        clock=clock,
    )
    runner.on_start = lambda record: check_dispatch_order(intake, runner, record)
    accepted: list[AlertRecord] = []
    async with intake:
        for op in ops:
            apply(op, intake, runner, clock, accepted)
            await settle()
            assert len(intake._runs.workers) <= limit  # runs happen on at most `limit` workers
        for incident in list(runner.running):
            runner.release(incident)
        runner.auto = True
        await intake.close(grace_seconds=5)
    assert runner.violations == []
    for record in accepted:
        statuses = [e.status for e in record.timeline if isinstance(e.status, AlertStatus)]
        terminal = [status for status in statuses if status.terminal]
        assert len(terminal) == 1, (record.incident_id, statuses)
        assert statuses[-1].terminal, (record.incident_id, statuses)


def apply(
    op: tuple[object, ...],
    intake: Intake,
    runner: FakeRunner,
    clock: Clock,
    accepted: list[AlertRecord],
) -> None:
    if op[0] == "submit":
        _, number, service, priority, state = op
        item = Alert(
            incident_id=f"generic:{number}",
            provider=Provider.GENERIC,
            service=str(service),
            priority=priority,  # type: ignore[arg-type]
            state=state,  # type: ignore[arg-type]
            summary="s",
        )
        outcome = intake.submit(item, trace_id="t")
        record = intake.get(item.incident_id)
        if outcome.status is AlertStatus.QUEUED and record is not None:
            accepted.append(record)
    elif op[0] == "complete":
        running = sorted(runner.running)
        if running:
            runner.release(running[int(op[1]) % len(running)])  # type: ignore[call-overload]
    else:
        clock.now += float(op[1])  # type: ignore[arg-type]
        intake.tick()


def check_dispatch_order(intake: Intake, runner: FakeRunner, started: AlertRecord) -> None:
    """No queued alert on a free service may be better (priority, then age) than `started`."""
    busy = {r.service for r in runner.running.values()}
    key = (started.alert.priority.rank, started.seq)
    for queued in intake.listing()["queued"]:
        if queued.service not in busy and (queued.alert.priority.rank, queued.seq) < key:
            runner.violations.append(f"{queued.incident_id} should have run before {key}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# A seed, not st.randoms(): hypothesis biases its own random draws towards small values,
# which here hid a real double-dispatch bug that plain random streams find in 1 of 30 cases.
@given(seed=st.integers(0, 2**32 - 1), limit=st.integers(1, 3))
def test_intake_invariants_hold_for_any_interleaving(seed: int, limit: int) -> None:
    asyncio.run(scenario(random_operations(random.Random(seed)), limit))
