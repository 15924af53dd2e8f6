"""The durable store on SQLite (aiosqlite): jobs and API keys. Owns the schema and migrations.

WAL mode with `synchronous=FULL`: a job is on disk before its 202 answer goes out, and a crash of
the process or the machine loses nothing that was acknowledged.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.jobs import IN_COMFY, Job, State, StoredImage

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
)

_JOB_COLUMNS = ("id, preset, label, state, params, error, images, created_at, submitted_at, started_at, "
                "finished_at, attempts")


@dataclass(frozen=True)
class ApiKeyRow:
    id: str
    name: str
    hash: str
    created_at: float
    revoked_at: float | None


def _job_values(job: Job) -> tuple[Any, ...]:
    images = json.dumps([{"relative_path": i.relative_path, "node_id": i.node_id} for i in job.images])
    return (job.id, job.preset, job.label, job.state.value, json.dumps(job.params), job.error, images,
            job.created_at, job.submitted_at, job.started_at, job.finished_at, job.attempts)


def _job_from_row(row: Sequence[Any]) -> Job:
    return Job(
        id=row[0], preset=row[1], label=row[2], state=State(row[3]), params=json.loads(row[4]),
        error=row[5], images=tuple(StoredImage(**i) for i in json.loads(row[6])),
        created_at=row[7], submitted_at=row[8], started_at=row[9], finished_at=row[10], attempts=row[11],
    )


class Store:
    """One connection; aiosqlite serialises every statement on its own thread."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

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

    async def add_jobs(self, jobs: Iterable[Job]) -> None:
        """Insert new jobs in one transaction: all of them are stored, or none."""
        placeholders = ", ".join("?" * 12)
        try:
            await self._db.executemany(f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({placeholders})",
                                       [_job_values(j) for j in jobs])
        except BaseException:
            await self._db.rollback()
            raise
        await self._db.commit()

    async def save(self, job: Job) -> None:
        """Write a job's changed state (after a transition)."""
        values = _job_values(job)
        await self._db.execute(
            "UPDATE jobs SET state=?, error=?, images=?, submitted_at=?, started_at=?, finished_at=?, "
            "attempts=?, params=? WHERE id=?",
            (values[3], values[5], values[6], values[8], values[9], values[10], values[11], values[4], job.id),
        )
        await self._db.commit()

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

    async def meta_value(self, key: str, default: str) -> str:
        """A value stored once and kept: the first caller's `default` wins for good."""
        await self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, default))
        await self._db.commit()
        async with self._db.execute("SELECT value FROM meta WHERE key=?", (key,)) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else default

    # --- API keys ---------------------------------------------------------------------------

    async def add_key(self, row: ApiKeyRow) -> None:
        try:
            await self._db.execute(
                "INSERT INTO api_keys (id, name, hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?)",
                (row.id, row.name, row.hash, row.created_at, row.revoked_at),
            )
        except sqlite3.IntegrityError as exc:  # pragma: no cover - 256-bit keys do not collide
            raise RuntimeError("API key collision") from exc
        await self._db.commit()

    async def list_keys(self) -> list[ApiKeyRow]:
        async with self._db.execute(
            "SELECT id, name, hash, created_at, revoked_at FROM api_keys ORDER BY created_at"
        ) as cur:
            rows = await cur.fetchall()
        return [ApiKeyRow(*r) for r in rows]

    async def revoke_key(self, id_or_name: str, at: float) -> int:
        """Revoke keys by id or name; returns how many were revoked."""
        cur = await self._db.execute(
            "UPDATE api_keys SET revoked_at=? WHERE (id=? OR name=?) AND revoked_at IS NULL",
            (at, id_or_name, id_or_name),
        )
        await self._db.commit()
        return cur.rowcount

    async def active_key_hashes(self) -> list[str]:
        async with self._db.execute("SELECT hash FROM api_keys WHERE revoked_at IS NULL") as cur:
            rows = await cur.fetchall()
        return [str(r[0]) for r in rows]
