"""Property test: the occurrence lifecycle holds for any interleaving of firing, repeat,
resolve, re-fire, run endings and time, per incident (CONTRACT §3).

- every occurrence reaches exactly one terminal status;
- every episode (incident, known start) gets at most one run within the dedup window;
- no episode is lost: a new episode of a finished occurrence always opens one, and one of an
  open occurrence is folded into it (the agent is told);
- `still_firing` at most once per occurrence, only after the agent resolved it;
- the runtime ends each occurrence (page/report) at most once, and resolves its PagerDuty
  incident at most once.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intake import AlertRecord, Ending, Intake, Limits
from models import Alert, AlertState, AlertStatus, Provider
from tests.fakes.runner import FakeRunner

INCIDENTS = 5
NO_START = {3, 4}  # incidents whose platform never says when an episode began
WINDOW = 300.0
GRACE = 100.0
T0 = datetime(2026, 12, 1, tzinfo=UTC)


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Endings:
    """The finalizer: which endings each occurrence got."""

    seen: Counter[tuple[str, int, Ending]] = field(default_factory=Counter)

    async def __call__(self, record: AlertRecord, ending: Ending) -> None:
        self.seen[(record.incident_id, record.occurrence, ending)] += 1


@dataclass
class World:
    clock: Clock
    runner: FakeRunner
    intake: Intake
    episodes: list[int] = field(default_factory=lambda: [0] * INCIDENTS)
    occurrences: set[tuple[str, int]] = field(default_factory=set)  # every one opened
    runs: list[AlertRecord] = field(default_factory=list)
    still_firing: Counter[tuple[str, int]] = field(default_factory=Counter)
    reasons: Counter[str | None] = field(default_factory=Counter)  # of every submit
    problems: list[str] = field(default_factory=list)


def random_operations(rnd: random.Random) -> list[tuple[object, ...]]:
    ops: list[tuple[object, ...]] = []
    for _ in range(rnd.randint(5, 100)):
        roll = rnd.random()
        incident = rnd.randrange(INCIDENTS)
        if roll < 0.45:
            ops.append(("fire", incident, rnd.choice(["new", "repeat", "repeat"])))
        elif roll < 0.6:
            ops.append(("resolve", incident, "current"))
        elif roll < 0.85:
            outcome = rnd.choice([AlertStatus.RESOLVED, AlertStatus.ESCALATED])
            ops.append(("complete", rnd.randrange(10), outcome))
        else:
            ops.append(("tick", rnd.choice([1.0, 50.0, GRACE + 1, WINDOW + 1, 700.0])))
    return ops


def alert(world: World, incident: int, state: AlertState) -> Alert:
    started_at = None
    if incident not in NO_START:
        started_at = T0 + timedelta(minutes=world.episodes[incident])
    return Alert(
        incident_id=f"generic:{incident}",
        provider=Provider.GENERIC,
        service=f"s{incident % 3}",
        state=state,
        summary="s",
        started_at=started_at,
    )


def fire(world: World, incident: int, kind: str) -> None:
    if kind == "new":
        world.episodes[incident] += 1
    before = world.intake.get(f"generic:{incident}")
    was_open = before is not None and not before.status.terminal
    outcome = world.intake.submit(alert(world, incident, AlertState.FIRING), trace_id="t")
    world.reasons[outcome.reason] += 1
    latest = world.intake.get(f"generic:{incident}")
    assert latest is not None
    key = (latest.incident_id, latest.occurrence)
    world.occurrences.add(key)
    if outcome.reason == "still_firing":
        world.still_firing[key] += 1
    if kind != "new" or incident in NO_START:  # a new episode without a start looks the same
        return
    if was_open:
        if outcome.reason not in ("queued", "running"):
            world.problems.append(f"re-fire of open {incident}: {outcome}")
    elif outcome.status not in (AlertStatus.QUEUED, AlertStatus.ESCALATED) or (
        before is not None and latest.occurrence == before.occurrence
    ):
        world.problems.append(f"new episode of {incident} lost: {outcome}")


def apply(world: World, op: tuple[object, ...]) -> None:
    kind = op[0]
    if kind == "fire":
        fire(world, int(op[1]), str(op[2]))  # type: ignore[call-overload]
    elif kind == "resolve":
        item = alert(world, int(op[1]), AlertState.RESOLVED)  # type: ignore[call-overload]
        world.reasons[world.intake.submit(item, trace_id="t").reason] += 1
    elif kind == "complete":
        running = sorted(world.runner.running)
        if running:
            chosen = running[int(op[1]) % len(running)]  # type: ignore[call-overload]
            world.runner.outcomes[chosen] = op[2]  # type: ignore[assignment]
            world.runner.release(chosen)
    else:
        world.clock.now += float(op[1])  # type: ignore[arg-type]
        world.intake.tick()


async def settle() -> None:
    for _ in range(6):
        await asyncio.sleep(0)


async def scenario(ops: list[tuple[object, ...]], limit: int) -> World:
    clock = Clock()
    runner = FakeRunner(limit=limit)
    endings = Endings()
    limits = Limits(
        concurrency=limit,
        queue_size=2,
        ttl_seconds=600,
        dedup_window_seconds=WINDOW,
        resolve_grace_seconds=GRACE,
        tick_seconds=3600,
    )
    intake = Intake(runner=runner, finalize=endings, limits=limits, clock=clock)
    world = World(clock, runner, intake)

    def started(record: AlertRecord) -> None:
        record.turns = 1  # a run: its resolution is the agent's fix
        world.runs.append(record)

    runner.on_start = started
    async with intake:
        for op in ops:
            apply(world, op)
            await settle()
        runner.auto = True
        for incident in list(runner.running):
            runner.release(incident)
        await intake.close(grace_seconds=5)
    check(world, endings)
    return world


def check(world: World, endings: Endings) -> None:
    assert world.problems == []
    assert world.runner.violations == []
    for incident_id, number in world.occurrences:
        record = world.intake.get(incident_id, number)  # as it is now (packed or not)
        if record is None:
            continue  # forgotten: only past MAX_OCCURRENCES
        statuses = [s.status for s in record.timeline if isinstance(s.status, AlertStatus)]
        terminal = [s for s in statuses if s.terminal]
        assert len(terminal) == 1, (record, statuses)
        assert statuses[-1].terminal, (record, statuses)
        assert world.still_firing[incident_id, number] <= 1, record
        if world.still_firing[incident_id, number]:
            assert record.turns
            assert record.still_firing
    for (_, _, ending), count in endings.seen.items():
        assert count == 1 or ending is Ending.RESOLVED_UPSTREAM, (ending, count)
    by_episode: dict[tuple[str, datetime], list[AlertRecord]] = {}
    for record in world.runs:
        if record.started_at is not None:
            by_episode.setdefault((record.incident_id, record.started_at), []).append(record)
    for runs in by_episode.values():
        for earlier, later in zip(runs, runs[1:], strict=False):
            assert earlier.finished_at is not None
            assert later.enqueued_at - earlier.finished_at >= WINDOW, (earlier, later)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), limit=st.integers(1, 3), recent=st.sampled_from([1, 3]))
def test_occurrence_lifecycle_holds_for_any_interleaving(
    seed: int, limit: int, recent: int
) -> None:
    """`recent`: how many finished occurrences stay records; the others are packed, and
    revived when an alert of theirs arrives."""
    with mock.patch("intake.history.RECENT_SIZE", recent):
        asyncio.run(scenario(random_operations(random.Random(seed)), limit))


def test_the_interleavings_reach_every_rule() -> None:
    """The generator is not toothless: over a few seeds, every verdict shows up."""
    reasons: Counter[str | None] = Counter()
    for seed in range(40):
        world = asyncio.run(scenario(random_operations(random.Random(seed)), 2))
        reasons.update(world.reasons)
        reasons["(runs)"] += len(world.runs)
    for expected in (
        *("queued", "running", "stale", "recently_handled", "still_firing", "(runs)"),
        *("resolved_before_diagnosis", "resolved_upstream", "already_resolved", "finished"),
        "queue_full",
    ):
        assert reasons[expected] > 0, (expected, reasons)
