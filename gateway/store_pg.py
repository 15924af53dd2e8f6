"""The `Store` on PostgreSQL (asyncpg), for several gateway replicas sharing one database.

What sharing needs, and where it is done:
- Each queued job is dispatched once, and in-flight jobs carry an owner with a lease
  (`gateway.store_pg_queue`).
- Webhook deliveries are claimed with `SKIP LOCKED`; idempotency keys rely on the primary key and
  `INSERT ... ON CONFLICT`, so two replicas given the same key store one set of jobs
  (`gateway.store_pg_records`, `add_jobs` here).
- Every committed job change is announced with `NOTIFY`; each replica `LISTEN`s, re-reads the
  jobs it hears of and tells its listeners, so live events reach subscribers whichever replica
  they are connected to. The LISTEN connection is opened again when it drops, and what was missed
  meanwhile is re-read (`gateway.store_pg_notify`).

Its own migrations (`gateway.store_pg_schema`), applied under an advisory lock: replicas may start at once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

import asyncpg

from gateway.errors import QueueFull
from gateway.jobs import Job, State, StoredImage
from gateway.storage import (
    JOB_COLUMN_COUNT,
    JOB_COLUMNS,
    IdempotencyRow,
    ImageRow,
    JobCounts,
    Listener,
    WebhookRender,
    job_from_row,
    job_values,
)
from gateway.store_pg_notify import CHANNEL, ChangeFeed
from gateway.store_pg_queue import PgQueue
from gateway.store_pg_records import PgRecords
from gateway.store_pg_schema import PG_MIGRATIONS, migrate

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection = PoolConnectionProxy[asyncpg.Record]

__all__ = ["CHANNEL", "PG_MIGRATIONS", "PostgresStore"]

_QUEUE_LOCK = 7_340_002
"""Advisory lock key held while checking the queue's limit."""


def _placeholders(start: int, count: int) -> str:
    return ", ".join(f"${i}" for i in range(start, start + count))


class PostgresStore(PgQueue, PgRecords):
    """The `Store` on PostgreSQL: a connection pool for statements, one connection for LISTEN."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], *, url: str, webhook: WebhookRender | None = None,
                 check_every: float = 5.0) -> None:
        self._pool = pool
        self._webhook = webhook
        self._listeners: list[Listener] = []
        self._origin = uuid.uuid4().hex
        self._feed = ChangeFeed(url=url, origin=self._origin, read_jobs=self._get_many, read_since=self._read_since,
                                tell=self._changed, check_every=check_every)

    @classmethod
    async def open(cls, url: str, *, webhook: WebhookRender | None = None, pool_size: int = 10,
                   check_every: float = 5.0) -> PostgresStore:
        """Connect (and migrate) the database at `url` (postgresql://user:password@host:port/name).
        `check_every`: seconds between checks that the LISTEN connection is alive."""
        pool: asyncpg.Pool[asyncpg.Record] = await asyncpg.create_pool(url, min_size=1, max_size=pool_size)
        store = cls(pool, url=url, webhook=webhook, check_every=check_every)
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
            await store._feed.start()
        except BaseException:
            await pool.close()
            raise
        return store

    async def close(self) -> None:
        await self._feed.close()
        await self._pool.close()

    @property
    def listening(self) -> bool:
        """Whether the LISTEN connection is up (it is opened again when it drops)."""
        return self._feed.connected

    # --- change notifications ---------------------------------------------------------------

    def listen(self, listener: Listener) -> None:
        """Call `listener` after every committed change of jobs, by this process or another."""
        self._listeners.append(listener)

    def _changed(self, changes: list[tuple[Job, State | None]]) -> None:
        self._feed.remember(changes)
        for listener in self._listeners:
            listener(changes)

    async def _get_many(self, job_ids: list[str]) -> list[Job]:
        async with self._pool.acquire() as db:
            rows = await db.fetch(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ANY($1::text[])", job_ids)
        return [job_from_row(r) for r in rows]

    async def _read_since(self, since: float) -> list[Job]:
        """Jobs live now, or finished at or after `since`."""
        async with self._pool.acquire() as db:
            rows = await db.fetch(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ('queued', 'submitted', 'running') "
                "UNION ALL "
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE finished_at >= $1 "
                "AND state NOT IN ('queued', 'submitted', 'running')", since)
        return [job_from_row(r) for r in rows]

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

    async def get(self, job_id: str) -> Job | None:
        async with self._pool.acquire() as db:
            row = await db.fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id=$1", job_id)
        return job_from_row(row) if row else None

    async def live_counts(self) -> dict[State, int]:
        """Jobs in each live state (queued, submitted, running); the `jobs_live` index answers it."""
        async with self._pool.acquire() as db:
            rows = await db.fetch(
                "SELECT state, count(*) FROM jobs WHERE state IN ('queued', 'submitted', 'running') GROUP BY state")
        return {State(r[0]): int(r[1]) for r in rows}

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

    async def live_references(self) -> set[str]:
        """Reference image names that jobs not yet finished still need."""
        async with self._pool.acquire() as db:
            rows = await db.fetch(
                "SELECT refs FROM jobs WHERE state IN ('queued', 'submitted', 'running') AND refs <> '[]'")
        return {str(name) for row in rows for name in json.loads(row[0])}
