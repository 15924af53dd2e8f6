"""The durable store on SQLite (aiosqlite): jobs and API keys. Owns the schema and migrations.

WAL mode with `synchronous=FULL`: a job is on disk before its 202 answer goes out, and a crash of
the process or the machine loses nothing that was acknowledged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.errors import QueueFull
from gateway.jobs import IN_COMFY, Fail, Job, State, StoredImage, transition

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
    # SQLite uses a partial index only when the query repeats its condition: `state = 'queued'`
    # scanned the whole table (every job ever stored) for each queue count and next job.
    """
    DROP INDEX jobs_live;
    CREATE INDEX jobs_state ON jobs (state, seq);
    """,
)

_JOB_COLUMNS = ("id, preset, label, state, params, error, images, created_at, submitted_at, started_at, "
                "finished_at, attempts")


Listener = Callable[[list[tuple[Job, State | None]]], None]
"""Told of committed job changes: each job as written, with the state it had before (None: new)."""


@dataclass(frozen=True)
class ImageRow:
    """One result image in the gallery."""

    id: str
    job: Job
    image: StoredImage
    created_at: float


@dataclass(frozen=True)
class JobCounts:
    waiting: int
    running: int
    done_since: int
    failed_since: int


@dataclass(frozen=True)
class ApiKeyRow:
    id: str
    name: str
    hash: str
    created_at: float
    revoked_at: float | None


def _image_json(image: StoredImage) -> dict[str, str]:
    return {k: v for k, v in dataclasses.asdict(image).items() if v is not None}


def _job_values(job: Job) -> tuple[Any, ...]:
    images = json.dumps([_image_json(i) for i in job.images])
    return (job.id, job.preset, job.label, job.state.value, json.dumps(job.params), job.error, images,
            job.created_at, job.submitted_at, job.started_at, job.finished_at, job.attempts)


def _job_from_row(row: Sequence[Any]) -> Job:
    return Job(
        id=row[0], preset=row[1], label=row[2], state=State(row[3]), params=json.loads(row[4]),
        error=row[5], images=tuple(StoredImage(**i) for i in json.loads(row[6])),
        created_at=row[7], submitted_at=row[8], started_at=row[9], finished_at=row[10], attempts=row[11],
    )


class Store:
    """One connection; aiosqlite runs its statements in order on its own thread.

    Writes go through `_transaction()`, one at a time: on a shared connection, two coroutines'
    statements would otherwise land in one transaction, and one's rollback would undo the other.
    """

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._write_lock = asyncio.Lock()
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
    async def open(cls, path: Path) -> Store:
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
        return cls(db)

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

    async def add_jobs(self, jobs: Sequence[Job], *, max_queued: int | None = None) -> None:
        """Insert new jobs in one transaction: all of them are stored, or none.

        With `max_queued`, raises QueueFull instead when the queue would then hold more.
        """
        rows = [_job_values(j) for j in jobs]
        placeholders = ", ".join("?" * 12)
        async with self._transaction() as db:
            if max_queued is not None:
                async with db.execute("SELECT count(*) FROM jobs WHERE state='queued'") as cur:
                    row = await cur.fetchone()
                queued = int(row[0]) if row else 0
                if queued + len(rows) > max_queued:
                    raise QueueFull(
                        f"the queue is full ({queued} of {max_queued} jobs waiting); {len(rows)} more do not fit",
                        retry_after=10, queued=queued, limit=max_queued,
                    )
            await db.executemany(f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({placeholders})", rows)
        self._changed([(j, None) for j in jobs])

    async def save(self, job: Job, *, expect: State | None = None) -> bool:
        """Write a job's changed state (after a transition).

        With `expect`, only if the stored job is still in that state (compare-and-set); returns
        whether it was written.
        """
        values = _job_values(job)
        sql = ("UPDATE jobs SET state=?, error=?, images=?, submitted_at=?, started_at=?, finished_at=?, "
               "attempts=?, params=? WHERE id=?")
        args: tuple[Any, ...] = (values[3], values[5], values[6], values[8], values[9], values[10], values[11],
                                 values[4], job.id)
        if expect is not None:
            sql += " AND state=?"
            args += (expect.value,)
        async with self._transaction() as db:
            cur = await db.execute(sql, args)
            written = cur.rowcount == 1
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
            async with db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state='queued' ORDER BY seq") as cur:
                waiting = [_job_from_row(r) for r in await cur.fetchall()]
            await db.execute("UPDATE jobs SET state='failed', error=?, finished_at=? WHERE state='queued'",
                             (error, at))
        self._changed([(transition(job, Fail(at, error)), State.QUEUED) for job in waiting])
        return len(waiting)

    async def check_writable(self) -> None:
        """Raise if the database cannot be written (disk full, read-only, locked)."""
        async with self._transaction() as db:
            await db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_ready_check', datetime())")

    async def get(self, job_id: str) -> Job | None:
        async with self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,)) as cur:
            row = await cur.fetchone()
        return _job_from_row(row) if row else None

    async def next_queued(self) -> Job | None:
        """The oldest job waiting in the gateway's queue."""
        async with self._db.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state='queued' ORDER BY seq LIMIT 1"
        ) as cur:
            row = await cur.fetchone()
        return _job_from_row(row) if row else None

    async def in_comfy(self) -> list[Job]:
        """Jobs the store believes ComfyUI has (submitted or running), oldest first."""
        states = tuple(s.value for s in IN_COMFY)
        async with self._db.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state IN (?, ?) ORDER BY seq", states
        ) as cur:
            rows = await cur.fetchall()
        return [_job_from_row(r) for r in rows]

    async def count_queued(self) -> int:
        async with self._db.execute("SELECT count(*) FROM jobs WHERE state='queued'") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def queue_positions(self, job_ids: Sequence[str]) -> dict[str, int]:
        """1-based places of waiting jobs (queued in the gateway or waiting in ComfyUI), in order
        of submission; jobs that are not waiting are left out."""
        if not job_ids:
            return {}
        marks = ", ".join("?" * len(job_ids))
        async with self._db.execute(
            f"SELECT id, seq FROM jobs WHERE id IN ({marks}) AND state IN ('queued', 'submitted')", tuple(job_ids)
        ) as cur:
            wanted = {str(r[0]): int(r[1]) for r in await cur.fetchall()}
        positions = {}
        for job_id, seq in wanted.items():
            async with self._db.execute(
                "SELECT count(*) FROM jobs WHERE state IN ('queued', 'submitted') AND seq <= ?", (seq,)
            ) as cur:
                row = await cur.fetchone()
            positions[job_id] = int(row[0]) if row else 1
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
        columns = ", ".join(f"j.{c.strip()}" for c in _JOB_COLUMNS.split(","))
        async with self._db.execute(
            f"SELECT i.id, i.relative_path, i.thumb_path, i.created_at, {columns} FROM images i "
            f"JOIN jobs j ON j.id = i.job_id {where} ORDER BY i.seq DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        ) as cur:
            rows = await cur.fetchall()
        found = []
        for r in rows:
            job = _job_from_row(r[4:])
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
                "INSERT INTO api_keys (id, name, hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?)",
                (row.id, row.name, row.hash, row.created_at, row.revoked_at),
            )

    async def list_keys(self) -> list[ApiKeyRow]:
        async with self._db.execute(
            "SELECT id, name, hash, created_at, revoked_at FROM api_keys ORDER BY created_at"
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

    async def active_key_hashes(self) -> list[str]:
        async with self._db.execute("SELECT hash FROM api_keys WHERE revoked_at IS NULL") as cur:
            rows = await cur.fetchall()
        return [str(r[0]) for r in rows]
