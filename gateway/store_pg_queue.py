"""Part of the PostgreSQL store: the shared queue and the leases on jobs in ComfyUI.

- Each queued job is dispatched once: `claim` locks the chosen job (and the jobs it overtook)
  with `SELECT ... ORDER BY id FOR UPDATE`, checks it is still queued and marks it submitted (and
  owned) in the same transaction. A second claimer of the same job waits for the first to commit,
  then finds it taken and chooses again; locking in one order means claims never deadlock.
- In-flight jobs carry an owner; `heartbeat` keeps a replica's lease and hands it the jobs of
  replicas whose lease ran out (serialised by an advisory lock, so a job is taken over once).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import asyncpg

from gateway.jobs import IN_COMFY, Fail, Job, State, Submit, transition
from gateway.scheduling import Candidate
from gateway.storage import (
    FORGET_REPLICAS_AFTER,
    JOB_COLUMNS,
    QUEUE_ORDER,
    candidate_from_row,
    counts_changed,
    job_from_row,
)
from gateway.store_pg_records import PgConnection

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection = PoolConnectionProxy[asyncpg.Record]

ADOPTION_LOCK = 7_340_003
"""Advisory lock key held while taking over orphaned jobs."""


class PgQueue(PgConnection):
    """The queue: choosing, claiming, counting places; leases on jobs in ComfyUI."""

    async def next_queued(self) -> Job | None:
        """The first job of the gateway's queue in base order (priority, then first come)."""
        async with self._pool.acquire() as db:
            row = await db.fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs WHERE state='queued' {QUEUE_ORDER} LIMIT 1")
        return job_from_row(row) if row else None

    async def count_queued(self) -> int:
        async with self._pool.acquire() as db:
            return int(await db.fetchval("SELECT count(*) FROM jobs WHERE state='queued'") or 0)

    async def queue_window(self, limit: int) -> list[Candidate]:
        """The first `limit` waiting jobs in base order, as much as the scheduler needs of them."""
        async with self._pool.acquire() as db:
            rows = await db.fetch(
                "SELECT id, priority, CASE WHEN jsonb_typeof(params::jsonb -> 'checkpoint') = 'string' "
                "THEN params::jsonb ->> 'checkpoint' END, overtaken, passed_at "
                f"FROM jobs WHERE state='queued' {QUEUE_ORDER} LIMIT $1", limit)
        return [candidate_from_row(r) for r in rows]

    async def queue_positions(self, job_ids: Sequence[str]) -> dict[str, int]:
        """1-based places of waiting jobs: those in ComfyUI's queue first (in order of
        submission), then the gateway's queue in base order; jobs that are not waiting are left out."""
        if not job_ids:
            return {}
        async with self._pool.acquire() as db:
            rows = await db.fetch(
                "SELECT j.id, CASE WHEN j.state = 'submitted' "
                "THEN (SELECT count(*) FROM jobs w WHERE w.state = 'submitted' AND w.seq <= j.seq) "
                "ELSE (SELECT count(*) FROM jobs w WHERE w.state = 'submitted') "
                "+ (SELECT count(*) FROM jobs w WHERE w.state = 'queued' "
                "AND (w.priority > j.priority OR (w.priority = j.priority AND w.seq <= j.seq))) "
                "END FROM jobs j WHERE j.id = ANY($1::text[]) AND j.state IN ('queued', 'submitted')",
                list(job_ids),
            )
        return {str(r[0]): int(r[1]) for r in rows}

    async def mark_passed(self, job_ids: Sequence[str], at: float) -> None:
        """Record that waiting jobs were overtaken once more (first at `at`), so the fairness
        bound holds across restarts."""
        async with self._transaction() as db:
            await db.execute("SELECT 1 FROM jobs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE", list(job_ids))
            await self._mark_passed(db, job_ids, at)

    @staticmethod
    async def _mark_passed(db: Connection, job_ids: Sequence[str], at: float) -> None:
        if job_ids:
            await db.execute(
                "UPDATE jobs SET overtaken = overtaken + 1, passed_at = coalesce(passed_at, $1) "
                "WHERE id = ANY($2::text[]) AND state='queued'", at, list(job_ids))

    async def claim(self, job_id: str, at: float, owner: str, *, passed: Sequence[Candidate] = ()) -> Job | None:
        """Take the queued job `job_id`: marked submitted and owned by `owner`, and the jobs it
        overtook counted, in one transaction (None: taken, or `passed` is stale; see `Store`).
        The rows are locked first, in id order (so two claims never wait on each other in a
        circle); states and counts are read after the lock, so of two replicas claiming one job,
        or passing one job, the second finds it taken or counted and chooses again."""
        passed_ids = [c.id for c in passed]
        async with self._transaction() as db:
            await db.execute("SELECT 1 FROM jobs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
                             [job_id, *passed_ids])
            row = await db.fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id=$1 AND state='queued'", job_id)
            counts = await db.fetch("SELECT id, overtaken FROM jobs WHERE id = ANY($1::text[]) AND state='queued'",
                                    passed_ids)
            if row is None or counts_changed(passed, counts):
                return None
            job = transition(job_from_row(row), Submit(at))
            await db.execute("UPDATE jobs SET state=$1, submitted_at=$2, attempts=$3, owner=$4 WHERE id=$5",
                             job.state.value, job.submitted_at, job.attempts, owner, job.id)
            await self._mark_passed(db, passed_ids, at)
            await self._enqueue(db, job, State.QUEUED)
            await self._notify(db, [(job, State.QUEUED)])
        self._changed([(job, State.QUEUED)])
        return job

    async def heartbeat(self, owner: str, now: float, lease: float) -> list[Job]:
        """Record that `owner` is alive until `now + lease`; hand it the jobs in ComfyUI whose
        owner's lease ran out (or that have none). Returns the jobs it took over."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO replicas (id, alive_until) VALUES ($1, $2) "
                "ON CONFLICT (id) DO UPDATE SET alive_until=EXCLUDED.alive_until", owner, now + lease,
            )
            await db.execute("DELETE FROM replicas WHERE alive_until < $1", now - FORGET_REPLICAS_AFTER)
        async with self._transaction() as db:  # a fresh snapshot, after the other takers' commits
            await db.execute("SELECT pg_advisory_xact_lock($1)", ADOPTION_LOCK)
            rows = await db.fetch(
                f"UPDATE jobs SET owner=$1 WHERE state IN ('submitted', 'running') AND owner IS DISTINCT FROM $1 "
                "AND NOT EXISTS (SELECT 1 FROM replicas r WHERE r.id = jobs.owner AND r.alive_until >= $2) "
                f"RETURNING seq, {JOB_COLUMNS}", owner, now,
            )
        return [job_from_row(tuple(r)[1:]) for r in sorted(rows, key=lambda r: int(r[0]))]

    async def in_comfy(self, owner: str | None = None) -> list[Job]:
        """Jobs the store believes ComfyUI has (submitted or running), oldest first; with `owner`,
        only that owner's."""
        async with self._pool.acquire() as db:
            rows = await db.fetch(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE state = ANY($1::text[]) AND ($2::text IS NULL OR owner = $2) "
                "ORDER BY seq", [s.value for s in IN_COMFY], owner,
            )
        return [job_from_row(r) for r in rows]

    async def fail_queued(self, error: str, at: float) -> int:
        """Fail every job waiting in the queue at once (the bulk form of `jobs.Fail`); jobs being
        claimed at this moment are left to their claimer."""
        async with self._transaction() as db:
            rows = await db.fetch(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE state='queued' ORDER BY seq FOR UPDATE SKIP LOCKED")
            failed = [transition(job_from_row(r), Fail(at, error)) for r in rows]
            await db.execute("UPDATE jobs SET state='failed', error=$1, finished_at=$2 WHERE id = ANY($3::text[])",
                             error, at, [j.id for j in failed])
            for job in failed:
                await self._enqueue(db, job, State.QUEUED)
            await self._notify(db, [(job, State.QUEUED) for job in failed])
        self._changed([(job, State.QUEUED) for job in failed])
        return len(failed)
