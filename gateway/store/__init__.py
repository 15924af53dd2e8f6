"""The `Store` on SQLite (aiosqlite), the embedded default for one gateway process.

WAL mode with `synchronous=FULL`: a job is on disk before its 202 answer goes out, and a crash of
the process or the machine loses nothing that was acknowledged. Concurrent writes share commits
(`commit`: group commit, one `fsync` for all the writers that came while the last one ran).

The store is put together from one part per concept, each on the same connection (`base`):
`schema` (migrations), `jobs`, `queue` (order, claims, owners), `idempotency`, `outbox`
(webhook deliveries), `gallery` (images, saved results) and `keys`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.storage import WebhookRender
from gateway.store.gallery import Gallery
from gateway.store.idempotency import Idempotency
from gateway.store.jobs import Jobs
from gateway.store.keys import Keys
from gateway.store.outbox import Outbox
from gateway.store.queue import Queue
from gateway.store.schema import MIGRATIONS, connect, open_reader

__all__ = ["MIGRATIONS", "SqliteStore"]


class SqliteStore(Jobs, Queue, Idempotency, Outbox, Gallery, Keys):
    """The `Store` on SQLite. One connection; aiosqlite runs its statements in order on its own
    thread. Reads go straight to it; writes take turns in group commits (`gateway.store.commit`).
    A job read by its id (the API's hottest query) is done at once by a second, read-only
    connection on the caller's thread (`Connected._point_read`)."""

    @classmethod
    async def open(cls, path: Path, *, webhook: WebhookRender | None = None) -> SqliteStore:
        """Open (and migrate) the database. With `webhook`, saving a job that has a webhook URL
        writes the outbox row `webhook` asks for in the same transaction as the job's new state."""
        db = await connect(path)
        try:
            reader = await asyncio.to_thread(open_reader, path)
        except BaseException:
            await db.close()
            raise
        return cls(db, webhook=webhook, reader=reader)

    async def close(self) -> None:
        await self._commits.drain()
        await self._db.close()
        if self._reader is not None:
            self._reader.close()
