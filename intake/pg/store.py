"""The SQL of STATE_BACKEND=postgres: every read and write of intake's state, one place.

Correctness across replicas comes from the database, never from timing:
- an alert is decided under a transaction-scoped advisory lock on its incident, so one
  incident's alerts are decided one after the other whichever replica received them; a
  webhook's alerts take their locks in one global order (no deadlock between replicas);
- the queue's length is one row (`queue_length`) that triggers keep, so every change to the
  queue holds its lock until commit and a new occurrence reads an exact length: MAX_QUEUE_SIZE
  holds across replicas;
- starting a run happens under the dispatch lock: the count of running rows and the choice
  of the next (best priority, then oldest, whose service has no run) are one decision, so
  MAX_CONCURRENT_ALERTS and one-run-per-service hold over all replicas;
- a run's writes name its lease owner (`WHERE lease_owner = me`): a replica that lost its
  lease (another took the run over) can no longer change it.
"""

from __future__ import annotations

import enum
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from intake.approvals import Proposal
from intake.pg.batch import Statement
from intake.records import AlertRecord
from models import Alert, AlertStatus, Approval, ApprovalStatus

DISPATCH_LOCK = 0x5E_A6_E7_03
CHANNEL = "sre_agent_queue"  # NOTIFY: something was queued (`QUEUED`) or a run slot freed
QUEUED, FREED = "queued", "freed"  # its payloads
NOTIFY_FREED = f"NOTIFY {CHANNEL}, '{FREED}'"

# What the lifecycle rules and the API read: everything but the big columns.
_COLUMNS = """incident_id, occurrence, seq, service, priority, status, reason, started_at,
    enqueued_at, finished_at, still_firing, resolved_upstream, repeats, trace_id, alert,
    timeline, turns, tokens, tool_calls, outcome, report_file, paged_as, handoff,
    lease_owner, takeovers"""
_RUN_COLUMNS = _COLUMNS + ", transcript, run_state, notices"
_OCCURRENCE_COLUMNS = ", ".join(f"o.{name.strip()}" for name in _COLUMNS.split(","))  # as `o`


