"""The occurrence rules (CONTRACT §3), as pure functions: one test per rule, then properties."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from intake.lifecycle import Firing, Resolution, Windows, on_firing, on_resolved
from models import AlertStatus

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)
WINDOWS = Windows(dedup=900, grace=300)
FINISHED = 1000.0  # clock time the occurrence finished


@dataclass
class Facts:
    status: AlertStatus = AlertStatus.RESOLVED
    started_at: datetime | None = T0
    finished_at: float | None = FINISHED
    agent_resolved: bool = False
    resolved_upstream: bool = False
    still_firing: bool = False


def firing(latest: Facts | None, started_at: datetime | None = T0, after: float = 1) -> Firing:
    return on_firing(latest, started_at, FINISHED + after, WINDOWS)


def test_first_firing_opens_an_occurrence() -> None:
    assert firing(None) is Firing.OPEN


def test_repeat_of_an_open_occurrence_says_queued_or_running() -> None:
    assert firing(Facts(AlertStatus.QUEUED, finished_at=None)) is Firing.QUEUED
    assert firing(Facts(AlertStatus.RUNNING, finished_at=None)) is Firing.RUNNING


def test_open_occurrence_absorbs_even_a_later_start() -> None:
    assert firing(Facts(AlertStatus.RUNNING, finished_at=None), LATER) is Firing.RUNNING


def test_later_start_is_a_refire_however_soon() -> None:
    assert firing(Facts(), LATER, after=0) is Firing.OPEN


def test_same_start_within_the_window_was_recently_handled() -> None:
    assert firing(Facts()) is Firing.RECENTLY_HANDLED


def test_earlier_start_is_a_repeat_not_a_refire() -> None:
    assert firing(Facts(started_at=LATER), T0) is Firing.RECENTLY_HANDLED


def test_unknown_start_never_opens_by_itself_within_the_window() -> None:
    assert firing(Facts(started_at=None), None) is Firing.RECENTLY_HANDLED
    assert firing(Facts(started_at=T0), None) is Firing.RECENTLY_HANDLED
    assert firing(Facts(started_at=None), LATER) is Firing.RECENTLY_HANDLED


def test_after_the_window_any_firing_opens_a_new_occurrence() -> None:
    assert firing(Facts(), T0, after=900) is Firing.OPEN
    assert firing(Facts(started_at=None), None, after=901) is Firing.OPEN


def test_firing_after_the_platform_resolved_is_stale_with_the_same_start() -> None:
    assert firing(Facts(resolved_upstream=True)) is Firing.STALE


def test_firing_without_a_start_after_the_platform_resolved_opens() -> None:
    assert firing(Facts(resolved_upstream=True), None) is Firing.OPEN


def test_expired_occurrence_gives_way_to_the_next_firing() -> None:
    assert firing(Facts(AlertStatus.EXPIRED)) is Firing.OPEN


def test_still_firing_past_the_grace_after_the_agent_resolved_it() -> None:
    fixed = Facts(agent_resolved=True)
    assert firing(fixed, after=300) is Firing.RECENTLY_HANDLED  # within the grace
    assert firing(fixed, after=301) is Firing.STILL_FIRING
    assert firing(Facts(agent_resolved=True, still_firing=True), after=400) is (
        Firing.RECENTLY_HANDLED
    )


def test_no_still_firing_after_an_escalation_or_a_platform_resolve() -> None:
    assert firing(Facts(AlertStatus.ESCALATED), after=400) is Firing.RECENTLY_HANDLED
    resolved = Facts(agent_resolved=True, resolved_upstream=True)
    assert firing(resolved, after=400) is Firing.STALE


def resolved(
    latest: Facts | None, started_at: datetime | None = T0, *, auto: bool = True
) -> Resolution:
    return on_resolved(latest, started_at, auto_resolve=auto)


def test_resolve_of_nothing_remembered_is_unknown() -> None:
    assert resolved(None) is Resolution.UNKNOWN


def test_resolve_closes_a_queued_occurrence_and_tells_a_running_one() -> None:
    assert resolved(Facts(AlertStatus.QUEUED, finished_at=None)) is Resolution.QUEUED
    assert resolved(Facts(AlertStatus.RUNNING, finished_at=None)) is Resolution.RUNNING


def test_resolve_after_an_escalation_resolves_pagerduty_when_on() -> None:
    assert resolved(Facts(AlertStatus.ESCALATED)) is Resolution.AUTO_RESOLVE
    assert resolved(Facts(AlertStatus.ESCALATED), auto=False) is Resolution.CLOSE
    assert resolved(Facts(AlertStatus.RESOLVED)) is Resolution.CLOSE
    assert resolved(Facts(AlertStatus.EXPIRED)) is Resolution.CLOSE


def test_second_resolve_changes_nothing() -> None:
    assert resolved(Facts(AlertStatus.ESCALATED, resolved_upstream=True)) is Resolution.REPEATED


def test_resolve_of_an_older_episode_closes_nothing() -> None:
    assert resolved(Facts(AlertStatus.QUEUED, started_at=LATER), T0) is Resolution.STALE
    assert resolved(Facts(AlertStatus.QUEUED, started_at=LATER), None) is Resolution.QUEUED


# -- properties ---------------------------------------------------------------------------

statuses = st.sampled_from(list(AlertStatus))
starts = st.none() | st.integers(0, 5).map(lambda m: T0 + timedelta(minutes=m))
facts = st.builds(
    Facts,
    status=statuses,
    started_at=starts,
    finished_at=st.none() | st.floats(0, 2000),
    agent_resolved=st.booleans(),
    resolved_upstream=st.booleans(),
    still_firing=st.booleans(),
)
windows = st.builds(Windows, dedup=st.floats(0, 2000), grace=st.floats(0, 2000))


@given(facts, starts, st.floats(0, 5000), windows)
def test_an_open_occurrence_never_opens_another(
    latest: Facts, start: datetime | None, now: float, w: Windows
) -> None:
    if latest.status in (AlertStatus.QUEUED, AlertStatus.RUNNING):
        assert on_firing(latest, start, now, w) in (Firing.QUEUED, Firing.RUNNING)


@given(facts, starts, st.floats(0, 5000), windows)
def test_a_new_episode_of_a_finished_occurrence_is_never_folded(
    latest: Facts, start: datetime | None, now: float, w: Windows
) -> None:
    """No episode is lost: a later start after the occurrence finished always opens."""
    finished = latest.status not in (AlertStatus.QUEUED, AlertStatus.RUNNING)
    later = start is not None and latest.started_at is not None and start > latest.started_at
    if finished and later:
        assert on_firing(latest, start, now, w) is Firing.OPEN


@given(facts, st.floats(0, 5000), windows)
def test_same_episode_inside_the_window_never_runs_again(
    latest: Facts, now: float, w: Windows
) -> None:
    """Every episode gets at most one run: a repeat (same known start) of a finished, not
    expired occurrence within the window opens nothing. (Without a start, a firing after
    the platform's resolve is taken as a new episode: nothing else can tell it.)"""
    finished_at = latest.finished_at
    handled = latest.status in (AlertStatus.RESOLVED, AlertStatus.ESCALATED)
    known = latest.started_at is not None
    if known and handled and finished_at is not None and now - finished_at < w.dedup:
        assert on_firing(latest, latest.started_at, now, w) is not Firing.OPEN


@given(facts, starts, st.floats(0, 5000), windows)
def test_still_firing_only_after_an_agent_fix_and_only_once(
    latest: Facts, start: datetime | None, now: float, w: Windows
) -> None:
    if on_firing(latest, start, now, w) is Firing.STILL_FIRING:
        assert latest.agent_resolved
        assert not latest.still_firing
        assert not latest.resolved_upstream
        assert latest.finished_at is not None
        assert now - latest.finished_at > w.grace


@given(facts, starts, st.booleans())
def test_a_resolve_never_reopens_and_auto_resolves_only_escalations(
    latest: Facts, start: datetime | None, auto: bool
) -> None:
    verdict = on_resolved(latest, start, auto_resolve=auto)
    if verdict is Resolution.AUTO_RESOLVE:
        assert auto
        assert latest.status is AlertStatus.ESCALATED
        assert not latest.resolved_upstream
    if verdict is Resolution.QUEUED:
        assert latest.status is AlertStatus.QUEUED
