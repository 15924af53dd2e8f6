"""What every part of the SQLite store shares: one connection, read directly, and its group
commit for writes."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import aiosqlite

from gateway.jobs import Job, State
from gateway.storage import Listener, WebhookRender
from gateway.store.commit import GroupCommit, Write


class Connected:
    """The connection, the webhook renderer and the listeners; the store's parts build on it."""

    def __init__(self, db: aiosqlite.Connection, *, webhook: WebhookRender | None = None) -> None:
        self._db = db
        self._webhook = webhook
        self._listeners: list[Listener] = []
        self._commits = GroupCommit(db, notify=self._changed)

    def listen(self, listener: Listener) -> None:
        """Call `listener` after every committed change of jobs (never inside a transaction)."""
        self._listeners.append(listener)

    def _changed(self, changes: list[tuple[Job, State | None]]) -> None:
        for listener in self._listeners:
            listener(changes)

    def _write(self) -> AbstractAsyncContextManager[Write]:
        """A write: its statements commit with those of the writers around it (see `commit`)."""
        return self._commits.write()
