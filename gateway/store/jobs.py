"""Jobs on SQLite: adding them (with their idempotency key), writing their changes (with the
webhook delivery and gallery rows a change brings), reading them back and counting them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import aiosqlite

from gateway.errors import QueueFull
from gateway.jobs import Fail, Job, State, transition
from gateway.storage import (
    JOB_COLUMN_COUNT,
    JOB_COLUMNS,
    IdempotencyRow,
    JobCounts,
    job_from_row,
    job_values,
)
from gateway.store.base import Connected
from gateway.store.gallery import add_images
from gateway.store.idempotency import hold_key
from gateway.store.outbox import enqueue
from gateway.store.queue import queue_size

_INSERT = f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({', '.join('?' * JOB_COLUMN_COUNT)})"
_UPDATE = ("UPDATE jobs SET state=?, error=?, images=?, submitted_at=?, started_at=?, finished_at=?, "
           "attempts=?, params=? WHERE id=?")


class Jobs(Connected):
    async def add_jobs(self, jobs: Sequence[Job], *, max_queued: int | None = None,
                       idempotency: IdempotencyRow | None = None, forget_before: float = 0.0,
                       ) -> IdempotencyRow | None:
        """Insert new jobs in one transaction: all of them are stored, or none.

        With `max_queued`, raises QueueFull instead when the queue would then hold more.
        With `idempotency`, the row is stored with the jobs; but if a row for its scope and key
        created at or after `forget_before` exists, nothing is inserted and that row is returned.
        """
        rows = [job_values(j) for j in jobs]
        async with self._write() as w:
            if idempotency is not None and (held := await hold_key(w.db, idempotency, forget_before)):
                return held
            if max_queued is not None:
                queued = await queue_size(w.db)
                if queued + len(rows) > max_queued:
                    raise QueueFull(
                        f"the queue is full ({queued} of {max_queued} jobs waiting); {len(rows)} more do not fit",
                        retry_after=10, queued=queued, limit=max_queued,
                    )
            await w.db.executemany(_INSERT, rows)
            w.changed([(j, None) for j in jobs])
        return None

    async def save(self, job: Job, *, expect: State | None = None) -> bool:
        """Write a job's changed state (after a transition).

        With `expect`, only if the stored job is still in that state (compare-and-set); returns
        whether it was written.
        """
        values = job_values(job)
        sql = _UPDATE
        args: tuple[Any, ...] = (values[3], values[5], values[6], values[8], values[9], values[10], values[11],
                                 values[4], job.id)
        if expect is not None:
            sql += " AND state=?"
            args += (expect.value,)
        async with self._write() as w:
            before = await _state_of(w.db, job.id) if self._webhook and job.webhook_url else None
            cur = await w.db.execute(sql, args)
            written = cur.rowcount == 1
            if written and before is not None and before is not job.state:
                await enqueue(w.db, self._webhook, job, before)
            if written and job.state is State.DONE:  # the gallery sees a job's images when it is done
                await add_images(w.db, job)
            if written:
                w.changed([(job, expect)])
        return written

    async def fail_queued(self, error: str, at: float) -> int:
        """Fail every job waiting in the queue at once (the bulk form of `jobs.Fail`)."""
        async with self._write() as w:
            async with w.db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE state='queued' ORDER BY seq") as cur:
                waiting = [job_from_row(r) for r in await cur.fetchall()]
            await w.db.execute("UPDATE jobs SET state='failed', error=?, finished_at=? WHERE state='queued'",
                               (error, at))
            failed = [transition(job, Fail(at, error)) for job in waiting]
            for job in failed:
                await enqueue(w.db, self._webhook, job, State.QUEUED)
            w.changed([(job, State.QUEUED) for job in failed])
        return len(failed)

    async def check_writable(self) -> None:
        """Raise if the database cannot be written (disk full, read-only, locked)."""
        async with self._write() as w:
            await w.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_ready_check', datetime())")

    async def get(self, job_id: str) -> Job | None:
        row = await self._point_read(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,))
        return job_from_row(row) if row else None

    async def counts(self, since: float) -> JobCounts:
        """Jobs waiting and running now, and done and failed since `since`."""
        live = await self._row(
            "SELECT sum(state IN ('queued', 'submitted')), sum(state = 'running') FROM jobs "
            "WHERE state IN ('queued', 'submitted', 'running')")
        finished = await self._row(
            "SELECT sum(state = 'done'), sum(state = 'failed') FROM jobs WHERE finished_at >= ?", (since,))
        a, b = (live[0], live[1]) if live else (0, 0)
        c, d = (finished[0], finished[1]) if finished else (0, 0)
        return JobCounts(int(a or 0), int(b or 0), int(c or 0), int(d or 0))

    async def recent_durations(self, limit: int) -> list[float]:
        """Run times (start to finish) of the latest done jobs, newest first."""
        async with self._db.execute(
            "SELECT finished_at - started_at FROM jobs WHERE finished_at IS NOT NULL AND state = 'done' "
            "AND started_at IS NOT NULL ORDER BY finished_at DESC LIMIT ?", (limit,)
        ) as cur:
            return [float(r[0]) for r in await cur.fetchall()]

    async def meta_value(self, key: str, default: str) -> str:
        """A value stored once and kept: the first caller's `default` wins for good."""
        async with self._write() as w:
            await w.db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, default))
        row = await self._row("SELECT value FROM meta WHERE key=?", (key,))
        return str(row[0]) if row else default

    async def live_references(self) -> set[str]:
        """Reference image names that jobs not yet finished still need."""
        rows = await self._rows(
            "SELECT refs FROM jobs WHERE state IN ('queued', 'submitted', 'running') AND refs != '[]'")
        return {str(name) for row in rows for name in json.loads(row[0])}


async def _state_of(db: aiosqlite.Connection, job_id: str) -> State | None:
    async with db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)) as cur:
        row = await cur.fetchone()
    return State(row[0]) if row else None
