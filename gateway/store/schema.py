"""The SQLite store's schema: its migrations, and opening a connection on it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

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
    # Counting the queue walked its index entry by entry: 3 ms with 60,000 jobs waiting, once for
    # every `POST /generate` (the queue limit), one request at a time. Triggers keep the count.
    """
    CREATE TABLE queue_size (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        queued INTEGER NOT NULL
    );
    INSERT INTO queue_size (id, queued) SELECT 1, count(*) FROM jobs WHERE state = 'queued';
    CREATE TRIGGER queue_size_insert AFTER INSERT ON jobs WHEN NEW.state = 'queued'
    BEGIN UPDATE queue_size SET queued = queued + 1; END;
    CREATE TRIGGER queue_size_update AFTER UPDATE OF state ON jobs
    WHEN (OLD.state = 'queued') != (NEW.state = 'queued')
    BEGIN UPDATE queue_size SET queued = queued + (NEW.state = 'queued') - (OLD.state = 'queued'); END;
    CREATE TRIGGER queue_size_delete AFTER DELETE ON jobs WHEN OLD.state = 'queued'
    BEGIN UPDATE queue_size SET queued = queued - 1; END;
    """,
)


async def connect(path: Path) -> aiosqlite.Connection:
    """Open (and migrate) the database at `path`.

    WAL mode with `synchronous=FULL`: a commit is on disk when it returns. The connection is in
    autocommit mode (`isolation_level=None`): the store's writes open their transactions
    themselves (`gateway.store.commit`), never the driver behind a statement's back.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.execute("PRAGMA busy_timeout=5000")
        await migrate(db)
    except BaseException:
        await db.close()
        raise
    return db


def open_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection to the database at `path` (opened by `connect` first), for point
    reads on the event loop's thread. It never waits for a lock (`timeout=0`): a read that would
    is handed to the main connection instead."""
    reader = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=0, isolation_level=None,
                             check_same_thread=False)
    reader.execute("PRAGMA query_only=ON")
    return reader


async def migrate(db: aiosqlite.Connection) -> None:
    """Apply the migrations the database has not had yet, each in its own transaction."""
    async with db.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    version = int(row[0]) if row else 0
    if version > len(MIGRATIONS):
        raise RuntimeError(f"database schema version {version} is newer than this gateway knows")
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        await db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
