"""The `Store` on SQLite (aiosqlite), the embedded default for one gateway process. Owns its schema
and migrations.

WAL mode with `synchronous=FULL`: a job is on disk before its 202 answer goes out, and a crash of
the process or the machine loses nothing that was acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

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

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        preset TEXT NOT NULL,
        label TEXT NOT NULL,
        state TEXT NOT NULL,
        params TEXT NOT NULL,
        error TEXT,
        images TEXT NOT NULL DEFAULT '[]',
        created_at REAL NOT NULL,
        submitted_at REAL,
        started_at REAL,
        finished_at REAL,
        attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX jobs_live ON jobs (state, seq) WHERE state IN ('queued', 'submitted', 'running');
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE images (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        job_id TEXT NOT NULL REFERENCES jobs (id),
        preset TEXT NOT NULL,
        relative_path TEXT NOT NULL,
        thumb_path TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX images_by_preset ON images (preset, seq);
    INSERT INTO images (id, job_id, preset, relative_path, thumb_path, created_at)
        SELECT jobs.id || '-' || img.key, jobs.id, jobs.preset, json_extract(img.value, '$.relative_path'),
               json_extract(img.value, '$.thumb_path'), jobs.finished_at
        FROM jobs, json_each(jobs.images) AS img
        WHERE jobs.state = 'done' ORDER BY jobs.finished_at, img.key;
    CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
    """,
    """
    ALTER TABLE jobs ADD COLUMN client_reference TEXT;
    ALTER TABLE jobs ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE jobs ADD COLUMN webhook_url TEXT;
    ALTER TABLE jobs ADD COLUMN refs TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE idempotency (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (scope, key)
    );
    CREATE TABLE webhook_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        job_id TEXT NOT NULL,
        event TEXT NOT NULL,
        url TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        next_attempt_at REAL
    );
    CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE state = 'pending';
    CREATE INDEX webhook_outbox_job ON webhook_outbox (job_id, seq);
    CREATE TABLE webhook_attempts (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id TEXT NOT NULL REFERENCES webhook_outbox (id) ON DELETE CASCADE,
        attempt INTEGER NOT NULL,
        at REAL NOT NULL,
        duration REAL NOT NULL,
        status_code INTEGER,
        error TEXT
    );
    CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, seq);
    CREATE TABLE saved (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        label TEXT NOT NULL,
        job_id TEXT NOT NULL,
        relative_path TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    """
    ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN overtaken INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN passed_at REAL;
    CREATE INDEX jobs_queue ON jobs (priority DESC, seq) WHERE state = 'queued';
    ALTER TABLE api_keys ADD COLUMN max_priority INTEGER;
    """,
    """
    ALTER TABLE jobs ADD COLUMN owner TEXT;
    CREATE TABLE replicas (
        id TEXT PRIMARY KEY,
        alive_until REAL NOT NULL
    );
    """,
    # SQLite uses a partial index only when the query repeats its condition: `state = 'queued'`
    # scanned the whole table (every job ever stored) for each queue count and next job. With a
    # plain index on state, the queue window's index must lead with state too, or it gets sorted.
    """
    DROP INDEX jobs_live;
    CREATE INDEX jobs_state ON jobs (state, seq);
    DROP INDEX jobs_queue;
    CREATE INDEX jobs_queue ON jobs (state, priority DESC, seq);
    """,
)


class SqliteStore:
    """The `Store` on SQLite. One connection; aiosqlite runs its statements in order on its own thread.

    Writes go through `_transaction()`, one at a time: on a shared connection, two coroutines'
    statements would otherwise land in one transaction, and one's rollback would undo the other.
    """

    def __init__(self, db: aiosqlite.Connection, *, webhook: WebhookRender | None = None) -> None:
        self._db = db
        self._write_lock = asyncio.Lock()
        self._webhook = webhook
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        """Call `listener` after every committed change of jobs (never inside a transaction)."""
        self._listeners.append(listener)

    def _changed(self, changes: list[tuple[Job, State | None]]) -> None:
        for listener in self._listeners:
            listener(changes)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            try:
                yield self._db
            except BaseException:
                await self._db.rollback()
                raise
            await self._db.commit()

    @classmethod
    async def open(cls, path: Path, *, webhook: WebhookRender | None = None) -> SqliteStore:
        """Open (and migrate) the database. With `webhook`, saving a job that has a webhook URL
        writes the outbox row `webhook` asks for in the same transaction as the job's new state."""
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=5000")
            await cls._migrate(db)
        except BaseException:
            await db.close()
            raise
        return cls(db, webhook=webhook)

    @staticmethod
    async def _migrate(db: aiosqlite.Connection) -> None:
        async with db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > len(MIGRATIONS):
            raise RuntimeError(f"database schema version {version} is newer than this gateway knows")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")

    async def close(self) -> None:
        await self._db.close()

    # --- jobs -------------------------------------------------------------------------------

    async def add_jobs(self, jobs: Sequence[Job], *, max_queued: int | None = None,
                       idempotency: IdempotencyRow | None = None, forget_before: float = 0.0,
                       ) -> IdempotencyRow | None:
        """Insert new jobs in one transaction: all of them are stored, or none.

        With `max_queued`, raises QueueFull instead when the queue would then hold more.
        With `idempotency`, the row is stored with the jobs; but if a row for its scope and key
        created at or after `forget_before` exists, nothing is inserted and that row is returned.
        """
        rows = [job_values(j) for j in jobs]
        placeholders = ", ".join("?" * JOB_COLUMN_COUNT)
        async with self._transaction() as db:
            if idempotency is not None:  # the insert comes first: it takes the write lock
                cur = await db.execute(
                    "INSERT INTO idempotency (scope, key, request_hash, status, body, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET "
                    "request_hash=excluded.request_hash, status=excluded.status, body=excluded.body, "
                    "created_at=excluded.created_at WHERE idempotency.created_at < ?",
                    (idempotency.scope, idempotency.key, idempotency.request_hash, idempotency.status,
                     idempotency.body, idempotency.created_at, forget_before),
                )
                if cur.rowcount != 1:  # a live row holds the key
                    async with db.execute(
                        "SELECT scope, key, request_hash, status, body, created_at FROM idempotency "
                        "WHERE scope=? AND key=?", (idempotency.scope, idempotency.key),
                    ) as found:
                        row = await found.fetchone()
                    if row is not None:
                        return IdempotencyRow(*row)
            if max_queued is not None:
                async with db.execute("SELECT count(*) FROM jobs WHERE state='queued'") as cur:
                    row = await cur.fetchone()
                queued = int(row[0]) if row else 0
                if queued + len(rows) > max_queued:
                    raise QueueFull(
                        f"the queue is full ({queued} of {max_queued} jobs waiting); {len(rows)} more do not fit",
                        retry_after=10, queued=queued, limit=max_queued,
                    )
            await db.executemany(f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({placeholders})", rows)
        self._changed([(j, None) for j in jobs])
        return None

    async def save(self, job: Job, *, expect: State | None = None) -> bool:
        """Write a job's changed state (after a transition).

        With `expect`, only if the stored job is still in that state (compare-and-set); returns
        whether it was written.
        """
        values = job_values(job)
        sql = ("UPDATE jobs SET state=?, error=?, images=?, submitted_at=?, started_at=?, finished_at=?, "
               "attempts=?, params=? WHERE id=?")
        args: tuple[Any, ...] = (values[3], values[5], values[6], values[8], values[9], values[10], values[11],
                                 values[4], job.id)
        if expect is not None:
            sql += " AND state=?"
            args += (expect.value,)
        async with self._transaction() as db:
            before = await self._state_of(db, job.id) if self._webhook and job.webhook_url else None
            cur = await db.execute(sql, args)
            written = cur.rowcount == 1
            if written and before is not None and before is not job.state:
                await self._enqueue(db, job, before)
            if written and job.state is State.DONE:  # the gallery sees a job's images when it is done
                await db.executemany(
                    "INSERT OR IGNORE INTO images (id, job_id, preset, relative_path, thumb_path, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(f"{job.id}-{i}", job.id, job.preset, image.relative_path, image.thumb_path,
                      job.finished_at or time.time()) for i, image in enumerate(job.images)],
                )
        if written:
            self._changed([(job, expect)])
        return written

    async def fail_queued(self, error: str, at: float) -> int:
        """Fail every job waiting in the queue at once (the bulk form of `jobs.Fail`)."""
        async with self._transaction() as db:
            async with db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE state='queued' ORDER BY seq") as cur:
                waiting = [job_from_row(r) for r in await cur.fetchall()]
            await db.execute("UPDATE jobs SET state='failed', error=?, finished_at=? WHERE state='queued'",
                             (error, at))
            failed = [transition(job, Fail(at, error)) for job in waiting]
            if self._webhook:
                for job in failed:
                    if job.webhook_url:
                        await self._enqueue(db, job, State.QUEUED)
        self._changed([(job, State.QUEUED) for job in failed])
        return len(failed)

    @staticmethod
    async def _state_of(db: aiosqlite.Connection, job_id: str) -> State | None:
        async with db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)) as cur:
            row = await cur.fetchone()
        return State(row[0]) if row else None

    async def _enqueue(self, db: aiosqlite.Connection, job: Job, before: State) -> None:
        rendered = self._webhook(job, before) if self._webhook and job.webhook_url else None
        if rendered is None or job.webhook_url is None:
            return
        event, payload = rendered
        now = time.time()
        await db.execute(
            f"INSERT INTO webhook_outbox ({DELIVERY_COLUMNS}) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
            (f"msg_{uuid.uuid4().hex}", job.id, event, job.webhook_url, payload, now, now),
        )

    async def check_writable(self) -> None:
        """Raise if the database cannot be written (disk full, read-only, locked)."""
        async with self._transaction() as db:
            await db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_ready_check', datetime())")

    async def get(self, job_id: str) -> Job | None:
        async with self._db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,)) as cur:
            row = await cur.fetchone()
        return job_from_row(row) if row else None

    async def next_queued(self) -> Job | None:
        """The first job of the gateway's queue in base order (priority, then first come)."""
        async with self._db.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE state='queued' {QUEUE_ORDER} LIMIT 1"
        ) as cur:
            row = await cur.fetchone()
        return job_from_row(row) if row else None

    async def queue_window(self, limit: int) -> list[Candidate]:
        """The first `limit` waiting jobs in base order, as much as the scheduler needs of them."""
        async with self._db.execute(
            "SELECT id, priority, json_extract(params, '$.checkpoint'), overtaken, passed_at FROM jobs "
            f"WHERE state='queued' {QUEUE_ORDER} LIMIT ?", (limit,)
        ) as cur:
            rows = await cur.fetchall()
        return [candidate_from_row(r) for r in rows]

    async def mark_passed(self, job_ids: Sequence[str], at: float) -> None:
        """Record that waiting jobs were overtaken once more (first at `at`), so the fairness
        bound holds across restarts."""
        async with self._transaction() as db:
            await self._mark_passed(db, job_ids, at)

    @staticmethod
    async def _mark_passed(db: aiosqlite.Connection, job_ids: Sequence[str], at: float) -> None:
        if not job_ids:
            return
        marks = ", ".join("?" * len(job_ids))
        await db.execute(
            "UPDATE jobs SET overtaken = overtaken + 1, passed_at = coalesce(passed_at, ?) "
            f"WHERE id IN ({marks}) AND state='queued'", (at, *job_ids))

    async def claim(self, job_id: str, at: float, owner: str, *, passed: Sequence[Candidate] = ()) -> Job | None:
        """Take the queued job `job_id`: marked submitted and owned by `owner`, and the jobs it
        overtook counted, in one transaction (None: taken, or `passed` is stale; see `Store`).
        Within one process the write lock makes this atomic; the state check keeps it so even for
        another process on the same file."""
        async with self._transaction() as db:
            async with db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id=? AND state='queued'", (job_id,)) as cur:
                row = await cur.fetchone()
            marks = ", ".join("?" * len(passed))
            async with db.execute(f"SELECT id, overtaken FROM jobs WHERE id IN ({marks}) AND state='queued'",
                                  tuple(c.id for c in passed)) as cur:
                counts = await cur.fetchall()
            if row is None or counts_changed(passed, counts):
                return None
            job = transition(job_from_row(row), Submit(at))
            cur = await db.execute(
                "UPDATE jobs SET state=?, submitted_at=?, attempts=?, owner=? WHERE id=? AND state='queued'",
                (job.state.value, job.submitted_at, job.attempts, owner, job.id),
            )
            if cur.rowcount != 1:
                return None
            await self._mark_passed(db, [c.id for c in passed], at)
            await self._enqueue(db, job, State.QUEUED)
        self._changed([(job, State.QUEUED)])
        return job

    async def heartbeat(self, owner: str, now: float, lease: float) -> list[Job]:
        """Record that `owner` is alive until `now + lease`; hand it the jobs in ComfyUI whose
        owner's lease ran out (or that have none). Returns the jobs it took over."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO replicas (id, alive_until) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET alive_until=excluded.alive_until", (owner, now + lease),
            )
            await db.execute("DELETE FROM replicas WHERE alive_until < ?", (now - FORGET_REPLICAS_AFTER,))
            async with db.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ('submitted', 'running') "
                "AND (owner IS NULL OR owner != ?) "
                "AND NOT EXISTS (SELECT 1 FROM replicas r WHERE r.id = jobs.owner AND r.alive_until >= ?) "
                "ORDER BY seq", (owner, now),
            ) as cur:
                orphans = [job_from_row(r) for r in await cur.fetchall()]
            await db.executemany("UPDATE jobs SET owner=? WHERE id=?", [(owner, j.id) for j in orphans])
        return orphans

    async def in_comfy(self, owner: str | None = None) -> list[Job]:
        """Jobs the store believes ComfyUI has (submitted or running), oldest first; with `owner`,
        only that owner's."""
        states = tuple(s.value for s in IN_COMFY)
        async with self._db.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE state IN (?, ?) AND (? IS NULL OR owner = ?) ORDER BY seq",
            (*states, owner, owner),
        ) as cur:
            rows = await cur.fetchall()
        return [job_from_row(r) for r in rows]

    async def live_counts(self) -> dict[State, int]:
        """Jobs in each live state (queued, submitted, running); the `jobs_state` index answers it."""
        async with self._db.execute(
            "SELECT state, count(*) FROM jobs WHERE state IN ('queued', 'submitted', 'running') GROUP BY state"
        ) as cur:
            rows = await cur.fetchall()
        return {State(r[0]): int(r[1]) for r in rows}

    async def count_queued(self) -> int:
        async with self._db.execute("SELECT count(*) FROM jobs WHERE state='queued'") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def queue_positions(self, job_ids: Sequence[str]) -> dict[str, int]:
        """1-based places of waiting jobs: those in ComfyUI's queue first (in order of
        submission), then the gateway's queue in base order; jobs that are not waiting are left out."""
        if not job_ids:
            return {}
        marks = ", ".join("?" * len(job_ids))
        async with self._db.execute(
            f"SELECT id, seq, state, priority FROM jobs WHERE id IN ({marks}) AND state IN ('queued', 'submitted')",
            tuple(job_ids),
        ) as cur:
            wanted = await cur.fetchall()
        positions = {}
        for job_id, seq, state, priority in wanted:
            args: tuple[Any, ...]
            if state == State.SUBMITTED.value:
                sql, args = "SELECT count(*) FROM jobs WHERE state='submitted' AND seq <= ?", (seq,)
            else:
                sql = ("SELECT (SELECT count(*) FROM jobs WHERE state='submitted') + (SELECT count(*) FROM jobs "
                       "WHERE state='queued' AND (priority > ? OR (priority = ? AND seq <= ?)))")
                args = (priority, priority, seq)
            async with self._db.execute(sql, args) as cur:
                row = await cur.fetchone()
            positions[str(job_id)] = int(row[0]) if row else 1
        return positions

    async def counts(self, since: float) -> JobCounts:
        """Jobs waiting and running now, and done and failed since `since`."""
        async with self._db.execute(
            "SELECT sum(state IN ('queued', 'submitted')), sum(state = 'running') FROM jobs "
            "WHERE state IN ('queued', 'submitted', 'running')"
        ) as cur:
            live = await cur.fetchone()
        async with self._db.execute(
            "SELECT sum(state = 'done'), sum(state = 'failed') FROM jobs WHERE finished_at >= ?", (since,)
        ) as cur:
            finished = await cur.fetchone()
        a, b = (live[0], live[1]) if live else (0, 0)
        c, d = (finished[0], finished[1]) if finished else (0, 0)
        return JobCounts(int(a or 0), int(b or 0), int(c or 0), int(d or 0))

    async def recent_durations(self, limit: int) -> list[float]:
        """Run times (start to finish) of the latest done jobs, newest first."""
        async with self._db.execute(
            "SELECT finished_at - started_at FROM jobs WHERE finished_at IS NOT NULL AND state = 'done' "
            "AND started_at IS NOT NULL ORDER BY finished_at DESC LIMIT ?", (limit,)
        ) as cur:
            return [float(r[0]) for r in await cur.fetchall()]

    async def images(self, *, limit: int, offset: int, preset: str | None = None) -> tuple[list[ImageRow], int]:
        """Result images, newest first, and how many there are in all."""
        where, args = ("WHERE i.preset = ?", (preset,)) if preset is not None else ("", ())
        async with self._db.execute(f"SELECT count(*) FROM images i {where}", args) as cur:
            row = await cur.fetchone()
        total = int(row[0]) if row else 0
        columns = ", ".join(f"j.{c.strip()}" for c in JOB_COLUMNS.split(","))
        async with self._db.execute(
            f"SELECT i.id, i.relative_path, i.thumb_path, i.created_at, {columns} FROM images i "
            f"JOIN jobs j ON j.id = i.job_id {where} ORDER BY i.seq DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        ) as cur:
            rows = await cur.fetchall()
        found = []
        for r in rows:
            job = job_from_row(r[4:])
            image = next((i for i in job.images if i.relative_path == r[1]), StoredImage(r[1], thumb_path=r[2]))
            found.append(ImageRow(id=str(r[0]), job=job, image=image, created_at=float(r[3])))
        return found, total

    async def meta_value(self, key: str, default: str) -> str:
        """A value stored once and kept: the first caller's `default` wins for good."""
        async with self._transaction() as db:
            await db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, default))
        async with self._db.execute("SELECT value FROM meta WHERE key=?", (key,)) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else default

    # --- API keys ---------------------------------------------------------------------------

    async def add_key(self, row: ApiKeyRow) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO api_keys (id, name, hash, created_at, revoked_at, max_priority) VALUES (?, ?, ?, ?, ?, ?)",
                (row.id, row.name, row.hash, row.created_at, row.revoked_at, row.max_priority),
            )

    async def list_keys(self) -> list[ApiKeyRow]:
        async with self._db.execute(
            "SELECT id, name, hash, created_at, revoked_at, max_priority FROM api_keys ORDER BY created_at"
        ) as cur:
            rows = await cur.fetchall()
        return [ApiKeyRow(*r) for r in rows]

    async def revoke_key(self, id_or_name: str, at: float) -> int:
        """Revoke keys by id or name; returns how many were revoked."""
        async with self._transaction() as db:
            cur = await db.execute(
                "UPDATE api_keys SET revoked_at=? WHERE (id=? OR name=?) AND revoked_at IS NULL",
                (at, id_or_name, id_or_name),
            )
        return cur.rowcount

    async def active_keys(self) -> dict[str, int | None]:
        """Digests of the keys not revoked, each with its maximum priority (None: the default)."""
        async with self._db.execute("SELECT hash, max_priority FROM api_keys WHERE revoked_at IS NULL") as cur:
            rows = await cur.fetchall()
        return {str(r[0]): r[1] for r in rows}

    # --- idempotency ------------------------------------------------------------------------

    async def forget_idempotency(self, before: float) -> int:
        """Drop idempotency rows created before `before`; returns how many."""
        async with self._transaction() as db:
            cur = await db.execute("DELETE FROM idempotency WHERE created_at<?", (before,))
        return cur.rowcount

    # --- webhook outbox ---------------------------------------------------------------------

    async def claim_deliveries(self, now: float, lease_until: float, limit: int = 100) -> list[Delivery]:
        """Pending deliveries due at `now`, oldest first, each moved to `lease_until` in the same
        transaction: no later call returns them while they are being sent, and if the process dies
        meanwhile they are due again when the lease ends."""
        async with self._transaction() as db:
            async with db.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM webhook_outbox WHERE state='pending' AND next_attempt_at<=? "
                "ORDER BY next_attempt_at, seq LIMIT ?", (now, limit),
            ) as cur:
                due = [Delivery(*r) for r in await cur.fetchall()]
            claimed = []
            for delivery in due:  # each only if still due (another connection may have claimed it)
                moved = await db.execute(
                    "UPDATE webhook_outbox SET next_attempt_at=? WHERE id=? AND state='pending' AND next_attempt_at<=?",
                    (lease_until, delivery.id, now))
                if moved.rowcount == 1:
                    claimed.append(delivery)
        return claimed

    async def next_delivery_at(self) -> float | None:
        """When the earliest pending delivery is due (None: none is pending)."""
        async with self._db.execute("SELECT min(next_attempt_at) FROM webhook_outbox WHERE state='pending'") as cur:
            row = await cur.fetchone()
        return float(row[0]) if row and row[0] is not None else None

    async def record_attempt(self, attempt: Attempt, *, delivered: bool, retry_at: float | None) -> None:
        """Log one attempt and move its delivery on: delivered, due again at `retry_at`, or given up."""
        state = "delivered" if delivered else "pending" if retry_at is not None else "failed"
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO webhook_attempts (delivery_id, attempt, at, duration, status_code, error) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (attempt.delivery_id, attempt.attempt, attempt.at, attempt.duration, attempt.status_code,
                 attempt.error),
            )
            await db.execute(
                "UPDATE webhook_outbox SET state=?, attempts=?, next_attempt_at=? WHERE id=?",
                (state, attempt.attempt, retry_at if state == "pending" else None, attempt.delivery_id),
            )

    async def deliveries_of(self, job_id: str) -> list[tuple[Delivery, list[Attempt]]]:
        """A job's deliveries, oldest first, each with its attempts."""
        async with self._db.execute(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_outbox WHERE job_id=? ORDER BY seq", (job_id,)
        ) as cur:
            deliveries = [Delivery(*r) for r in await cur.fetchall()]
        result = []
        for delivery in deliveries:
            async with self._db.execute(
                "SELECT delivery_id, attempt, at, duration, status_code, error FROM webhook_attempts "
                "WHERE delivery_id=? ORDER BY seq", (delivery.id,),
            ) as cur:
                result.append((delivery, [Attempt(*r) for r in await cur.fetchall()]))
        return result

    # --- saved results ----------------------------------------------------------------------

    async def add_saved(self, row: SavedRow) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO saved (id, label, job_id, relative_path, created_at) VALUES (?, ?, ?, ?, ?)",
                (row.id, row.label, row.job_id, row.relative_path, row.created_at),
            )

    async def get_saved(self, saved_id: str) -> SavedRow | None:
        async with self._db.execute(
            "SELECT id, label, job_id, relative_path, created_at FROM saved WHERE id=?", (saved_id,)
        ) as cur:
            row = await cur.fetchone()
        return SavedRow(*row) if row else None

    async def list_saved(self, limit: int, offset: int) -> tuple[list[SavedRow], int]:
        """A page of saved results, newest first, and how many there are in all."""
        async with self._db.execute(
            "SELECT id, label, job_id, relative_path, created_at FROM saved ORDER BY seq DESC LIMIT ? OFFSET ?",
            (limit, offset),
        ) as cur:
            rows = [SavedRow(*r) for r in await cur.fetchall()]
        async with self._db.execute("SELECT count(*) FROM saved") as cur:
            total = await cur.fetchone()
        return rows, int(total[0]) if total else 0

    async def delete_saved(self, saved_id: str) -> SavedRow | None:
        """Remove a saved result's row; returns it (None if there was none)."""
        async with self._transaction() as db:
            async with db.execute(
                "SELECT id, label, job_id, relative_path, created_at FROM saved WHERE id=?", (saved_id,)
            ) as cur:
                row = await cur.fetchone()
            if row is not None:
                await db.execute("DELETE FROM saved WHERE id=?", (saved_id,))
        return SavedRow(*row) if row else None

    async def live_references(self) -> set[str]:
        """Reference image names that jobs not yet finished still need."""
        async with self._db.execute(
            "SELECT refs FROM jobs WHERE state IN ('queued', 'submitted', 'running') AND refs != '[]'"
        ) as cur:
            rows = await cur.fetchall()
        return {str(name) for row in rows for name in json.loads(row[0])}
