"""The queue's order: which queued record runs next, which expire, and pages of the queue.

`Queue` holds queued records in the structures that order them (O(log n) per operation, no
scan of the whole queue):
- `heaps[service]`: a heap of (order, record) per service, `order` being the record's int
  key: priority first, then arrival;
- `ready`: a heap of the head entry of every *free* service with queued work, and
  `offered[service]`, the one entry of that service in `ready` that still counts (an entry
  superseded by a better or newer head is dropped when popped, so each push is popped once);
- `fifo`: queued entries in arrival order, for TTL expiry from the front;
- `lines[priority]`: queued entries of each priority in arrival order: read one after the
  other they are the queue order, sorted by `order`, so `page` finds where a page starts by
  bisection and reads on from there (`GET /alerts?cursor=`); a line drops the entries at
  its front as they leave the queue (`Line`).
Entries hold the record itself and are removed lazily: an entry is live while its record
is QUEUED (and, in `ready`, while it is its service's offer); `compact` drops dead ones
once they outnumber the live. Which services are busy is the caller's to know: it offers a
service's head only while that service is free.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from dataclasses import dataclass, field

from intake.records import AlertRecord
from models import AlertStatus, Priority

COMPACT_SLACK = 1024

# (order, record): `order` is unique, so the record itself is never compared.
_Entry = tuple[int, AlertRecord]


def _order_of(record: AlertRecord) -> int:
    return record.order


@dataclass(slots=True)
class Line:
    """The queued records of one priority in arrival order, hence sorted by `order`.

    Runs start from the front, so that is where entries die: `trim` moves `head` past the
    dead ones there and drops them from the list once they are half of it (amortized O(1),
    and never more dead entries kept at the front than live ones after them). Entries that
    die further on stay until `compact`.
    """

    records: list[AlertRecord] = field(default_factory=list)
    head: int = 0

    def append(self, record: AlertRecord) -> None:
        self.trim()
        self.records.append(record)

    def trim(self) -> None:
        records, head = self.records, self.head
        while head < len(records) and records[head].status is not AlertStatus.QUEUED:
            head += 1
        if head and head * 2 >= len(records):
            del records[:head]
            head = 0
        self.head = head

    def compact(self) -> None:
        self.records = [r for r in self.records[self.head :] if r.status is AlertStatus.QUEUED]
        self.head = 0


@dataclass(slots=True)
class Queue:
    """Queued records, ordered for dispatch, expiry and paging. `size`: how many are queued."""

    heaps: dict[str, list[_Entry]] = field(default_factory=dict)
    ready: list[_Entry] = field(default_factory=list)
    offered: dict[str, AlertRecord] = field(default_factory=dict)
    fifo: deque[AlertRecord] = field(default_factory=deque)  # by `enqueued_at`
    lines: dict[Priority, Line] = field(
        default_factory=lambda: {priority: Line() for priority in Priority}  # P1 first
    )
    size: int = 0
    heaped: int = 0  # entries in all of `heaps`, live or not

    def push(self, record: AlertRecord) -> bool:
        """Queue `record` (QUEUED, with a service); True when it is its service's new head."""
        service = record.service
        assert service is not None  # unknown services are refused before queueing
        heap = self.heaps.get(service)
        if heap is None:
            heap = self.heaps[service] = []
        heapq.heappush(heap, (record.order, record))
        self.heaped += 1
        self.fifo.append(record)
        self.lines[record.priority].append(record)  # its `order` is the line's largest
        self.size += 1
        return heap[0][1] is record

    def left(self) -> None:
        """A queued record left the queue without running (resolved, expired, shut down)."""
        self.size -= 1

    def holds(self, service: str) -> bool:
        """Whether `service` may have queued records (its heap holds entries)."""
        return service in self.heaps

    def offer(self, service: str) -> None:
        """Make a free service's best queued record its one dispatch candidate."""
        head = self._head(service)
        if head is None:
            self.offered.pop(service, None)
        elif self.offered.get(service) is not head:
            self.offered[service] = head
            heapq.heappush(self.ready, (head.order, head))

    def pop_next(self) -> AlertRecord | None:
        """Take the next record to run: best priority, then oldest, among the services
        offered (the free ones). It leaves the queue; its service is no longer offered."""
        while self.ready:
            record = heapq.heappop(self.ready)[1]
            service = record.service
            assert service is not None
            if self.offered.get(service) is not record:
                continue  # superseded by a newer offer for this service
            del self.offered[service]  # only free services are offered
            if record.status is not AlertStatus.QUEUED:  # resolved or expired meanwhile
                self.offer(service)
                continue
            heap = self.heaps[service]
            top = heapq.heappop(heap)[1]  # an offer is its service's head until superseded
            self.heaped -= 1
            assert top is record
            if not heap:
                del self.heaps[service]
            self.size -= 1
            return record
        return None

    def take_expired(self, now: float, ttl: float) -> list[AlertRecord]:
        """The queued records that arrived `ttl` seconds or more before `now` (oldest first),
        taken off the expiry order; the caller closes them."""
        fifo, expired = self.fifo, []
        while fifo and now - fifo[0].enqueued_at >= ttl:
            record = fifo.popleft()
            if record.status is AlertStatus.QUEUED:
                expired.append(record)
        while fifo and fifo[0].status is not AlertStatus.QUEUED:
            fifo.popleft()
        return expired

    def page(self, *, limit: int, after: int | None = None) -> tuple[list[AlertRecord], int | None]:
        """Up to `limit` queued records in queue order (best priority, then oldest): the
        first ones, or those after the record whose `order` is `after`. Also returns the
        `order` to ask for the next page with: None when no queued record follows.

        Costs O(log n + limit + dead entries met): each line is bisected, then read from
        there. Dead entries (of records that left the queue) are trimmed from the front of
        each line, and `compact` keeps the others fewer than the live ones plus slack.
        """
        if limit < 1:
            raise ValueError("a page holds at least one record")
        page: list[AlertRecord] = []
        for line in self.lines.values():
            line.trim()
            records, start = line.records, line.head
            if start == len(records) or (after is not None and records[-1].order <= after):
                continue
            if after is not None:
                start = bisect.bisect_right(records, after, lo=start, key=_order_of)
            for i in range(start, len(records)):
                record = records[i]
                if record.status is AlertStatus.QUEUED:
                    if len(page) == limit:
                        return page, page[-1].order
                    page.append(record)
        return page, None

    def in_order(self) -> list[AlertRecord]:
        """Every queued record in queue order: O(queue)."""
        lines = self.lines.values()
        return [r for line in lines for r in line.records if r.status is AlertStatus.QUEUED]

    def compact(self) -> None:
        """Drop entries of records that left the queue once they outnumber the live ones.

        Entries are otherwise removed only when they reach the front of their structure, so
        one alert waiting out its TTL would keep every later finished record alive. Each
        rebuild costs O(entries) and happens after at least `COMPACT_SLACK` removals; it runs
        on each tick, so between two ticks at most one tick's worth of arrivals adds to that.
        """
        bound = 2 * self.size + COMPACT_SLACK
        if len(self.fifo) > bound:
            self.fifo = deque(r for r in self.fifo if r.status is AlertStatus.QUEUED)
        if len(self.ready) > 2 * len(self.offered) + COMPACT_SLACK:
            self.ready = [e for e in self.ready if self.offered.get(e[1].service or "") is e[1]]
            heapq.heapify(self.ready)
        if self.heaped > bound:
            for service, heap in list(self.heaps.items()):
                heap[:] = [e for e in heap if e[1].status is AlertStatus.QUEUED]
                heapq.heapify(heap)
                if not heap:
                    del self.heaps[service]
            self.heaped = sum(len(heap) for heap in self.heaps.values())
        if sum(len(line.records) for line in self.lines.values()) > bound:  # five lines
            for line in self.lines.values():
                line.compact()

    def _head(self, service: str) -> AlertRecord | None:
        """The service's best queued record, dropping entries that left the queue."""
        heap = self.heaps.get(service)
        while heap and heap[0][1].status is not AlertStatus.QUEUED:
            heapq.heappop(heap)
            self.heaped -= 1
        if not heap:
            self.heaps.pop(service, None)
            return None
        return heap[0][1]
