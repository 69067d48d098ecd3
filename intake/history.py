"""What intake remembers of incidents, in memory: each one's latest occurrence, linked to
the ones before it, and the last finished occurrences.

This is the storage half of the occurrence rules (`intake.lifecycle` is the other): the
narrow interface a durable backend implements a second time. It holds:
- `latest`: every remembered incident's latest occurrence, in the order they were last
  opened or finished. Each links to the occurrences before it (`AlertRecord.previous`, at
  most `MAX_OCCURRENCES`). `prune` forgets incidents whose latest occurrence finished more
  than `retention` ago (never within the dedup window), and the oldest beyond
  `max_incidents`;
- `recent`: the last `RECENT_SIZE` finished occurrences, in full. An occurrence that leaves
  it is lightened (`AlertRecord.lighten`): its status, timeline, outcome and report file
  stay; its raw payload, tool calls and transcript go.

Memory: about 1-2 KiB per remembered incident (its alert without the raw payload, its
timeline) plus the full records of the recent occurrences and those queued or running.
"""

from __future__ import annotations

import itertools
from collections import deque

from intake.records import MAX_OCCURRENCES, AlertRecord

RECENT_SIZE = 100
RETENTION_SECONDS = 24 * 3600.0  # how long a finished incident is remembered at least...
MAX_INCIDENTS = 50_000  # ...unless more than this many are (outside the dedup window)


class History:
    """Each incident's latest occurrence, and the last finished ones."""

    def __init__(
        self,
        *,
        window_seconds: float,
        retention_seconds: float = RETENTION_SECONDS,
        max_incidents: int = MAX_INCIDENTS,
    ) -> None:
        self._latest: dict[str, AlertRecord] = {}  # oldest touched first
        self._recent: deque[AlertRecord] = deque()
        self._window = window_seconds
        self._retention = max(retention_seconds, window_seconds)
        self._max_incidents = max_incidents

    def __len__(self) -> int:
        """How many incidents are remembered."""
        return len(self._latest)

    def latest(self, incident_id: str) -> AlertRecord | None:
        return self._latest.get(incident_id)

    def opened(self, record: AlertRecord) -> None:
        """`record` is its incident's new latest occurrence (linked to the one before)."""
        latest = self._latest
        latest.pop(record.incident_id, None)
        latest[record.incident_id] = record
        if record.occurrence > MAX_OCCURRENCES:
            record.forget_beyond(MAX_OCCURRENCES)

    def finished(self, record: AlertRecord) -> None:
        """`record` reached its terminal status: newest of the recent ones."""
        latest, incident_id = self._latest, record.incident_id
        if latest.get(incident_id) is record:  # moves to the end: the last touched
            del latest[incident_id]
            latest[incident_id] = record
        recent = self._recent
        recent.append(record)
        if len(recent) > RECENT_SIZE:
            recent.popleft().lighten()

    def occurrence(self, incident_id: str, number: int) -> AlertRecord | None:
        """Occurrence `number` of the incident, while remembered."""
        record = self._latest.get(incident_id)
        while record is not None and record.occurrence > number:
            record = record.previous
        return record if record is not None and record.occurrence == number else None

    def recent(self, limit: int = RECENT_SIZE) -> list[AlertRecord]:
        """The last `limit` finished occurrences (at most `RECENT_SIZE`), newest first."""
        return list(itertools.islice(reversed(self._recent), limit))

    def prune(self, now: float) -> int:
        """Forget incidents whose latest occurrence finished more than the retention ago, or
        the oldest past `max_incidents` once out of the dedup window. Returns how many."""
        latest, forgotten = self._latest, 0
        for _ in range(len(latest)):
            incident_id, record = next(iter(latest.items()))
            finished_at = record.finished_at
            if finished_at is None:  # queued or running: touched again when it finishes
                del latest[incident_id]
                latest[incident_id] = record
                continue
            age = now - finished_at
            if age < self._window:
                break
            if age < self._retention and len(latest) <= self._max_incidents:
                break
            del latest[incident_id]
            forgotten += 1
        return forgotten
