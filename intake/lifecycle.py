"""The occurrence rules of CONTRACT §3 as pure functions over plain values.

An incident (one `incident_id`) fires, resolves and fires again; each firing episode is an
*occurrence*. Given what intake remembers of the incident's latest occurrence (`Latest`),
`on_firing` and `on_resolved` say what a new alert means. They decide; they change nothing:
each state backend (memory now, PostgreSQL later) fetches the latest occurrence, calls the
same rules and applies the verdict in one step.

Two choices beyond the contract's text, both so that no real episode is swallowed:
- an *expired* occurrence was never looked at, so the next firing opens a new occurrence
  rather than being folded into it as `recently_handled`;
- a resolve whose `started_at` is earlier than the latest occurrence's belongs to an older
  episode (an HA peer or a retry re-sending it after a re-fire): it is `ignored` (`stale`)
  and closes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Protocol

from models import AlertStatus


class Latest(Protocol):
    """What the rules read of an incident's latest occurrence (an `AlertRecord` is one)."""

    @property
    def status(self) -> AlertStatus: ...  # queued, running, or how it finished
    @property
    def started_at(self) -> datetime | None: ...  # as the platform said, or None
    @property
    def finished_at(self) -> float | None: ...  # clock time it reached its terminal status
    @property
    def agent_resolved(self) -> bool: ...  # a run concluded it resolved
    @property
    def resolved_upstream(self) -> bool: ...  # the platform resolved it
    @property
    def still_firing(self) -> bool: ...  # escalated as still firing after the fix


class Firing(Enum):
    """What a firing alert is."""

    OPEN = "open"  # a new occurrence: queue it (or escalate it at once)
    QUEUED = "queued"  # a repeat of the queued occurrence
    RUNNING = "running"  # a repeat of the running occurrence: the agent is told
    STALE = "stale"  # a repeat of an occurrence the platform already resolved
    RECENTLY_HANDLED = "recently_handled"  # a repeat within the dedup window
    STILL_FIRING = "still_firing"  # the fix did not hold: escalate the occurrence once


class Resolution(Enum):
    """What a resolved (closed) alert is."""

    UNKNOWN = "not_active"  # no occurrence remembered: nothing to close
    QUEUED = "resolved_before_diagnosis"  # close the queued occurrence as resolved
    RUNNING = "running"  # the agent is told at its next turn
    AUTO_RESOLVE = "resolved_upstream"  # escalated: resolve its PagerDuty incident too
    CLOSE = "finished"  # finished, not escalated (or auto-resolve is off): recorded only
    REPEATED = "already_resolved"  # the platform said so before: nothing new
    STALE = "stale"  # a resolve of an older episode than the latest occurrence


@dataclass(frozen=True, slots=True)
class Windows:
    """The contract's time windows, in seconds."""

    dedup: float = 900  # DEDUP_WINDOW_SECONDS
    grace: float = 300  # RESOLVE_GRACE_SECONDS


def on_firing(
    latest: Latest | None, started_at: datetime | None, now: float, windows: Windows
) -> Firing:
    """A firing alert opens an occurrence, or is a repeat of the latest one (and which)."""
    if latest is None:
        return Firing.OPEN
    status = latest.status
    if status is AlertStatus.QUEUED:
        return Firing.QUEUED
    if status is AlertStatus.RUNNING:
        return Firing.RUNNING
    if status is AlertStatus.EXPIRED or _new_episode(latest, started_at, now, windows):
        return Firing.OPEN
    if latest.resolved_upstream:
        return Firing.STALE
    if _still_firing(latest, now, windows):
        return Firing.STILL_FIRING
    return Firing.RECENTLY_HANDLED


def on_resolved(
    latest: Latest | None, started_at: datetime | None, *, auto_resolve: bool
) -> Resolution:
    """A resolve closes the latest occurrence on the platform's side."""
    if latest is None:
        return Resolution.UNKNOWN
    if _earlier(started_at, latest.started_at):
        return Resolution.STALE
    status = latest.status
    if status is AlertStatus.QUEUED:
        return Resolution.QUEUED
    if status is AlertStatus.RUNNING:
        return Resolution.RUNNING
    if latest.resolved_upstream:
        return Resolution.REPEATED
    if status is AlertStatus.ESCALATED and auto_resolve:
        return Resolution.AUTO_RESOLVE
    return Resolution.CLOSE


def _new_episode(latest: Latest, started_at: datetime | None, now: float, windows: Windows) -> bool:
    """A finished occurrence gives way to a new one: a later start (a re-fire, however
    soon), a firing without a start after the platform resolved it, or the window passed."""
    if _earlier(latest.started_at, started_at):
        return True
    if started_at is None and latest.resolved_upstream:
        return True
    finished_at = latest.finished_at
    return finished_at is None or now - finished_at >= windows.dedup


def _still_firing(latest: Latest, now: float, windows: Windows) -> bool:
    """Still firing more than the grace after the agent resolved it: the fix did not hold
    (escalated once: later repeats are recently handled)."""
    finished_at = latest.finished_at
    return (
        latest.agent_resolved
        and not latest.still_firing
        and finished_at is not None
        and now - finished_at > windows.grace
    )


def _earlier(first: datetime | None, second: datetime | None) -> bool:
    """`first` is known to be before `second` (an unknown start compares with nothing)."""
    return first is not None and second is not None and first < second


class Ending(Enum):
    """The runtime's work on an occurrence outside its run (`Finalizer`)."""

    CLOSE = "close"  # no (complete) run: page when escalated, write the report
    STILL_FIRING = "still_firing"  # page that the fix did not hold; add to the report
    AUTO_RESOLVE = "auto_resolve"  # resolve its PagerDuty incident; add to the report
    RESOLVED_UPSTREAM = "resolved_upstream"  # the platform resolved it: add to the report
