"""The PostgreSQL schema of STATE_BACKEND=postgres, created and migrated at startup.

Migrations are numbered and applied in order, each in its own transaction, under a session
advisory lock: replicas that start together wait for the first to finish, then find nothing
left to do. A database at a newer version than this release knows is refused (an older
replica must not run against a schema it does not understand).

What the tables hold (CONTRACT §8):
- `occurrences`: one row per occurrence of an incident: the alert, status and timeline, the
  run's state (tool calls, tokens, transcript, notices for the running agent), its lease,
  outcome and report. The queue is the rows with status `queued`; runs are `running` rows.
- `approvals`: approve mode's proposed writes and their decisions.
- `token_usage`: tokens spent, per turn, for the hourly budget summed over replicas.
- `queue_length`: one row, the number of `queued` occurrences, kept by triggers. Its row
  lock, taken by every change to the queue until its transaction ends, is what makes
  MAX_QUEUE_SIZE exact across replicas.
Retention: finished occurrences older than `RETENTION_DAYS` are deleted (with their
approvals), token usage after two hours; see README "State and retention".
"""

from __future__ import annotations

import logging

from psycopg import AsyncConnection

logger = logging.getLogger(__name__)

MIGRATION_LOCK = 0x5E_A6_E7_01  # pg_advisory_lock key: one migrator at a time

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE occurrences (
        incident_id     text NOT NULL,
        occurrence      integer NOT NULL,
        seq             bigserial,
        service         text,
        priority        text NOT NULL,
        priority_rank   smallint NOT NULL,
        status          text NOT NULL,
        reason          text,
        started_at      timestamptz,
        enqueued_at     double precision NOT NULL,
        finished_at     double precision,
        still_firing    boolean NOT NULL DEFAULT false,
        resolved_upstream boolean NOT NULL DEFAULT false,
        repeats         integer NOT NULL DEFAULT 0,
        trace_id        text NOT NULL,
        alert           jsonb NOT NULL,
        timeline        jsonb NOT NULL DEFAULT '[]',
        notices         jsonb NOT NULL DEFAULT '[]',
        turns           integer NOT NULL DEFAULT 0,
        tokens          jsonb NOT NULL DEFAULT '[0, 0, 0]',
        tool_calls      jsonb NOT NULL DEFAULT '[]',
        transcript      jsonb,
        run_state       jsonb,
        outcome         text,
        report_file     text,
        report          text,
        paged_as        text,
        handoff         boolean NOT NULL DEFAULT false,
        lease_owner     text,
        lease_expires   timestamptz,
        takeovers       integer NOT NULL DEFAULT 0,
        PRIMARY KEY (incident_id, occurrence)
    );
    CREATE INDEX occurrences_queue ON occurrences (priority_rank, seq) WHERE status = 'queued';
    CREATE INDEX occurrences_running ON occurrences (service) WHERE status = 'running';
    CREATE INDEX occurrences_finished ON occurrences (finished_at DESC)
        WHERE finished_at IS NOT NULL;
    CREATE TABLE approvals (
        approval_id     text PRIMARY KEY,
        incident_id     text NOT NULL,
        occurrence      integer NOT NULL,
        tool            text NOT NULL,
        arguments       jsonb NOT NULL,
        reason          text,
        requested_at    double precision NOT NULL,
        expires_at      double precision NOT NULL,
        status          text NOT NULL,
        decided_by      text,
        decided_at      double precision,
        note            text,
        result          text
    );
    CREATE INDEX approvals_pending ON approvals (requested_at) WHERE status = 'pending';
    CREATE INDEX approvals_occurrence ON approvals (incident_id, occurrence);
    CREATE TABLE token_usage (
        at      timestamptz NOT NULL DEFAULT now(),
        tokens  integer NOT NULL
    );
    CREATE INDEX token_usage_at ON token_usage (at);
    """,
    # 2: the queue's length, kept by triggers on every change of a row's queued-ness
    # (counting the queue for each new occurrence took time in proportion to the queue)
    """
    CREATE TABLE queue_length (
        id      integer PRIMARY KEY CHECK (id = 1),
        queued  bigint NOT NULL
    );
    LOCK TABLE occurrences IN SHARE ROW EXCLUSIVE MODE;
    INSERT INTO queue_length SELECT 1, count(*) FROM occurrences WHERE status = 'queued';
    CREATE FUNCTION count_queued() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE queue_length SET queued = queued
            + CASE WHEN TG_OP <> 'DELETE' AND NEW.status = 'queued' THEN 1 ELSE 0 END
            - CASE WHEN TG_OP <> 'INSERT' AND OLD.status = 'queued' THEN 1 ELSE 0 END
        WHERE id = 1;
        RETURN NULL;
    END $$;
    CREATE TRIGGER queued_inserted AFTER INSERT ON occurrences
        FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION count_queued();
    CREATE TRIGGER queued_changed AFTER UPDATE OF status ON occurrences
        FOR EACH ROW WHEN ((OLD.status = 'queued') <> (NEW.status = 'queued'))
        EXECUTE FUNCTION count_queued();
    CREATE TRIGGER queued_deleted AFTER DELETE ON occurrences
        FOR EACH ROW WHEN (OLD.status = 'queued') EXECUTE FUNCTION count_queued();
    """,
)


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer release than this one."""


async def migrate(conn: AsyncConnection) -> int:
    """Bring the schema to this release's version; the version it is at afterwards."""
    await conn.set_autocommit(True)
    await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        cursor = await conn.execute("SELECT max(version) FROM schema_version")
        row = await cursor.fetchone()
        current = (row[0] if row else None) or 0
        if current > len(MIGRATIONS):
            raise SchemaTooNew(
                f"the database schema is at version {current}; this release knows "
                f"{len(MIGRATIONS)}: run a newer release"
            )
        for version in range(current + 1, len(MIGRATIONS) + 1):
            async with conn.transaction():
                await conn.execute(MIGRATIONS[version - 1])
                await conn.execute("INSERT INTO schema_version VALUES (%s)", (version,))
            logger.info("database schema migrated to version %d", version)
        return len(MIGRATIONS)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
