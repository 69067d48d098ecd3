"""What the HTTP layer asks of intake, whichever backend holds the state (CONTRACT §8).

`IntakeService` is the one interface: `submit_all` decides a webhook's alerts, the views
answer `/alerts*` and the console, the rest is drain and shutdown. Two implementations:
`MemoryIntake` (STATE_BACKEND=memory: the in-process `Intake`, as fast as it was; its views
are ready values wrapped in coroutines) and `intake.pg.PgIntake` (the database's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from intake.pipeline import Intake
from intake.records import AlertRecord, SubmitOutcome
from models import Alert

if TYPE_CHECKING:  # the run's own type; intake only carries it
    from agent.transcript import Transcript

SUBMIT_BATCH = 100  # alerts decided between two chances for the loop to serve others


class DatabaseUnavailable(Exception):
    """The state database could not be reached: nothing was stored (the webhook answers
    503 with `Retry-After`, and the platform sends it again)."""


class IntakeService(Protocol):
    async def __aenter__(self) -> IntakeService: ...
    async def __aexit__(self, *exc_info: object) -> None: ...

    @property
    def accepting(self) -> bool: ...

    async def submit_all(
        self, alerts: Sequence[Alert], *, trace_id: str
    ) -> list[SubmitOutcome]: ...

    async def get(self, incident_id: str, occurrence: int | None = None) -> AlertRecord | None: ...
    async def running(self, limit: int) -> list[AlertRecord]: ...
    async def queued_page(
        self, *, limit: int, after: int | None = None
    ) -> tuple[list[AlertRecord], int | None]: ...
    async def recent(self, limit: int) -> list[AlertRecord]: ...
    async def report(self, record: AlertRecord) -> str | None: ...
    async def transcript(self, record: AlertRecord) -> Transcript | None: ...

    def counts(self) -> tuple[int, int]: ...
    def stats(self) -> dict[str, Any]: ...
    async def probe(self) -> str | None:
        """A round trip to where the state lives (raises when it cannot be reached)."""
        ...

    async def drain(self) -> None: ...
    async def resume(self) -> None: ...
    async def wait_idle(self) -> None: ...
    async def stop(self, *, grace_seconds: float, cleanup_seconds: float = 15.0) -> None: ...
    async def settle(self, *, seconds: float) -> None: ...
    async def close(self, *, grace_seconds: float, cleanup_seconds: float = 15.0) -> None: ...


class MemoryIntake:
    """STATE_BACKEND=memory: the in-process `Intake` behind `IntakeService`."""

    def __init__(self, intake: Intake, read_report: Callable[[str], str | None]) -> None:
        self.intake = intake
        self._read_report = read_report

    async def __aenter__(self) -> MemoryIntake:
        await self.intake.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.intake.__aexit__(*exc_info)

    @property
    def accepting(self) -> bool:
        return self.intake.accepting

    async def submit_all(self, alerts: Sequence[Alert], *, trace_id: str) -> list[SubmitOutcome]:
        """Each alert in turn, letting the loop serve others every `SUBMIT_BATCH`."""
        outcomes = []
        submit = self.intake.submit
        for count, alert in enumerate(alerts, 1):
            outcomes.append(submit(alert, trace_id=trace_id))
            if count % SUBMIT_BATCH == 0:
                await asyncio.sleep(0)
        return outcomes

    async def get(self, incident_id: str, occurrence: int | None = None) -> AlertRecord | None:
        return self.intake.get(incident_id, occurrence)

    async def running(self, limit: int) -> list[AlertRecord]:
        return self.intake.running_records()[:limit]

    async def queued_page(
        self, *, limit: int, after: int | None = None
    ) -> tuple[list[AlertRecord], int | None]:
        return self.intake.queued_page(limit=limit, after=after)

    async def recent(self, limit: int) -> list[AlertRecord]:
        return self.intake.recent(limit)

    async def report(self, record: AlertRecord) -> str | None:
        return self._read_report(record.report_file) if record.report_file else None

    async def transcript(self, record: AlertRecord) -> Transcript | None:
        return record.transcript

    def counts(self) -> tuple[int, int]:
        return self.intake.counts()

    def stats(self) -> dict[str, Any]:
        return self.intake.stats()

    async def probe(self) -> str | None:
        return "in memory"

    async def drain(self) -> None:
        await self.intake.drain()

    async def resume(self) -> None:
        await self.intake.resume()

    async def wait_idle(self) -> None:
        await self.intake.wait_idle()

    async def stop(self, *, grace_seconds: float, cleanup_seconds: float = 15.0) -> None:
        await self.intake.stop(grace_seconds=grace_seconds, cleanup_seconds=cleanup_seconds)

    async def settle(self, *, seconds: float) -> None:
        await self.intake.settle(seconds=seconds)

    async def close(self, *, grace_seconds: float, cleanup_seconds: float = 15.0) -> None:
        await self.intake.close(grace_seconds=grace_seconds, cleanup_seconds=cleanup_seconds)
