"""Parts of the PostgreSQL store: what every part shares (`PgConnection`), and the records
beside the jobs (`PgRecords`): API keys, idempotency rows, the webhook outbox, saved results and
stored settings. Webhook deliveries are claimed with `SKIP LOCKED`, so each goes to one replica."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import asyncpg

from gateway.jobs import Job, State
from gateway.storage import DELIVERY_COLUMNS, ApiKeyRow, Attempt, Delivery, SavedRow, WebhookRender
from gateway.store_pg_notify import announce

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection = PoolConnectionProxy[asyncpg.Record]


def count_rows(status: str) -> int:
    """Rows touched, from a command status such as `UPDATE 3`."""
    return int(status.rsplit(" ", 1)[-1])


class PgConnection:
    """What the parts of the PostgreSQL store share: the pool, transactions, and telling others
    of job changes (NOTIFY, webhooks in the outbox, this process's listeners)."""

    _pool: asyncpg.Pool[asyncpg.Record]
    _webhook: WebhookRender | None
    _origin: str
    """Marks this store's own notifications, which its listeners have heard already."""

    def _changed(self, changes: list[tuple[Job, State | None]]) -> None:
        raise NotImplementedError

    async def _notify(self, db: Connection, changes: Sequence[tuple[Job, State | None]]) -> None:
        """Announce changes; NOTIFY is delivered when (and only if) the transaction commits."""
        await announce(db, changes, self._origin)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        async with self._pool.acquire() as db, db.transaction():
            yield db

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


class PgRecords(PgConnection):
    """API keys, idempotency rows, the webhook outbox, saved results and stored settings."""

    async def check_writable(self) -> None:
        """Raise if the database cannot be written (unreachable, read-only, out of space)."""
        async with self._transaction() as db:
            await db.execute("INSERT INTO meta (key, value) VALUES ('last_ready_check', now()::text) "
                             "ON CONFLICT (key) DO UPDATE SET value=EXCLUDED.value")

    async def meta_value(self, key: str, default: str) -> str:
        """A value stored once and kept: the first caller's `default` wins for good."""
        async with self._transaction() as db:
            await db.execute("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", key, default)
            value = await db.fetchval("SELECT value FROM meta WHERE key=$1", key)
        return str(value) if value is not None else default

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
        return count_rows(status)

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
            return count_rows(await db.execute("DELETE FROM idempotency WHERE created_at<$1", before))

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
