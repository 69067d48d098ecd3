"""What intake remembers of incidents (`intake.history`): latest occurrences, links, pruning."""

from __future__ import annotations

import asyncio

from intake.history import RECENT_SIZE, History
from intake.records import MAX_OCCURRENCES, AlertRecord
from models import Alert, AlertStatus, Provider


def record(incident: str = "a", previous: AlertRecord | None = None, seq: int = 1) -> AlertRecord:
    alert = Alert(
        incident_id=f"generic:{incident}",
        provider=Provider.GENERIC,
        service="api",
        summary="s",
        raw={"big": "payload"},
    )
    return AlertRecord(alert, trace_id="t", enqueued_at=0.0, seq=seq, previous=previous)


def finish(history: History, item: AlertRecord, at: float) -> None:
    item.move(AlertStatus.RESOLVED)
    item.finished_at = at
    history.finished(item)


def test_occurrences_are_numbered_and_linked_newest_first() -> None:
    history = History(window_seconds=900)
    first = record()
    history.opened(first)
    finish(history, first, 0)
    second = record(previous=first)
    history.opened(second)
    assert second.occurrence == 2
    assert history.latest("generic:a") is second
    assert history.shown("generic:a", 1) is first
    assert history.shown("generic:a", 3) is None
    assert second.earlier() == [first]


def test_at_most_max_occurrences_stay_linked() -> None:
    history = History(window_seconds=900)
    item = None
    for n in range(MAX_OCCURRENCES + 5):
        item = record(previous=item, seq=n)
        history.opened(item)
        finish(history, item, float(n))
    assert item is not None
    assert len(item.earlier()) == MAX_OCCURRENCES - 1
    assert history.shown("generic:a", 5) is None  # forgotten
    assert history.shown("generic:a", 6) is not None


def test_recent_keeps_the_last_finished_in_full_and_packs_older_ones() -> None:
    history = History(window_seconds=900)
    items = [record(str(n), seq=n) for n in range(RECENT_SIZE + 1)]
    for n, item in enumerate(items):
        history.opened(item)
        item.tool_calls.append(object())  # type: ignore[arg-type]
        finish(history, item, float(n))
    assert history.recent(3) == items[::-1][:3]
    assert len(history.recent()) == RECENT_SIZE
    assert type(history._latest["generic:0"]) is tuple  # packed: not visited by the GC
    oldest = history.latest("generic:0")
    assert oldest is not None
    assert oldest is not items[0]  # a record again, from what was packed
    assert oldest.alert.raw is None
    assert oldest.tool_calls == []
    assert (oldest.status, oldest.occurrence, oldest.finished_at) == (AlertStatus.RESOLVED, 1, 0.0)
    assert [s.status for s in oldest.timeline] == [AlertStatus.RESOLVED]
    assert history.latest("generic:1") is items[1]


def test_packing_keeps_everything_an_occurrence_shows() -> None:
    history = History(window_seconds=900)
    first = record()
    first.alert  # noqa: B018 - the alert as given
    first.turns, first.outcome, first.report_file, first.paged_as = 3, "escalated", "r.md", "k"
    first.tokens.input, first.tokens.total = 10, 12
    first.resolved_upstream, first.repeats = True, 2
    history.opened(first)
    first.move(AlertStatus.ESCALATED, "max_turns")
    first.finished_at = 5.0
    history.finished(first)
    before = first.detail().model_dump(exclude={"alert": {"raw"}, "tool_calls": True})
    history.retire(first)
    again = history.latest("generic:a")
    assert again is not None
    assert again is not first
    after = again.detail().model_dump(exclude={"alert": {"raw"}, "tool_calls": True})
    assert after == before
    assert again.alert.labels == first.alert.labels


def test_a_packed_occurrence_is_packed_again_once_retired() -> None:
    history = History(window_seconds=900)
    first = record()
    history.opened(first)
    finish(history, first, 1.0)
    history.retire(first)
    revived = history.latest("generic:a")
    assert revived is not None
    assert revived.retired
    history.retire(revived)
    assert type(history._latest["generic:a"]) is tuple


def test_earlier_occurrences_are_packed_inside_the_later_ones() -> None:
    history = History(window_seconds=900)
    previous = None
    for n in range(3):
        item = record(previous=previous, seq=n)
        history.opened(item)
        if previous is not None:  # as intake does once it decided: packed again
            history.retire(previous)
            assert type(item.previous) is tuple
        finish(history, item, float(n))
        history.retire(item)
        previous = history.latest("generic:a")
    assert type(history._latest["generic:a"]) is AlertRecord  # revived by the last latest()
    assert previous is not None
    assert [r.occurrence for r in previous.earlier()] == [2, 1]
    first = history.shown("generic:a", 1)
    assert first is not None
    assert first.finished_at == 0.0


def test_prune_never_forgets_inside_the_dedup_window() -> None:
    history = History(window_seconds=900, retention_seconds=0, max_incidents=0)
    item = record()
    history.opened(item)
    finish(history, item, 100.0)
    assert history.prune(999.0) == 0
    assert history.latest("generic:a") is item
    assert history.prune(1000.0) == 1
    assert history.latest("generic:a") is None


def test_prune_keeps_finished_incidents_for_the_retention_unless_too_many() -> None:
    history = History(window_seconds=10, retention_seconds=3600, max_incidents=2)
    for n in range(3):
        item = record(str(n), seq=n)
        history.opened(item)
        finish(history, item, float(n))
    assert history.prune(100.0) == 1  # one over max_incidents, the oldest
    assert history.latest("generic:0") is None
    assert history.prune(3000.0) == 0
    assert history.prune(3602.0) == 2


def test_prune_passes_over_open_occurrences() -> None:
    history = History(window_seconds=10, retention_seconds=10)
    running = record("open")
    history.opened(running)
    done = record("done", seq=2)
    history.opened(done)
    finish(history, done, 0.0)
    assert history.prune(100.0) == 1
    assert history.latest("generic:open") is running
    assert len(history) == 1


async def test_an_occurrence_waiting_for_the_one_before_is_packed_right_after_it() -> None:
    history = History(window_seconds=900)
    first = record()
    history.opened(first)
    finish(history, first, 0.0)
    first.closing = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
    history.retire(first)  # its ending is under way: still a record
    second = record(previous=first, seq=2)
    history.opened(second)
    finish(history, second, 1.0)
    history.retire(second)  # waits for the first
    assert type(history._latest["generic:a"]) is AlertRecord
    first.closing = None  # its ending is done
    history.retire(first)
    assert type(history._latest["generic:a"]) is tuple
