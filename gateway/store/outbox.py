"""The webhook outbox on SQLite: a delivery is written in the transaction of the job change it
announces, claimed with a lease, and moved on by each attempt."""

from __future__ import annotations

import time
import uuid

import aiosqlite

from gateway.jobs import Job, State
from gateway.storage import DELIVERY_COLUMNS, Attempt, Delivery, WebhookRender
from gateway.store.base import Connected


async def enqueue(db: aiosqlite.Connection, webhook: WebhookRender | None, job: Job, before: State) -> None:
    """Write the delivery `webhook` asks for on this change of `job`, if any (in the caller's
    transaction)."""
    rendered = webhook(job, before) if webhook and job.webhook_url else None
    if rendered is None or job.webhook_url is None:
        return
    event, payload = rendered
    now = time.time()
    await db.execute(
        f"INSERT INTO webhook_outbox ({DELIVERY_COLUMNS}) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
        (f"msg_{uuid.uuid4().hex}", job.id, event, job.webhook_url, payload, now, now),
    )


class Outbox(Connected):
    async def claim_deliveries(self, now: float, lease_until: float, limit: int = 100) -> list[Delivery]:
        """Pending deliveries due at `now`, oldest first, each moved to `lease_until` in the same
        transaction: no later call returns them while they are being sent, and if the process dies
        meanwhile they are due again when the lease ends."""
        async with self._write() as w:
            async with w.db.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM webhook_outbox WHERE state='pending' AND next_attempt_at<=? "
                "ORDER BY next_attempt_at, seq LIMIT ?", (now, limit),
            ) as cur:
                due = [Delivery(*r) for r in await cur.fetchall()]
            claimed = []
            for delivery in due:  # each only if still due (another connection may have claimed it)
                moved = await w.db.execute(
                    "UPDATE webhook_outbox SET next_attempt_at=? WHERE id=? AND state='pending' AND next_attempt_at<=?",
                    (lease_until, delivery.id, now))
                if moved.rowcount == 1:
                    claimed.append(delivery)
        return claimed

    async def next_delivery_at(self) -> float | None:
        """When the earliest pending delivery is due (None: none is pending)."""
        row = await self._row("SELECT min(next_attempt_at) FROM webhook_outbox WHERE state='pending'")
        return float(row[0]) if row and row[0] is not None else None

    async def record_attempt(self, attempt: Attempt, *, delivered: bool, retry_at: float | None) -> None:
        """Log one attempt and move its delivery on: delivered, due again at `retry_at`, or given up."""
        state = "delivered" if delivered else "pending" if retry_at is not None else "failed"
        async with self._write() as w:
            await w.db.execute(
                "INSERT INTO webhook_attempts (delivery_id, attempt, at, duration, status_code, error) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (attempt.delivery_id, attempt.attempt, attempt.at, attempt.duration, attempt.status_code,
                 attempt.error),
            )
            await w.db.execute(
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
