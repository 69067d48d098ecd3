"""What intake remembers of incidents, in memory: each one's latest occurrence, linked to
the ones before it, and the last finished occurrences.

This is the storage half of the occurrence rules (`intake.lifecycle` is the other): the
narrow interface a durable backend implements a second time. It holds:
- `latest`: every remembered incident's latest occurrence, in the order they were
  opened. Each links to the occurrences before it (`previous`, at most
  `MAX_OCCURRENCES` in all). `prune` forgets incidents whose latest occurrence finished
  more than `retention` ago (never within the dedup window), and the oldest beyond
  `max_incidents`;
- `recent`: the last `RECENT_SIZE` finished occurrences, as full records.

An occurrence that is neither open nor recent is kept packed: a `Past`'s plain values in
one flat tuple, which the garbage collector stops visiting after one look (a record is
several objects it visits at every full collection). Intake remembers every incident for
the dedup window and longer, so under a storm of new incidents this keeps both memory and
the collector's work per alert flat. A packed occurrence becomes a record again when an
alert of its incident arrives (`latest`), and is packed again once that is done
(`retire`). Memory: about 0.5 KiB per remembered incident beyond its alert's own text.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

from intake.records import (
    MAX_OCCURRENCES,
    PACKED_FINISHED_AT,
    PACKED_OCCURRENCE,
    PACKED_PREVIOUS,
    AlertRecord,
    Past,
)

RECENT_SIZE = 100
RETENTION_SECONDS = 24 * 3600.0  # how long a finished incident is remembered at least...
MAX_INCIDENTS = 50_000  # ...unless more than this many are (outside the dedup window)

Remembered = AlertRecord | tuple[Any, ...]  # a tuple: a packed `Past`


class History:
    """Each incident's latest occurrence, and the last finished ones."""

    def __init__(
        self,
        *,
        window_seconds: float,
        retention_seconds: float = RETENTION_SECONDS,
        max_incidents: int = MAX_INCIDENTS,
    ) -> None:
        self._latest: dict[str, Remembered] = {}  # oldest touched first
        self._recent: deque[AlertRecord] = deque()
        self._window = window_seconds
        self._retention = max(retention_seconds, window_seconds)
        self._max_incidents = max_incidents

    def __len__(self) -> int:
        """How many incidents are remembered."""
        return len(self._latest)

    def latest(self, incident_id: str) -> AlertRecord | None:
        """The incident's latest occurrence, as a record (revived from its `Past`: `retire`
        it again once what it is needed for is done)."""
        found = self._latest.get(incident_id)
        if found is None or isinstance(found, AlertRecord):
            return found
        record = self._latest[incident_id] = AlertRecord.revived(Past.unpack(found))
        return record

    def opened(self, record: AlertRecord) -> None:
        """`record` is its incident's new latest occurrence (linked to the one before)."""
        latest = self._latest
        latest.pop(record.incident_id, None)
        latest[record.incident_id] = record
        if record.occurrence > MAX_OCCURRENCES:
            self._relink(record.incident_id, record.occurrence - MAX_OCCURRENCES, None)

    def finished(self, record: AlertRecord) -> None:
        """`record` reached its terminal status: newest of the recent ones. (It keeps its
        place in `latest`, where it was opened: incidents finish in about the order they
        open, and moving a key to the end of a large dict costs a visible share of intake's
        time per alert.)"""
        recent = self._recent
        recent.append(record)
        if len(recent) > RECENT_SIZE:
            self.retire(recent.popleft())

    def retire(self, record: AlertRecord) -> None:
        """`record` is neither open nor recent: remember it packed, now or, while an ending
        is under way (it reads the run), when that is done (`retire` again). One whose
        earlier occurrence is still a record (its ending still under way) is packed right
        after that one (`_relink`)."""
        record.retired = True
        closing = record.closing
        if (closing is not None and not closing.done()) or type(record.previous) is AlertRecord:
            return
        latest, incident_id = self._latest, record.incident_id
        if latest.get(incident_id) is record:  # the incident's latest: most often
            latest[incident_id] = record.packed()
        else:
            self._relink(incident_id, record.occurrence, record.packed())

    def shown(self, incident_id: str, number: int | None = None) -> AlertRecord | None:
        """The incident's latest occurrence, or occurrence `number`, while remembered, to
        show: a packed one as a record made for the purpose (and not kept)."""
        found = self._latest.get(incident_id)
        while found is not None:
            if isinstance(found, tuple):
                found = AlertRecord.revived(Past.unpack(found))
            if number is None or found.occurrence <= number:
                return found if number is None or found.occurrence == number else None
            found = found.previous
        return None

    def recent(self, limit: int = RECENT_SIZE) -> list[AlertRecord]:
        """The last `limit` finished occurrences (at most `RECENT_SIZE`), newest first."""
        return list(itertools.islice(reversed(self._recent), limit))

    def prune(self, now: float) -> int:
        """Forget incidents whose latest occurrence finished more than the retention ago, or
        the oldest past `max_incidents` once out of the dedup window. Returns how many.
        From the oldest opened: one that finished late holds the younger ones behind it
        until its own time comes (at most a queue wait and a run later)."""
        latest, forgotten = self._latest, 0
        for _ in range(len(latest)):
            incident_id, found = next(iter(latest.items()))
            finished_at = _finished_at(found)
            if finished_at is None:  # queued or running: touched again when it finishes
                del latest[incident_id]
                latest[incident_id] = found
                continue
            age = now - finished_at
            if age < self._window:
                break
            if age < self._retention and len(latest) <= self._max_incidents:
                break
            del latest[incident_id]
            forgotten += 1
        return forgotten

    def _relink(self, incident_id: str, number: int, new: tuple[Any, ...] | None) -> None:
        """Put `new` where occurrence `number` of the incident is in its chain (None: cut the
        chain there). A record above it is changed in place; a packed one above it is packed
        anew, and so on up to the first record or the head."""
        above: list[Remembered] = []
        found = self._latest.get(incident_id)
        while found is not None:
            occurrence, before = _node(found)
            if occurrence == number:
                break
            if occurrence < number:
                return  # not remembered (any more)
            above.append(found)
            found = before
        else:
            return
        for holder in reversed(above):
            if isinstance(holder, AlertRecord):
                holder.previous = new
                if holder.retired and new is not None:  # it waited for this one: pack it too
                    self.retire(holder)
                return
            new = (*holder[:PACKED_PREVIOUS], new, *holder[PACKED_PREVIOUS + 1 :])
        if new is None:
            del self._latest[incident_id]
        else:
            self._latest[incident_id] = new


def _node(found: Remembered) -> tuple[int, Remembered | None]:
    """(occurrence, the one before it) of a remembered occurrence."""
    if isinstance(found, AlertRecord):
        return found.occurrence, found.previous
    return found[PACKED_OCCURRENCE], found[PACKED_PREVIOUS]


def _finished_at(found: Remembered) -> float | None:
    return found.finished_at if isinstance(found, AlertRecord) else found[PACKED_FINISHED_AT]
