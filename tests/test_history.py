"""What intake remembers of incidents (`intake.history`): latest occurrences, links, pruning."""

from __future__ import annotations

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
    assert history.occurrence("generic:a", 1) is first
    assert history.occurrence("generic:a", 3) is None
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
    assert history.occurrence("generic:a", 5) is None  # forgotten
    assert history.occurrence("generic:a", 6) is not None


def test_recent_keeps_the_last_finished_in_full_and_lightens_older_ones() -> None:
    history = History(window_seconds=900)
    items = [record(str(n), seq=n) for n in range(RECENT_SIZE + 1)]
    for n, item in enumerate(items):
        history.opened(item)
        item.tool_calls.append(object())  # type: ignore[arg-type]
        finish(history, item, float(n))
    assert history.recent(3) == items[::-1][:3]
    assert len(history.recent()) == RECENT_SIZE
    oldest = items[0]
    assert oldest.alert.raw is None
    assert oldest.tool_calls == []
    assert oldest.status is AlertStatus.RESOLVED  # what it was stays
    assert items[1].alert.raw == {"big": "payload"}


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
