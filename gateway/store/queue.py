"""The durable queue on SQLite: its order, the scheduler's window, claims and their owners.

Within one process the group commit runs one writer at a time, which makes a claim atomic; the
state checks in its statements keep it so for another process on the same file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiosqlite

from gateway.jobs import IN_COMFY, Job, State, Submit, transition
from gateway.scheduling import Candidate
from gateway.storage import (
    FORGET_REPLICAS_AFTER,
    JOB_COLUMNS,
    QUEUE_ORDER,
    candidate_from_row,
    counts_changed,
    job_from_row,
)
from gateway.store.base import Connected
from gateway.store.outbox import enqueue


class Queue(Connected):
    async def next_queued(self) -> Job | None:
        """The first job of the gateway's queue in base order (priority, then first come)."""
        row = await self._row(f"SELECT {JOB_COLUMNS} FROM jobs WHERE state='queued' {QUEUE_ORDER} LIMIT 1")
        return job_from_row(row) if row else None

    async def queue_window(self, limit: int) -> list[Candidate]:
        """The first `limit` waiting jobs in base order, as much as the scheduler needs of them."""
        rows = await self._rows(
            "SELECT id, priority, json_extract(params, '$.checkpoint'), overtaken, passed_at FROM jobs "
            f"WHERE state='queued' {QUEUE_ORDER} LIMIT ?", (limit,))
        return [candidate_from_row(r) for r in rows]

    async def mark_passed(self, job_ids: Sequence[str], at: float) -> None:
        """Record that waiting jobs were overtaken once more (first at `at`), so the fairness
        bound holds across restarts."""
        async with self._write() as w:
            await _mark_passed(w.db, job_ids, at)

    async def claim(self, job_id: str, at: float, owner: str, *, passed: Sequence[Candidate] = ()) -> Job | None:
        """Take the queued job `job_id`: marked submitted and owned by `owner`, and the jobs it
        overtook counted, in one transaction (None: taken, or `passed` is stale; see `Store`)."""
        async with self._write() as w:
            async with w.db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id=? AND state='queued'",
                                    (job_id,)) as cur:
                row = await cur.fetchone()
            marks = ", ".join("?" * len(passed))
            async with w.db.execute(f"SELECT id, overtaken FROM jobs WHERE id IN ({marks}) AND state='queued'",
                                    tuple(c.id for c in passed)) as cur:
                counts = await cur.fetchall()
            if row is None or counts_changed(passed, counts):
                return None
            job = transition(job_from_row(row), Submit(at))
            cur = await w.db.execute(
                "UPDATE jobs SET state=?, submitted_at=?, attempts=?, owner=? WHERE id=? AND state='queued'",
                (job.state.value, job.submitted_at, job.attempts, owner, job.id),
            )
            if cur.rowcount != 1:
                return None
            await _mark_passed(w.db, [c.id for c in passed], at)
            await enqueue(w.db, self._webhook, job, State.QUEUED)
            w.changed([(job, State.QUEUED)])
        return job

    async def heartbeat(self, owner: str, now: float, lease: float) -> list[Job]:
        """Record that `owner` is alive until `now + lease`; hand it the jobs in ComfyUI whose
        owner's lease ran out (or that have none). Returns the jobs it took over."""
        async with self._write() as w:
            await w.db.execute(
                "INSERT INTO replicas (id, alive_until) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET alive_until=excluded.alive_until", (owner, now + lease),
            )
            await w.db.execute("DELETE FROM replicas WHERE alive_until < ?", (now - FORGET_REPLICAS_AFTER,))
            async with w.db.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ('submitted', 'running') "
                "AND (owner IS NULL OR owner != ?) "
                "AND NOT EXISTS (SELECT 1 FROM replicas r WHERE r.id = jobs.owner AND r.alive_until >= ?) "
                "ORDER BY seq", (owner, now),
            ) as cur:
                orphans = [job_from_row(r) for r in await cur.fetchall()]
            await w.db.executemany("UPDATE jobs SET owner=? WHERE id=?", [(owner, j.id) for j in orphans])
        return orphans

    async def in_comfy(self, owner: str | None = None) -> list[Job]:
        """Jobs the store believes ComfyUI has (submitted or running), oldest first; with `owner`,
        only that owner's."""
        states = tuple(s.value for s in IN_COMFY)
        rows = await self._rows(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE state IN (?, ?) AND (? IS NULL OR owner = ?) ORDER BY seq",
            (*states, owner, owner))
        return [job_from_row(r) for r in rows]

    async def live_counts(self) -> dict[State, int]:
        """Jobs in each live state (queued, submitted, running); the `jobs_state` index answers it."""
        rows = await self._rows(
            "SELECT state, count(*) FROM jobs WHERE state IN ('queued', 'submitted', 'running') GROUP BY state")
        return {State(r[0]): int(r[1]) for r in rows}

    async def count_queued(self) -> int:
        return await queue_size(self._db)

    async def queue_positions(self, job_ids: Sequence[str]) -> dict[str, int]:
        """1-based places of waiting jobs: those in ComfyUI's queue first (in order of
        submission), then the gateway's queue in base order; jobs that are not waiting are left out."""
        if not job_ids:
            return {}
        marks = ", ".join("?" * len(job_ids))
        wanted = await self._rows(
            f"SELECT id, seq, state, priority FROM jobs WHERE id IN ({marks}) AND state IN ('queued', 'submitted')",
            tuple(job_ids))
        positions = {}
        for job_id, seq, state, priority in wanted:
            args: tuple[Any, ...]
            if state == State.SUBMITTED.value:
                sql, args = "SELECT count(*) FROM jobs WHERE state='submitted' AND seq <= ?", (seq,)
            else:
                sql = ("SELECT (SELECT count(*) FROM jobs WHERE state='submitted') + (SELECT count(*) FROM jobs "
                       "WHERE state='queued' AND (priority > ? OR (priority = ? AND seq <= ?)))")
                args = (priority, priority, seq)
            row = await self._row(sql, args)
            positions[str(job_id)] = int(row[0]) if row else 1
        return positions


async def queue_size(db: aiosqlite.Connection) -> int:
    """How many jobs wait in the queue: kept by triggers on `jobs`, read in constant time."""
    async with db.execute("SELECT queued FROM queue_size") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _mark_passed(db: aiosqlite.Connection, job_ids: Sequence[str], at: float) -> None:
    if not job_ids:
        return
    marks = ", ".join("?" * len(job_ids))
    await db.execute(
        "UPDATE jobs SET overtaken = overtaken + 1, passed_at = coalesce(passed_at, ?) "
        f"WHERE id IN ({marks}) AND state='queued'", (at, *job_ids))
