"""The `Store` on PostgreSQL (asyncpg), for several gateway replicas sharing one database.

What sharing needs, and how it is done here:
- Each queued job is dispatched once: `claim` locks the chosen job (and the jobs it overtook)
  with `SELECT ... ORDER BY id FOR UPDATE`, checks it is still queued and marks it submitted (and
  owned) in the same transaction. A second claimer of the same job waits for the first to commit,
  then finds it taken and chooses again; locking in one order means claims never deadlock.
- Webhook deliveries are claimed the same way; idempotency keys rely on the primary key and
  `INSERT ... ON CONFLICT`, so two replicas given the same key store one set of jobs.
- Every committed job change is announced with `NOTIFY` (job id, new and former state); each
  replica `LISTEN`s, re-reads the jobs it hears of and tells its listeners, so live events reach
  subscribers whichever replica they are connected to.
- In-flight jobs carry an owner; `heartbeat` keeps a replica's lease and hands it the jobs of
  replicas whose lease ran out (serialised by an advisory lock, so a job is taken over once).

Its own migrations (`PG_MIGRATIONS`), applied under an advisory lock: replicas may start at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

from gateway.errors import QueueFull
from gateway.jobs import IN_COMFY, Fail, Job, State, StoredImage, Submit, transition
from gateway.scheduling import Candidate
from gateway.storage import (
    DELIVERY_COLUMNS,
    FORGET_REPLICAS_AFTER,
    JOB_COLUMN_COUNT,
    JOB_COLUMNS,
    QUEUE_ORDER,
    ApiKeyRow,
    Attempt,
    Delivery,
    IdempotencyRow,
    ImageRow,
    JobCounts,
    Listener,
    SavedRow,
    WebhookRender,
    candidate_from_row,
    counts_changed,
    job_from_row,
    job_values,
)

log = logging.getLogger(__name__)

PG_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        preset TEXT NOT NULL,
        label TEXT NOT NULL,
        state TEXT NOT NULL,
        params TEXT NOT NULL,
        error TEXT,
        images TEXT NOT NULL DEFAULT '[]',
        created_at DOUBLE PRECISION NOT NULL,
        submitted_at DOUBLE PRECISION,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        attempts INTEGER NOT NULL DEFAULT 0,
        client_reference TEXT,
        metadata TEXT NOT NULL DEFAULT '{}',
        webhook_url TEXT,
        refs TEXT NOT NULL DEFAULT '[]',
        owner TEXT
    );
    CREATE INDEX jobs_live ON jobs (state, seq) WHERE state IN ('queued', 'submitted', 'running');
    CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    );
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE images (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        job_id TEXT NOT NULL REFERENCES jobs (id),
        preset TEXT NOT NULL,
        relative_path TEXT NOT NULL,
        thumb_path TEXT,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX images_by_preset ON images (preset, seq);
    CREATE TABLE idempotency (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (scope, key)
    );
    CREATE TABLE webhook_outbox (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        job_id TEXT NOT NULL,
        event TEXT NOT NULL,
        url TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL,
        next_attempt_at DOUBLE PRECISION
    );
    CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE state = 'pending';
    CREATE INDEX webhook_outbox_job ON webhook_outbox (job_id, seq);
    CREATE TABLE webhook_attempts (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        delivery_id TEXT NOT NULL REFERENCES webhook_outbox (id) ON DELETE CASCADE,
        attempt INTEGER NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        duration DOUBLE PRECISION NOT NULL,
        status_code INTEGER,
        error TEXT
    );
    CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, seq);
    CREATE TABLE saved (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        label TEXT NOT NULL,
        job_id TEXT NOT NULL,
        relative_path TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE replicas (
        id TEXT PRIMARY KEY,
        alive_until DOUBLE PRECISION NOT NULL
    );
    """,
    """
    ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN overtaken INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN passed_at DOUBLE PRECISION;
    CREATE INDEX jobs_queue ON jobs (priority DESC, seq) WHERE state = 'queued';
    ALTER TABLE api_keys ADD COLUMN max_priority INTEGER;
    """,
)

CHANNEL = "gateway_jobs"
"""The NOTIFY channel of job changes."""
_MIGRATION_LOCK = 7_340_001
_QUEUE_LOCK = 7_340_002
_ADOPTION_LOCK = 7_340_003
"""Advisory lock keys: migrating, checking the queue's limit, taking over orphaned jobs."""

