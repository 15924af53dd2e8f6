"""The PostgreSQL store's schema: its migrations (`PG_MIGRATIONS`), applied in order under an
advisory lock, so that replicas starting at once migrate once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection = PoolConnectionProxy[asyncpg.Record]

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

MIGRATION_LOCK = 7_340_001
"""Advisory lock key held while migrating."""


async def migrate(conn: Connection) -> None:
    """Bring the database to the newest schema; refuse one newer than this gateway knows."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
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
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
