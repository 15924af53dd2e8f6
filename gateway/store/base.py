"""What every part of the SQLite store shares: one connection, read directly, and its group
commit for writes."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiosqlite

from gateway.jobs import Job, State
from gateway.storage import Listener, WebhookRender
from gateway.store.commit import GroupCommit, Write


class Connected:
    """The connection, the webhook renderer and the listeners; the store's parts build on it."""

    def __init__(self, db: aiosqlite.Connection, *, webhook: WebhookRender | None = None,
                 reader: sqlite3.Connection | None = None) -> None:
        self._db = db
        self._reader = reader
        self._webhook = webhook
        self._listeners: list[Listener] = []
        self._commits = GroupCommit(db, notify=self._changed)

    def listen(self, listener: Listener) -> None:
        """Call `listener` after every committed change of jobs (never inside a transaction)."""
        self._listeners.append(listener)

    def _changed(self, changes: list[tuple[Job, State | None]]) -> None:
        for listener in self._listeners:
            listener(changes)

    async def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Every row a query returns, in one trip to the connection's thread (not three: execute,
        fetch, close), which is most of what a point read costs."""
        return list(await self._db.execute_fetchall(sql, args))

    async def _row(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        """The first row a query returns, or None."""
        rows = await self._rows(sql, args)
        return rows[0] if rows else None

    async def _point_read(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Row | None:
        """A read of one row by its key, done at once on the calling thread by the read-only
        connection: an index lookup takes microseconds, less than handing it to the connection's
        thread and back. It sees committed data only (as every caller should). When it cannot
        run at once (SQLite busy for a moment, or no read-only connection), the connection's
        thread does it."""
        if self._reader is not None:
            try:
                rows = self._reader.execute(sql, args).fetchall()
            except sqlite3.OperationalError:
                pass
            else:
                return rows[0] if rows else None
        return await self._row(sql, args)

    def _write(self) -> AbstractAsyncContextManager[Write]:
        """A write: its statements commit with those of the writers around it (see `commit`)."""
        return self._commits.write()