if TYPE_CHECKING:
    Connection = PoolConnectionProxy[asyncpg.Record]


def _count(status: str) -> int:
    """Rows touched, from a command status such as `UPDATE 3`."""
    return int(status.rsplit(" ", 1)[-1])


def _placeholders(start: int, count: int) -> str:
    return ", ".join(f"${i}" for i in range(start, start + count))


class PostgresStore:
    """The `Store` on PostgreSQL: a connection pool for statements, one connection for LISTEN."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], listener: asyncpg.Connection[asyncpg.Record], *,
                 webhook: WebhookRender | None = None) -> None:
        self._pool = pool
        self._listener = listener
        self._webhook = webhook
        self._listeners: list[Listener] = []
        self._origin = uuid.uuid4().hex
        """Marks this store's own notifications, which its listeners have heard already."""
        self._heard: dict[str, tuple[State, State | None]] = {}
        """Jobs other processes changed, not yet re-read: the newest state, the earliest before."""
        self._carried: dict[str, State | None] = {}
        """Former states of jobs re-read in a newer state than notified, kept for the newer notification."""
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, *, webhook: WebhookRender | None = None, pool_size: int = 10) -> PostgresStore:
        """Connect (and migrate) the database at `url` (postgresql://user:password@host:port/name)."""
        pool: asyncpg.Pool[asyncpg.Record] = await asyncpg.create_pool(url, min_size=1, max_size=pool_size)
        try:
            async with pool.acquire() as conn:
                await cls._migrate(conn)
            listener: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(url)
        except BaseException:
            await pool.close()
            raise
        store = cls(pool, listener, webhook=webhook)
        await listener.add_listener(CHANNEL, store._on_notify)
        return store

    @staticmethod
    async def _migrate(conn: Connection) -> None:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            version = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
            if version > len(PG_MIGRATIONS):
                raise RuntimeError(f"database schema version {version} is newer than this gateway knows")
            for number, script in enumerate(PG_MIGRATIONS[version:], start=version + 1):
                async with conn.transaction():
                    await conn.execute(script)
                    await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", number)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        with contextlib.suppress(Exception):  # the server may be gone already
            await self._listener.remove_listener(CHANNEL, self._on_notify)
        await self._listener.close()
        await self._pool.close()

    # --- change notifications ---------------------------------------------------------------

    def listen(self, listener: Listener) -> None:
        """Call `listener` after every committed change of jobs, by this process or another."""
        self._listeners.append(listener)

    def _changed(self, changes: list[tuple[Job, State | None]]) -> None:
        for listener in self._listeners:
            listener(changes)

    async def _notify(self, db: Connection, changes: Sequence[tuple[Job, State | None]]) -> None:
        """Announce changes; NOTIFY is delivered when (and only if) the transaction commits."""
        payloads = [json.dumps({"id": job.id, "state": job.state.value, "before": before and before.value,
                                "origin": self._origin}) for job, before in changes]
        if payloads:
            await db.execute("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", CHANNEL, payloads)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            note = json.loads(str(payload))
            job_id, state = str(note["id"]), State(note["state"])
            before = State(note["before"]) if note["before"] else None
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed job notification: %r", payload)
            return
        if note.get("origin") == self._origin:
            return
        if job_id in self._carried:
            before = self._carried.pop(job_id)
        earlier = self._heard.get(job_id)
        self._heard[job_id] = (state, earlier[1] if earlier else before)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_heard(), name="job-notifications")

    async def _read_heard(self) -> None:
        """Re-read the jobs other processes changed and tell the listeners. A job read in a newer
        state than its notification said is told of with that state's own notification."""
        while self._heard:
            heard, self._heard = self._heard, {}
            try:
                jobs = await self._get_many(list(heard))
            except Exception:
                log.exception("reading jobs changed by another gateway failed")
                continue
            changes = []
            for job in jobs:
                state, before = heard[job.id]
                if job.state is state:
                    changes.append((job, before))
                elif job.id in self._heard:  # the newer notification came meanwhile
                    self._heard[job.id] = (self._heard[job.id][0], before)
                else:
                    self._carried[job.id] = before
            if changes:
                self._changed(changes)

    async def _get_many(self, job_ids: list[str]) -> list[Job]:
        async with self._pool.acquire() as db:
            rows = await db.fetch(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ANY($1::text[])", job_ids)
        return [job_from_row(r) for r in rows]

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        async with self._pool.acquire() as db, db.transaction():
            yield db

    # --- jobs -------------------------------------------------------------------------------

    async def add_jobs(self, jobs: Sequence[Job], *, max_queued: int | None = None,
                       idempotency: IdempotencyRow | None = None, forget_before: float = 0.0,
                       ) -> IdempotencyRow | None:
        """Insert new jobs in one transaction: all of them are stored, or none.

        With `max_queued`, raises QueueFull instead when the queue would then hold more (checked
        under a lock, so replicas admitting jobs at once cannot overfill it together).
        With `idempotency`, the row is stored with the jobs; but if a row for its scope and key
        created at or after `forget_before` exists, nothing is inserted and that row is returned.
        """
        rows = [job_values(j) for j in jobs]
        async with self._transaction() as db:
            if idempotency is not None:
                earlier = await self._claim_idempotency(db, idempotency, forget_before)
                if earlier is not None:
                    return earlier
            if max_queued is not None:
                await db.execute("SELECT pg_advisory_xact_lock($1)", _QUEUE_LOCK)
                queued = int(await db.fetchval("SELECT count(*) FROM jobs WHERE state='queued'") or 0)
                if queued + len(rows) > max_queued:
                    raise QueueFull(
                        f"the queue is full ({queued} of {max_queued} jobs waiting); {len(rows)} more do not fit",
                        retry_after=10, queued=queued, limit=max_queued,
                    )
            await db.executemany(
                f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({_placeholders(1, JOB_COLUMN_COUNT)})", rows)
            await self._notify(db, [(j, None) for j in jobs])
        self._changed([(j, None) for j in jobs])
        return None

    @staticmethod
    async def _claim_idempotency(db: Connection, row: IdempotencyRow, forget_before: float) -> IdempotencyRow | None:
        """Store the key's row (replacing a forgotten one); if a live row holds the key, return
        it. A second replica inserting the same key waits on the first's row until it commits."""
        stored = await db.fetchval(
            "INSERT INTO idempotency (scope, key, request_hash, status, body, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, key) DO UPDATE SET "
            "request_hash=EXCLUDED.request_hash, status=EXCLUDED.status, body=EXCLUDED.body, "
            "created_at=EXCLUDED.created_at WHERE idempotency.created_at < $7 RETURNING true",
            row.scope, row.key, row.request_hash, row.status, row.body, row.created_at, forget_before,
        )
        if stored:
            return None
        found = await db.fetchrow(
            "SELECT scope, key, request_hash, status, body, created_at FROM idempotency WHERE scope=$1 AND key=$2 "
            "FOR UPDATE", row.scope, row.key,
        )
        if found is None:  # forgotten in between: ours now
            return await PostgresStore._claim_idempotency(db, row, forget_before)
        return IdempotencyRow(*found)

    async def save(self, job: Job, *, expect: State | None = None) -> bool:
        """Write a job's changed state (after a transition).

        With `expect`, only if the stored job is still in that state (compare-and-set); returns
        whether it was written.
        """
        values = job_values(job)
        async with self._transaction() as db:
            found = await db.fetchval("SELECT state FROM jobs WHERE id=$1 FOR UPDATE", job.id)
            before = State(found) if found is not None else None
            if before is None or (expect is not None and before is not expect):
                return False
            await db.execute(
                "UPDATE jobs SET state=$1, error=$2, images=$3, submitted_at=$4, started_at=$5, finished_at=$6, "
                "attempts=$7, params=$8 WHERE id=$9",
                values[3], values[5], values[6], values[8], values[9], values[10], values[11], values[4], job.id,
            )
            if before is not job.state:
                await self._enqueue(db, job, before)
            if job.state is State.DONE:  # the gallery sees a job's images when it is done
                await db.executemany(
                    "INSERT INTO images (id, job_id, preset, relative_path, thumb_path, created_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                    [(f"{job.id}-{i}", job.id, job.preset, image.relative_path, image.thumb_path,
                      job.finished_at or time.time()) for i, image in enumerate(job.images)],
                )
            await self._notify(db, [(job, before)])
        self._changed([(job, before)])
        return True

    async def queue_window(self, limit: int) -> list[Candidate]:
        """The first `limit` waiting jobs in base order, as much as the scheduler needs of them."""
        async with self._pool.acquire() as db:
            rows = await db.fetch(
                "SELECT id, priority, CASE WHEN jsonb_typeof(params::jsonb -> 'checkpoint') = 'string' "
                "THEN params::jsonb ->> 'checkpoint' END, overtaken, passed_at "
                f"FROM jobs WHERE state='queued' {QUEUE_ORDER} LIMIT $1", limit)
        return [candidate_from_row(r) for r in rows]

    async def mark_passed(self, job_ids: Sequence[str], at: float) -> None:
        """Record that waiting jobs were overtaken once more (first at `at`), so the fairness
        bound holds across restarts."""
        async with self._transaction() as db:
            await db.execute("SELECT 1 FROM jobs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE", list(job_ids))
            await self._mark_passed(db, job_ids, at)

    @staticmethod
    async def _mark_passed(db: Connection, job_ids: Sequence[str], at: float) -> None:
        if job_ids:
            await db.execute(
                "UPDATE jobs SET overtaken = overtaken + 1, passed_at = coalesce(passed_at, $1) "
                "WHERE id = ANY($2::text[]) AND state='queued'", at, list(job_ids))

    async def claim(self, job_id: str, at: float, owner: str, *, passed: Sequence[Candidate] = ()) -> Job | None:
        """Take the queued job `job_id`: marked submitted and owned by `owner`, and the jobs it
        overtook counted, in one transaction (None: taken, or `passed` is stale; see `Store`).
        The rows are locked first, in id order (so two claims never wait on each other in a
        circle); states and counts are read after the lock, so of two replicas claiming one job,
        or passing one job, the second finds it taken or counted and chooses again."""
        passed_ids = [c.id for c in passed]
        async with self._transaction() as db:
            await db.execute("SELECT 1 FROM jobs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
                             [job_id, *passed_ids])
            row = await db.fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id=$1 AND state='queued'", job_id)
            counts = await db.fetch("SELECT id, overtaken FROM jobs WHERE id = ANY($1::text[]) AND state='queued'",
                                    passed_ids)
            if row is None or counts_changed(passed, counts):
                return None
            job = transition(job_from_row(row), Submit(at))
            await db.execute("UPDATE jobs SET state=$1, submitted_at=$2, attempts=$3, owner=$4 WHERE id=$5",
                             job.state.value, job.submitted_at, job.attempts, owner, job.id)
            await self._mark_passed(db, passed_ids, at)
            await self._enqueue(db, job, State.QUEUED)
            await self._notify(db, [(job, State.QUEUED)])
        self._changed([(job, State.QUEUED)])
        return job

    async def heartbeat(self, owner: str, now: float, lease: float) -> list[Job]:
        """Record that `owner` is alive until `now + lease`; hand it the jobs in ComfyUI whose
        owner's lease ran out (or that have none). Returns the jobs it took over."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO replicas (id, alive_until) VALUES ($1, $2) "
                "ON CONFLICT (id) DO UPDATE SET alive_until=EXCLUDED.alive_until", owner, now + lease,
            )
            await db.execute("DELETE FROM replicas WHERE alive_until < $1", now - FORGET_REPLICAS_AFTER)
        async with self._transaction() as db:  # a fresh snapshot, after the other takers' commits
            await db.execute("SELECT pg_advisory_xact_lock($1)", _ADOPTION_LOCK)
            rows = await db.fetch(
                f"UPDATE jobs SET owner=$1 WHERE state IN ('submitted', 'running') AND owner IS DISTINCT FROM $1 "
                "AND NOT EXISTS (SELECT 1 FROM replicas r WHERE r.id = jobs.owner AND r.alive_until >= $2) "
                f"RETURNING seq, {JOB_COLUMNS}", owner, now,
            )
        return [job_from_row(tuple(r)[1:]) for r in sorted(rows, key=lambda r: int(r[0]))]

    async def in_comfy(self, owner: str | None = None) -> list[Job]:
        """Jobs the store believes ComfyUI has (submitted or running), oldest first; with `owner`,
        only that owner's."""
        async with self._pool.acquire() as db:
            rows = await db.fetch(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE state = ANY($1::text[]) AND ($2::text IS NULL OR owner = $2) "
                "ORDER BY seq", [s.value for s in IN_COMFY], owner,
            )
        return [job_from_row(r) for r in rows]

    async def fail_queued(self, error: str, at: float) -> int:
        """Fail every job waiting in the queue at once (the bulk form of `jobs.Fail`); jobs being
        claimed at this moment are left to their claimer."""
        async with self._transaction() as db:
            rows = await db.fetch(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE state='queued' ORDER BY seq FOR UPDATE SKIP LOCKED")
            failed = [transition(job_from_row(r), Fail(at, error)) for r in rows]
            await db.execute("UPDATE jobs SET state='failed', error=$1, finished_at=$2 WHERE id = ANY($3::text[])",
                             error, at, [j.id for j in failed])
            for job in failed:
                await self._enqueue(db, job, State.QUEUED)
            await self._notify(db, [(job, State.QUEUED) for job in failed])
        self._changed([(job, State.QUEUED) for job in failed])
        return len(failed)

    async def _enqueue(self, db: Connection, job: Job, before: State) -> None:
        rendered = self._webhook(job, before) if self._webhook and job.webhook_url else None
        if rendered is None or job.webhook_url is None:
            return
        event, payload = rendered
        now = time.time()
        await db.execute(
            f"INSERT INTO webhook_outbox ({DELIVERY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7)",
            f"msg_{uuid.uuid4().hex}", job.id, event, job.webhook_url, payload, now, now,
        )

    async def check_writable(self) -> None:
        """Raise if the database cannot be written (unreachable, read-only, out of space)."""
        async with self._transaction() as db:
            await db.execute("INSERT INTO meta (key, value) VALUES ('last_ready_check', now()::text) "
                             "ON CONFLICT (key) DO UPDATE SET value=EXCLUDED.value")

    async def get(self, job_id: str) -> Job | None:
        async with self._pool.acquire() as db:
            row = await db.fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id=$1", job_id)
        return job_from_row(row) if row else None

    async def next_queued(self) -> Job | None:
        """The first job of the gateway's queue in base order (priority, then first come)."""
        async with self._pool.acquire() as db:
            row = await db.fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs WHERE state='queued' {QUEUE_ORDER} LIMIT 1")
        return job_from_row(row) if row else None

    async def count_queued(self) -> int:
        async with self._pool.acquire() as db:
            return int(await db.fetchval("SELECT count(*) FROM jobs WHERE state='queued'") or 0)

    async def live_counts(self) -> dict[State, int]:
        """Jobs in each live state (queued, submitted, running); the `jobs_live` index answers it."""
        async with self._pool.acquire() as db:
            rows = await db.fetch(
                "SELECT state, count(*) FROM jobs WHERE state IN ('queued', 'submitted', 'running') GROUP BY state")
        return {State(r[0]): int(r[1]) for r in rows}

    async def queue_positions(self, job_ids: Sequence[str]) -> dict[str, int]:
        """1-based places of waiting jobs: those in ComfyUI's queue first (in order of
        submission), then the gateway's queue in base order; jobs that are not waiting are left out."""
        if not job_ids:
            return {}
        async with self._pool.acquire() as db:
            rows = await db.fetch(
                "SELECT j.id, CASE WHEN j.state = 'submitted' "
                "THEN (SELECT count(*) FROM jobs w WHERE w.state = 'submitted' AND w.seq <= j.seq) "
                "ELSE (SELECT count(*) FROM jobs w WHERE w.state = 'submitted') "
                "+ (SELECT count(*) FROM jobs w WHERE w.state = 'queued' "
                "AND (w.priority > j.priority OR (w.priority = j.priority AND w.seq <= j.seq))) "
                "END FROM jobs j WHERE j.id = ANY($1::text[]) AND j.state IN ('queued', 'submitted')",
                list(job_ids),
            )
        return {str(r[0]): int(r[1]) for r in rows}

    async def counts(self, since: float) -> JobCounts:
        """Jobs waiting and running now, and done and failed since `since`."""
        async with self._pool.acquire() as db:
            live = await db.fetchrow(
                "SELECT count(*) FILTER (WHERE state IN ('queued', 'submitted')), "
                "count(*) FILTER (WHERE state = 'running') FROM jobs WHERE state IN ('queued', 'submitted', 'running')")
            finished = await db.fetchrow(
                "SELECT count(*) FILTER (WHERE state = 'done'), count(*) FILTER (WHERE state = 'failed') FROM jobs "
                "WHERE finished_at >= $1", since)
        a, b = (live[0], live[1]) if live else (0, 0)
        c, d = (finished[0], finished[1]) if finished else (0, 0)
        return JobCounts(int(a or 0), int(b or 0), int(c or 0), int(d or 0))

    async def recent_durations(self, limit: int) -> list[float]:
        """Run times (start to finish) of the latest done jobs, newest first."""
        async with self._pool.acquire() as db:
            rows = await db.fetch(
                "SELECT finished_at - started_at FROM jobs WHERE finished_at IS NOT NULL AND state = 'done' "
                "AND started_at IS NOT NULL ORDER BY finished_at DESC LIMIT $1", limit)
        return [float(r[0]) for r in rows]

    async def images(self, *, limit: int, offset: int, preset: str | None = None) -> tuple[list[ImageRow], int]:
        """Result images, newest first, and how many there are in all."""
        where = "WHERE ($1::text IS NULL OR i.preset = $1)"
        columns = ", ".join(f"j.{c.strip()}" for c in JOB_COLUMNS.split(","))
        async with self._pool.acquire() as db:
            total = int(await db.fetchval(f"SELECT count(*) FROM images i {where}", preset) or 0)
            rows = await db.fetch(
                f"SELECT i.id, i.relative_path, i.thumb_path, i.created_at, {columns} FROM images i "
                f"JOIN jobs j ON j.id = i.job_id {where} ORDER BY i.seq DESC LIMIT $2 OFFSET $3",
                preset, limit, offset,
            )
        found = []
        for r in rows:
            job = job_from_row(tuple(r)[4:])
            image = next((i for i in job.images if i.relative_path == r[1]), StoredImage(r[1], thumb_path=r[2]))
            found.append(ImageRow(id=str(r[0]), job=job, image=image, created_at=float(r[3])))
        return found, total

    async def meta_value(self, key: str, default: str) -> str:
        """A value stored once and kept: the first caller's `default` wins for good."""
        async with self._transaction() as db:
            await db.execute("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", key, default)
            value = await db.fetchval("SELECT value FROM meta WHERE key=$1", key)
        return str(value) if value is not None else default

    async def live_references(self) -> set[str]:
        """Reference image names that jobs not yet finished still need."""
        async with self._pool.acquire() as db:
            rows = await db.fetch(
                "SELECT refs FROM jobs WHERE state IN ('queued', 'submitted', 'running') AND refs <> '[]'")
        return {str(name) for row in rows for name in json.loads(row[0])}

    # --- API keys ---------------------------------------------------------------------------

    async def add_key(self, row: ApiKeyRow) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO api_keys (id, name, hash, created_at, revoked_at, max_priority) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                row.id, row.name, row.hash, row.created_at, row.revoked_at, row.max_priority,
            )

    async def list_keys(self) -> list[ApiKeyRow]:
        async with self._pool.acquire() as db:
            rows = await db.fetch(
                "SELECT id, name, hash, created_at, revoked_at, max_priority FROM api_keys ORDER BY created_at")
        return [ApiKeyRow(*r) for r in rows]

    async def revoke_key(self, id_or_name: str, at: float) -> int:
        """Revoke keys by id or name; returns how many were revoked."""
        async with self._transaction() as db:
            status = await db.execute(
                "UPDATE api_keys SET revoked_at=$1 WHERE (id=$2 OR name=$2) AND revoked_at IS NULL", at, id_or_name)
        return _count(status)

    async def active_keys(self) -> dict[str, int | None]:
        """Digests of the keys not revoked, each with its maximum priority (None: the default)."""
        async with self._pool.acquire() as db:
            rows = await db.fetch(
                "SELECT hash, max_priority FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at")
        return {str(r[0]): r[1] for r in rows}

    # --- idempotency ------------------------------------------------------------------------

    async def forget_idempotency(self, before: float) -> int:
        """Drop idempotency rows created before `before`; returns how many."""
        async with self._transaction() as db:
            return _count(await db.execute("DELETE FROM idempotency WHERE created_at<$1", before))

    # --- webhook outbox ---------------------------------------------------------------------

    async def claim_deliveries(self, now: float, lease_until: float, limit: int = 100) -> list[Delivery]:
        """Pending deliveries due at `now`, oldest first, each moved to `lease_until` in the same
        transaction. Rows another replica is claiming at this moment are skipped, not waited for."""
        async with self._transaction() as db:
            rows = await db.fetch(
                f"SELECT {DELIVERY_COLUMNS} FROM webhook_outbox WHERE state='pending' AND next_attempt_at<=$1 "
                "ORDER BY next_attempt_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED", now, limit,
            )
            due = [Delivery(*r) for r in rows]
            await db.execute("UPDATE webhook_outbox SET next_attempt_at=$1 WHERE id = ANY($2::text[])",
                             lease_until, [d.id for d in due])
        return due

    async def next_delivery_at(self) -> float | None:
        """When the earliest pending delivery is due (None: none is pending)."""
        async with self._pool.acquire() as db:
            value = await db.fetchval("SELECT min(next_attempt_at) FROM webhook_outbox WHERE state='pending'")
        return float(value) if value is not None else None

    async def record_attempt(self, attempt: Attempt, *, delivered: bool, retry_at: float | None) -> None:
        """Log one attempt and move its delivery on: delivered, due again at `retry_at`, or given up."""
        state = "delivered" if delivered else "pending" if retry_at is not None else "failed"
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO webhook_attempts (delivery_id, attempt, at, duration, status_code, error) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                attempt.delivery_id, attempt.attempt, attempt.at, attempt.duration, attempt.status_code, attempt.error,
            )
            await db.execute(
                "UPDATE webhook_outbox SET state=$1, attempts=$2, next_attempt_at=$3 WHERE id=$4",
                state, attempt.attempt, retry_at if state == "pending" else None, attempt.delivery_id,
            )

    async def deliveries_of(self, job_id: str) -> list[tuple[Delivery, list[Attempt]]]:
        """A job's deliveries, oldest first, each with its attempts."""
        async with self._pool.acquire() as db:
            deliveries = [Delivery(*r) for r in await db.fetch(
                f"SELECT {DELIVERY_COLUMNS} FROM webhook_outbox WHERE job_id=$1 ORDER BY seq", job_id)]
            attempts = await db.fetch(
                "SELECT delivery_id, attempt, at, duration, status_code, error FROM webhook_attempts "
                "WHERE delivery_id = ANY($1::text[]) ORDER BY seq", [d.id for d in deliveries])
        by_delivery: dict[str, list[Attempt]] = {d.id: [] for d in deliveries}
        for row in attempts:
            by_delivery[row[0]].append(Attempt(*row))
        return [(d, by_delivery[d.id]) for d in deliveries]

    # --- saved results ----------------------------------------------------------------------

    async def add_saved(self, row: SavedRow) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO saved (id, label, job_id, relative_path, created_at) VALUES ($1, $2, $3, $4, $5)",
                row.id, row.label, row.job_id, row.relative_path, row.created_at,
            )

    async def get_saved(self, saved_id: str) -> SavedRow | None:
        async with self._pool.acquire() as db:
            row = await db.fetchrow(
                "SELECT id, label, job_id, relative_path, created_at FROM saved WHERE id=$1", saved_id)
        return SavedRow(*row) if row else None

    async def list_saved(self, limit: int, offset: int) -> tuple[list[SavedRow], int]:
        """A page of saved results, newest first, and how many there are in all."""
        async with self._pool.acquire() as db:
            rows = [SavedRow(*r) for r in await db.fetch(
                "SELECT id, label, job_id, relative_path, created_at FROM saved ORDER BY seq DESC LIMIT $1 OFFSET $2",
                limit, offset)]
            total = await db.fetchval("SELECT count(*) FROM saved")
        return rows, int(total or 0)

    async def delete_saved(self, saved_id: str) -> SavedRow | None:
        """Remove a saved result's row; returns it (None if there was none)."""
        async with self._transaction() as db:
            row = await db.fetchrow(
                "DELETE FROM saved WHERE id=$1 RETURNING id, label, job_id, relative_path, created_at", saved_id)
        return SavedRow(*row) if row else None

