"""Idempotency keys on SQLite: a key is held in the transaction that stores its jobs."""

from __future__ import annotations

import aiosqlite

from gateway.storage import IdempotencyRow
from gateway.store.base import Connected


async def hold_key(db: aiosqlite.Connection, row: IdempotencyRow, forget_before: float) -> IdempotencyRow | None:
    """Store `row` in the caller's transaction; but if a row for its scope and key created at or
    after `forget_before` exists, store nothing and return that one."""
    cur = await db.execute(
        "INSERT INTO idempotency (scope, key, request_hash, status, body, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET "
        "request_hash=excluded.request_hash, status=excluded.status, body=excluded.body, "
        "created_at=excluded.created_at WHERE idempotency.created_at < ?",
        (row.scope, row.key, row.request_hash, row.status, row.body, row.created_at, forget_before),
    )
    if cur.rowcount == 1:
        return None
    async with db.execute(  # a live row holds the key
        "SELECT scope, key, request_hash, status, body, created_at FROM idempotency WHERE scope=? AND key=?",
        (row.scope, row.key),
    ) as found:
        held = await found.fetchone()
    return IdempotencyRow(*held) if held is not None else None


class Idempotency(Connected):
    async def forget_idempotency(self, before: float) -> int:
        """Drop idempotency rows created before `before`; returns how many."""
        async with self._write() as w:
            cur = await w.db.execute("DELETE FROM idempotency WHERE created_at<?", (before,))
        return cur.rowcount