def lock_key(incident_id: str) -> int:
    """The incident's advisory lock key: a stable signed 64-bit hash of its id."""
    digest = hashlib.blake2b(incident_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def record_of(row: dict[str, Any]) -> AlertRecord:
    """An occurrence's row as an `AlertRecord` (no run state, no transcript)."""
    alert = Alert.model_validate(row["alert"])
    return AlertRecord.restored(
        alert,
        row,
        occurrence=row["occurrence"],
        trace_id=row["trace_id"],
        enqueued_at=row["enqueued_at"],
        seq=row["seq"],
    )


def _state_columns(record: AlertRecord) -> dict[str, Any]:
    state = record.state()
    for name in ("tokens", "tool_calls", "timeline"):
        state[name] = Jsonb(state[name])
    return state


@dataclass(slots=True)
class Latest:
    """What the lifecycle rules read of an incident's latest occurrence (`Latest`)."""

    incident_id: str
    occurrence: int
    status: AlertStatus
    started_at: Any
    finished_at: float | None
    turns: int
    resolved_upstream: bool
    still_firing: bool
    repeats: int

    @property
    def agent_resolved(self) -> bool:
        return self.status is AlertStatus.RESOLVED and self.turns > 0


# -- a webhook's transaction (`intake.pg.submit`): statements for a `Batch` ------------------


def lock_incidents(incident_ids: Sequence[str]) -> list[Statement]:
    """The incidents' advisory locks, in one global order, held until the transaction ends."""
    keys = sorted({lock_key(i) for i in incident_ids})
    return [("SELECT pg_advisory_xact_lock(%s)", (key,)) for key in keys]


def latest(incident_ids: Sequence[str]) -> Statement:
    """The incidents' latest occurrences (none for an incident without one), each locked
    against the dispatcher's claim; one statement, whatever their number (`latest_of`)."""
    return (
        """SELECT l.* FROM unnest(%s::text[]) AS i(id)
           CROSS JOIN LATERAL (
               SELECT incident_id, occurrence, status, started_at, finished_at, turns,
                      resolved_upstream, still_firing, repeats
               FROM occurrences WHERE incident_id = i.id
               ORDER BY occurrence DESC LIMIT 1 FOR UPDATE) l""",
        (list(incident_ids),),
    )


def latest_of(rows: Sequence[dict[str, Any]]) -> dict[str, Latest]:
    """`latest`'s rows, by incident."""
    return {
        row["incident_id"]: Latest(**{**row, "status": AlertStatus(row["status"])}) for row in rows
    }


def one(incident_id: str, occurrence: int) -> Statement:
    """One occurrence's row (`record_of`)."""
    return (
        f"SELECT {_COLUMNS} FROM occurrences WHERE incident_id = %s AND occurrence = %s",
        (incident_id, occurrence),
    )


def tokens_last_hour() -> Statement:
    return (
        "SELECT coalesce(sum(tokens), 0) AS tokens FROM token_usage "
        "WHERE at > now() - interval '1 hour'",
        None,
    )


def insert(record: AlertRecord) -> Statement:
    """Store a new occurrence."""
    alert = record.alert
    return (
        """INSERT INTO occurrences (incident_id, occurrence, service, priority, priority_rank,
               status, reason, started_at, enqueued_at, finished_at, trace_id, alert, timeline,
               handoff)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            record.incident_id,
            record.occurrence,
            record.service,
            record.priority.value,
            record.priority.rank,
            record.status.value,
            record.reason,
            record.started_at,
            record.enqueued_at,
            record.finished_at,
            record.trace_id,
            Jsonb(alert.model_dump(mode="json")),
            Jsonb(record.state()["timeline"]),
            record.handoff,
        ),
    )


NOTIFY_QUEUED = (f"NOTIFY {CHANNEL}, '{QUEUED}'", None)  # delivered at commit only


def refuse_over(newest_first: Sequence[tuple[str, int]], queue_size: int) -> Statement:
    """The occurrences (incident, occurrence) this transaction inserted as queued, newest
    first: as many of the newest as the queue holds over `queue_size` are refused
    (`queue_full`, finished now), in one statement; their rows.

    The k-th newest is refused when the queue, less the k - 1 newer ones refused before it,
    still holds more than `queue_size`: exactly as if each had counted the queue before it
    was stored. `queue_length` is exact here: inserting them took its row lock (a trigger)
    after every other transaction that changed the queue before had committed, and this one
    holds it until it ends; the subquery reads it once, before any row is refused."""
    now = time.time()
    step = [now, AlertStatus.ESCALATED.value, "queue_full"]
    return (
        f"""UPDATE occurrences o SET status = %s, reason = 'queue_full', finished_at = %s,
               timeline = o.timeline || %s
           FROM unnest(%s::text[], %s::int[]) WITH ORDINALITY AS mine(incident_id, occurrence, k)
           WHERE o.incident_id = mine.incident_id AND o.occurrence = mine.occurrence
             AND o.status = 'queued'
             AND mine.k <= (SELECT queued FROM queue_length WHERE id = 1) - %s
           RETURNING {_OCCURRENCE_COLUMNS}""",
        (
            AlertStatus.ESCALATED.value,
            now,
            Jsonb([step]),
            [incident for incident, _ in newest_first],
            [occurrence for _, occurrence in newest_first],
            queue_size,
        ),
    )


def add_repeat(latest: Latest, notice: str | None) -> Statement:
    """One more repeat of the latest occurrence; `notice`: for its running agent."""
    return (
        """UPDATE occurrences SET repeats = repeats + 1,
               notices = CASE WHEN %s::text IS NULL THEN notices ELSE notices || %s END
           WHERE incident_id = %s AND occurrence = %s""",
        (notice, Jsonb([notice]), latest.incident_id, latest.occurrence),
    )


def notify_run(latest: Latest, notice: str) -> Statement:
    return (
        """UPDATE occurrences SET notices = notices || %s
           WHERE incident_id = %s AND occurrence = %s""",
        (Jsonb([notice]), latest.incident_id, latest.occurrence),
    )


def update(record: AlertRecord) -> Statement:
    """Write back the state of a record intake decided on, under its incident's lock."""
    columns = _state_columns(record)
    assignments = ", ".join(f"{name} = %({name})s" for name in columns)
    return (
        f"UPDATE occurrences SET {assignments} "
        "WHERE incident_id = %(incident_id)s AND occurrence = %(occurrence)s",
        {**columns, "incident_id": record.incident_id, "occurrence": record.occurrence},
    )


# -- reads and writes outside a webhook's transaction --------------------------------------


async def save_report(conn: AsyncConnection, record: AlertRecord, name: str, text: str) -> None:
    await conn.execute(
        """UPDATE occurrences SET report = %s, report_file = %s, outcome = %s, paged_as = %s
           WHERE incident_id = %s AND occurrence = %s""",
        (text, name, record.outcome, record.paged_as, record.incident_id, record.occurrence),
    )


async def fetch_record(
    conn: AsyncConnection, incident_id: str, occurrence: int | None
) -> list[dict[str, Any]]:
    """The rows of an incident, newest first, from `occurrence` (the latest when None);
    none when that occurrence is not remembered."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            f"SELECT {_COLUMNS} FROM occurrences WHERE incident_id = %s "
            "AND occurrence <= coalesce(%s, occurrence) ORDER BY occurrence DESC",
            (incident_id, occurrence),
        )
        rows = await cursor.fetchall()
    if occurrence is not None and (not rows or rows[0]["occurrence"] != occurrence):
        return []
    return rows


async def column(conn: AsyncConnection, name: str, incident_id: str, occurrence: int) -> Any:
    """One big column (`report`, `transcript`) of one occurrence."""
    assert name in ("report", "transcript")
    cursor = await conn.execute(
        f"SELECT {name} FROM occurrences WHERE incident_id = %s AND occurrence = %s",
        (incident_id, occurrence),
    )
    row = await cursor.fetchone()
    return None if row is None else row[0]


async def listing(
    conn: AsyncConnection, where: str, order: str, limit: int, params: Sequence[Any] = ()
) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            f"SELECT {_COLUMNS} FROM occurrences WHERE {where} ORDER BY {order} LIMIT %s",
            (*params, limit),
        )
        return await cursor.fetchall()


APPROVAL_FIELDS = (
    "approval_id, incident_id, occurrence, tool, arguments, reason, requested_at, expires_at, "
    "status, decided_by, decided_at, note, result"
)


def proposal_of(row: dict[str, Any]) -> Proposal:
    """An `approvals` row (its `APPROVAL_FIELDS`) as the desk's `Proposal`."""
    return Proposal(**{**row, "status": ApprovalStatus(row["status"])})


async def proposals(conn: AsyncConnection, where: str, params: Sequence[Any]) -> list[Proposal]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(f"SELECT {APPROVAL_FIELDS} FROM approvals WHERE {where}", params)
        return [proposal_of(row) for row in await cursor.fetchall()]


async def approvals_of(conn: AsyncConnection, incident_id: str, occurrence: int) -> list[Approval]:
    """An occurrence's approvals, oldest first, as the API shows them."""
    found = await proposals(
        conn,
        "incident_id = %s AND occurrence = %s ORDER BY requested_at",
        (incident_id, occurrence),
    )
    return [p.view() for p in found]


async def awaiting_approval(conn: AsyncConnection) -> set[tuple[str, int]]:
    """The occurrences with a pending approval."""
    cursor = await conn.execute(
        "SELECT DISTINCT incident_id, occurrence FROM approvals WHERE status = 'pending'"
    )
    return {(row[0], row[1]) for row in await cursor.fetchall()}


async def counts(conn: AsyncConnection) -> tuple[int, int]:
    cursor = await conn.execute(
        """SELECT count(*) FILTER (WHERE status = 'running'),
                  count(*) FILTER (WHERE status = 'queued')
           FROM occurrences WHERE status IN ('running', 'queued')"""
    )
    row = await cursor.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


# -- runs ---------------------------------------------------------------------------------


class NoRun(enum.Enum):
    """Why `claim` started nothing."""

    AT_LIMIT = "at_limit"  # MAX_CONCURRENT_ALERTS run: only a freed slot can start one
    NONE_READY = "none_ready"  # nothing queued whose service is free


@dataclass(slots=True)
class Claim:
    """A run this replica is to execute: a new one, or one taken over (`takeover`)."""

    row: dict[str, Any]
    takeover: bool
    handed_back: bool


async def claim(
    conn: AsyncConnection,
    *,
    owner: str,
    limit: int,
    lease_seconds: float,
    ttl_seconds: float,
) -> Claim | NoRun:
    """Under the dispatch lock: a run whose lease lapsed (or was handed back), else the
    best queued occurrence whose service is free while fewer than `limit` run."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (DISPATCH_LOCK,))
        async with conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(
                f"""SELECT {_RUN_COLUMNS} FROM occurrences
                    WHERE status = 'running'
                      AND (lease_owner IS NULL OR lease_expires < now())
                    ORDER BY lease_expires NULLS FIRST LIMIT 1
                    FOR UPDATE SKIP LOCKED"""
            )
            lapsed = await cursor.fetchone()
            if lapsed is not None:
                handed_back = lapsed["lease_owner"] is None
                await conn.execute(
                    """UPDATE occurrences SET lease_owner = %s,
                           lease_expires = now() + make_interval(secs => %s),
                           takeovers = takeovers + %s
                       WHERE incident_id = %s AND occurrence = %s""",
                    (
                        owner,
                        lease_seconds,
                        0 if handed_back else 1,
                        lapsed["incident_id"],
                        lapsed["occurrence"],
                    ),
                )
                lapsed["takeovers"] += 0 if handed_back else 1
                return Claim(lapsed, takeover=not handed_back, handed_back=handed_back)
            await cursor.execute("SELECT count(*) AS n FROM occurrences WHERE status = 'running'")
            running = await cursor.fetchone()
            if running is not None and running["n"] >= limit:
                return NoRun.AT_LIMIT
            await cursor.execute(
                f"""SELECT {_RUN_COLUMNS} FROM occurrences q
                    WHERE q.status = 'queued' AND q.enqueued_at >= %s
                      AND NOT EXISTS (SELECT 1 FROM occurrences r
                                      WHERE r.status = 'running' AND r.service = q.service)
                    ORDER BY q.priority_rank, q.seq LIMIT 1
                    FOR UPDATE SKIP LOCKED""",
                (time.time() - ttl_seconds,),
            )
            queued = await cursor.fetchone()
            if queued is None:
                return NoRun.NONE_READY
            step = [time.time(), AlertStatus.RUNNING.value, None]
            await conn.execute(
                """UPDATE occurrences SET status = 'running', lease_owner = %s,
                       lease_expires = now() + make_interval(secs => %s),
                       timeline = timeline || %s
                   WHERE incident_id = %s AND occurrence = %s""",
                (
                    owner,
                    lease_seconds,
                    Jsonb([step]),
                    queued["incident_id"],
                    queued["occurrence"],
                ),
            )
            queued["status"] = AlertStatus.RUNNING.value
            queued["timeline"] = [*queued["timeline"], step]
            return Claim(queued, takeover=False, handed_back=False)


async def checkpoint(
    conn: AsyncConnection,
    record: AlertRecord,
    *,
    owner: str,
    transcript: dict[str, Any] | None,
    run_state: dict[str, Any] | None,
    new_tokens: int,
) -> list[str] | None:
    """Store a run's progress (fenced by its lease) and take the notices that arrived for
    it; None when the lease is no longer this replica's."""
    async with conn.transaction():
        notices = await _write_run(conn, record, owner, transcript, run_state, finished=False)
        if notices is not None and new_tokens > 0:
            await conn.execute("INSERT INTO token_usage (tokens) VALUES (%s)", (new_tokens,))
        return notices


async def finish_run(
    conn: AsyncConnection,
    record: AlertRecord,
    *,
    owner: str,
    transcript: dict[str, Any] | None,
    run_state: dict[str, Any] | None,
) -> bool:
    """A run's end: its terminal status and everything the run owns, fenced by its lease.
    False when the lease was lost."""
    async with conn.transaction():
        written = await _write_run(conn, record, owner, transcript, run_state, finished=True)
        return written is not None


async def _write_run(
    conn: AsyncConnection,
    record: AlertRecord,
    owner: str,
    transcript: dict[str, Any] | None,
    run_state: dict[str, Any] | None,
    *,
    finished: bool,
) -> list[str] | None:
    """Write what a run owns while `owner` holds its lease; None when it does not. What
    intake wrote meanwhile (a timeline entry, the platform's resolve) is taken into the
    record, never overwritten; notices are taken (or, at the end, left: nobody reads them)."""
    cursor = await conn.execute(
        """SELECT notices, timeline, resolved_upstream FROM occurrences
           WHERE incident_id = %s AND occurrence = %s AND lease_owner = %s FOR UPDATE""",
        (record.incident_id, record.occurrence, owner),
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    notices, timeline, resolved_upstream = row
    record.resolved_upstream = record.resolved_upstream or resolved_upstream
    values = _state_columns(record)
    values.update(
        timeline=Jsonb(record.merge_timeline(timeline)),
        transcript=None if transcript is None else Jsonb(transcript),
        run_state=None if run_state is None else Jsonb(run_state),
        resolved_upstream=record.resolved_upstream,
        incident_id=record.incident_id,
        occurrence=record.occurrence,
    )
    run_columns = """turns = %(turns)s, tokens = %(tokens)s, tool_calls = %(tool_calls)s,
        timeline = %(timeline)s, resolved_upstream = %(resolved_upstream)s,
        transcript = coalesce(%(transcript)s, transcript),
        run_state = coalesce(%(run_state)s, run_state)"""
    end_columns = (
        """, status = %(status)s, reason = %(reason)s, finished_at = %(finished_at)s,
        outcome = %(outcome)s, handoff = %(handoff)s"""
        if finished
        else ", notices = '[]'"
    )
    await conn.execute(
        f"UPDATE occurrences SET {run_columns}{end_columns} "
        "WHERE incident_id = %(incident_id)s AND occurrence = %(occurrence)s",
        values,
    )
    return list(notices or [])


async def renew(
    conn: AsyncConnection, owner: str, lease_seconds: float, runs: Sequence[tuple[str, int]]
) -> set[tuple[str, int]]:
    """Extend the leases of `runs` (the runs alive on this replica) that it still holds;
    those runs. A run this replica holds but no longer executes (left when the database
    went away) is not renewed: its lease lapses and a replica resumes it."""
    cursor = await conn.execute(
        """UPDATE occurrences SET lease_expires = now() + make_interval(secs => %s)
           WHERE status = 'running' AND lease_owner = %s
             AND (incident_id, occurrence) IN
                 (SELECT * FROM unnest(%s::text[], %s::integer[]))
           RETURNING incident_id, occurrence""",
        (lease_seconds, owner, [r[0] for r in runs], [r[1] for r in runs]),
    )
    return {(r[0], r[1]) for r in await cursor.fetchall()}


async def hand_back(conn: AsyncConnection, owner: str) -> int:
    """SIGTERM: release this replica's leases so another replica resumes the runs at once."""
    cursor = await conn.execute(
        """UPDATE occurrences SET lease_owner = NULL, lease_expires = NULL
           WHERE status = 'running' AND lease_owner = %s""",
        (owner,),
    )
    await conn.execute(NOTIFY_FREED)
    return cursor.rowcount


async def expire_due(conn: AsyncConnection, ttl_seconds: float) -> list[dict[str, Any]]:
    """Queued occurrences older than the TTL, now expired (each by exactly one replica)."""
    now = time.time()
    step = Jsonb([[now, AlertStatus.EXPIRED.value, "ttl"]])
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            f"""UPDATE occurrences SET status = 'expired', reason = 'ttl', finished_at = %s,
                   timeline = timeline || %s
                WHERE status = 'queued' AND enqueued_at < %s
                RETURNING {_COLUMNS}""",
            (now, step, now - ttl_seconds),
        )
        return await cursor.fetchall()


async def prune(conn: AsyncConnection, retention_seconds: float) -> int:
    """Forget finished occurrences (and their approvals) past the retention; how many."""
    horizon = time.time() - retention_seconds
    cursor = await conn.execute(
        """WITH gone AS (DELETE FROM occurrences
                         WHERE finished_at IS NOT NULL AND finished_at < %s
                           AND status NOT IN ('queued', 'running')
                         RETURNING incident_id, occurrence),
                approvals_gone AS (DELETE FROM approvals a USING gone
                                   WHERE a.incident_id = gone.incident_id
                                     AND a.occurrence = gone.occurrence)
           SELECT count(*) FROM gone""",
        (horizon,),
    )
    row = await cursor.fetchone()
    await conn.execute("DELETE FROM token_usage WHERE at < now() - interval '2 hours'")
    return int(row[0]) if row else 0
