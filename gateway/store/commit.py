"""Group commit on the store's one SQLite connection.

With `synchronous=FULL` every commit waits for an `fsync`, and writers on one connection take
turns: one commit per write made concurrent requests wait on each other's `fsync`. Here the
writers that arrive while a commit is under way are gathered into the next transaction and
committed together, with one `fsync`:

- A group is one transaction (`BEGIN IMMEDIATE`, so the write lock is taken before the first
  statement). Its writers run one at a time (they share the connection), each in a SAVEPOINT:
  a writer whose statements fail is rolled back to its savepoint and gets its error, while the
  others' writes stay in the group.
- The group is committed by a task of its own, queued for the turn after the writers that were
  already waiting when the group began; writers coming later form the next group.
- Every writer resumes only after the commit that holds its writes: nothing is acknowledged
  before it is on disk, as with a commit per write. If the commit fails, every writer of the
  group gets the error.
- The job changes of the group's writers are announced once, in order, after the commit.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import aiosqlite

from gateway.jobs import Job, State

log = logging.getLogger(__name__)

Changes = list[tuple[Job, State | None]]
T = TypeVar("T")


class Write:
    """One writer's turn in a group: the connection to run its statements on, and the job
    changes to announce once they are committed."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self.changes: Changes = []

    def changed(self, changes: Sequence[tuple[Job, State | None]]) -> None:
        self.changes.extend(changes)


@dataclass
class _Group:
    done: asyncio.Future[None]
    changes: Changes = field(default_factory=list)
    broken: BaseException | None = None
    """Set when SQLite gave up the whole transaction: the group's earlier writes are gone."""


class GroupCommit:
    """Runs writes on `db` in SAVEPOINTs of shared transactions, one commit per group."""

    def __init__(self, db: aiosqlite.Connection, *, notify: Callable[[Changes], None]) -> None:
        self._db = db
        self._notify = notify
        self._turn = asyncio.Lock()
        """Held by one writer (its statements) or one committer (the COMMIT) at a time."""
        self._group: _Group | None = None
        self._committers: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Write]:
        """A writer's turn: run statements on the yielded `Write.db`. Leaving without an error
        keeps them in the group; raising rolls back this writer's statements only. Returns
        (or raises) once the group's commit is done."""
        async with self._turn:
            group = await _whole(self._enter())
            write = Write(self._db)
            try:
                yield write
            except BaseException as exc:
                await _whole(self._undo(group, exc))
                raise
            await _whole(self._keep(group, write))
        await asyncio.shield(group.done)

    async def _enter(self) -> _Group:
        if self._group is None:
            await self._db.execute("BEGIN IMMEDIATE")
            done = asyncio.get_running_loop().create_future()
            done.add_done_callback(_retrieved)
            self._group = _Group(done)
            task = asyncio.create_task(self._commit(self._group))
            self._committers.add(task)
            task.add_done_callback(self._committers.discard)
        await self._db.execute("SAVEPOINT write")
        return self._group

    async def _keep(self, group: _Group, write: Write) -> None:
        await self._db.execute("RELEASE write")
        group.changes.extend(write.changes)

    async def _undo(self, group: _Group, error: BaseException) -> None:
        if self._db.in_transaction:
            try:
                await self._db.execute("ROLLBACK TO write")
                await self._db.execute("RELEASE write")
                return
            except sqlite3.Error:
                log.exception("could not roll back to a writer's savepoint")
                if self._db.in_transaction:
                    await self._db.rollback()
        # SQLite ended the transaction itself (some errors do): the group's other writes are gone.
        group.broken = error
        if self._group is group:
            self._group = None

    async def _commit(self, group: _Group) -> None:
        try:
            async with self._turn:
                if self._group is group:
                    self._group = None
                if group.broken is not None:
                    raise group.broken
                try:
                    await self._db.commit()
                except BaseException:
                    if self._db.in_transaction:
                        await self._db.rollback()
                    raise
                self._announce(group.changes)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                group.done.cancel()
                raise
            group.done.set_exception(exc)
        else:
            group.done.set_result(None)

    def _announce(self, changes: Changes) -> None:
        if not changes:
            return
        try:
            self._notify(changes)
        except Exception:  # the writes are committed; a listener's fault must not undo their answers
            log.exception("a store listener failed")

    async def drain(self) -> None:
        """Wait for the commits under way (never cancelling them: a group whose commit task
        ended unfinished would hold the connection's transaction for good)."""
        while self._committers:
            await asyncio.wait(self._committers)


async def _whole(step: Awaitable[T]) -> T:
    """Run a step of the groups' bookkeeping to its end even if the writer is cancelled meanwhile
    (the cancellation is raised after it): a step left half done would put the connection's
    transaction out of step with the groups."""
    task = asyncio.ensure_future(step)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return task.result()


def _retrieved(done: asyncio.Future[None]) -> None:
    """Every writer of a failed group gets its error; none left (all cancelled) is no fault."""
    if not done.cancelled():
        done.exception()
