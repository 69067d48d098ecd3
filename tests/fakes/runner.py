"""A fake agent runner whose runs are released by hand, checking intake's invariants live."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from intake import AlertRecord, Ending
from models import AlertStatus


@dataclass
class FakeRunner:
    """Each run waits until the test calls `release(incident_id)` (or `auto=True`)."""

    limit: int
    auto: bool = False
    started: list[str] = field(default_factory=list)
    running: dict[str, AlertRecord] = field(default_factory=dict)
    outcomes: dict[str, AlertStatus] = field(default_factory=dict)
    failures: set[str] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    on_start: Callable[[AlertRecord], None] | None = None
    _gates: dict[str, asyncio.Event] = field(default_factory=dict)
    _started_event: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, record: AlertRecord) -> AlertStatus:
        self._check_start(record)
        if self.on_start is not None:
            self.on_start(record)
        self.started.append(record.incident_id)
        self.running[record.incident_id] = record
        self._started_event.set()
        try:
            if not self.auto:
                await self._gates.setdefault(record.incident_id, asyncio.Event()).wait()
                del self._gates[record.incident_id]  # the next occurrence waits anew
            if record.incident_id in self.failures:
                raise RuntimeError("agent blew up")
            return self.outcomes.get(record.incident_id, AlertStatus.RESOLVED)
        finally:
            del self.running[record.incident_id]

    def _check_start(self, record: AlertRecord) -> None:
        if record.incident_id in self.running:
            self.violations.append(f"{record.incident_id} running twice")
        if any(r.service == record.service for r in self.running.values()):
            self.violations.append(f"two runs of {record.service}")
        if len(self.running) >= self.limit:
            self.violations.append("global limit exceeded")

    def release(self, incident_id: str) -> None:
        self._gates.setdefault(incident_id, asyncio.Event()).set()

    async def wait_started(self, count: int) -> None:
        while len(self.started) < count:
            self._started_event.clear()
            await self._started_event.wait()


@dataclass
class RecordingFinalizer:
    """Records each occurrence it closes (`records`) and every ending asked (`endings`)."""

    records: list[tuple[str, AlertStatus, str | None]] = field(default_factory=list)
    endings: list[tuple[str, int, Ending]] = field(default_factory=list)

    async def __call__(self, record: AlertRecord, ending: Ending = Ending.CLOSE) -> None:
        self.endings.append((record.incident_id, record.occurrence, ending))
        if ending is Ending.CLOSE:
            self.records.append((record.incident_id, record.status, record.reason))
