"""What only the PostgreSQL store does: tell every replica of job changes (also after its LISTEN
connection dropped), migrate once when replicas start together. (The store's behaviour itself
is tested on both backends in test_store.)"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from gateway.jobs import Complete, Job, Start, State, StoredImage, transition
from gateway.store_pg import PG_MIGRATIONS, PostgresStore
from gateway.store_pg_notify import APPLICATION_NAME
from tests.postgres import PostgresServer


def new_job(job_id: str) -> Job:
    return Job(id=job_id, preset="p", label="P", params={"seed": 1}, created_at=1.0)


class Heard:
    """A listener that collects changes and lets a test wait for a number of them."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, State, State | None]] = []
        self._more = asyncio.Event()

    def __call__(self, changes: list[tuple[Job, State | None]]) -> None:
        self.changes.extend((job.id, job.state, before) for job, before in changes)
        self._more.set()

    async def until(self, count: int) -> list[tuple[str, State, State | None]]:
        while len(self.changes) < count:
            self._more.clear()
            await asyncio.wait_for(self._more.wait(), timeout=10)
        return self.changes


async def test_changes_made_through_one_replica_reach_the_listeners_of_another(pg_url: str) -> None:
    a, b = await PostgresStore.open(pg_url), await PostgresStore.open(pg_url)
    try:
        heard_a, heard_b = Heard(), Heard()
        a.listen(heard_a)
        b.listen(heard_b)
        # each change waits until b heard the one before: b re-reads a job when told of it, and a
        # job changed again meanwhile is told in its newest state only (see the next test)
        await a.add_jobs([new_job("x"), new_job("y")])
        await heard_b.until(2)
        claimed = await a.claim("x", 2.0, "gw-a")
        assert claimed is not None
        await heard_b.until(3)
        await a.save(transition(transition(claimed, Start(3.0)), Complete(4.0, (StoredImage("x.png"),))),
                     expect=State.SUBMITTED)
        await heard_b.until(4)
        assert await a.fail_queued("cancelled", 5.0) == 1
        expected = [("x", State.QUEUED, None), ("y", State.QUEUED, None), ("x", State.SUBMITTED, State.QUEUED),
                    ("x", State.DONE, State.SUBMITTED), ("y", State.FAILED, State.QUEUED)]
        assert await heard_b.until(len(expected)) == expected
        assert heard_a.changes == expected  # its own changes once: told directly, not again by NOTIFY
    finally:
        await a.close()
        await b.close()


async def test_rapid_changes_are_told_in_order_ending_with_the_newest(pg_url: str) -> None:
    a, b = await PostgresStore.open(pg_url), await PostgresStore.open(pg_url)
    try:
        await a.add_jobs([new_job(f"j{i}") for i in range(20)])
        heard = Heard()
        b.listen(heard)
        for i in range(20):  # no pause between a job's changes: b may re-read it already running
            claimed = await a.claim(f"j{i}", 2.0, "gw-a")
            assert claimed is not None
            await a.save(transition(claimed, Start(3.0)), expect=State.SUBMITTED)
        while {(job_id, state) for job_id, state, _ in heard.changes if state is State.RUNNING} != {
                (f"j{i}", State.RUNNING) for i in range(20)}:
            await heard.until(len(heard.changes) + 1)
        order = [State.QUEUED, State.SUBMITTED, State.RUNNING]
        for i in range(20):
            told = [(state, before) for job_id, state, before in heard.changes if job_id == f"j{i}"]
            assert told[-1][0] is State.RUNNING
            assert [order.index(s) for s, _ in told] == sorted({order.index(s) for s, _ in told})  # in order, once
            left = [before for state, before in told if state is not State.QUEUED]
            # the first change told after queueing starts from the queue (None: told as a new job
            # when the notification of its insert came in the same batch)
            assert left[0] in (State.QUEUED, None)
    finally:
        await a.close()
        await b.close()


async def test_replicas_starting_together_migrate_once(pg_url: str) -> None:
    stores = await asyncio.gather(*(PostgresStore.open(pg_url) for _ in range(4)))
    for store in stores:
        await store.close()
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT max(version) FROM schema_version") == len(PG_MIGRATIONS)
        assert await conn.fetchval("SELECT count(*) FROM schema_version") == len(PG_MIGRATIONS)
        await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", len(PG_MIGRATIONS) + 1)
    finally:
        await conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        await PostgresStore.open(pg_url)


async def test_the_queue_window_reads_its_index_in_order(pg_url: str) -> None:
    store = await PostgresStore.open(pg_url)
    await store.close()
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("SET enable_seqscan = off")  # a handful of rows: make the planner show its index
        plan = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN SELECT id FROM jobs WHERE state='queued' ORDER BY priority DESC, seq LIMIT 32"))
    finally:
        await conn.close()
    assert "jobs_queue" in plan and "Sort" not in plan


async def until_listening(store: PostgresStore, listening: bool) -> None:
    async with asyncio.timeout(20):
        while store.listening is not listening:
            await asyncio.sleep(0.02)


async def test_changes_missed_while_the_listen_connection_was_cut_are_told_when_it_is_back(
        postgres: PostgresServer, pg_url: str) -> None:
    name = pg_url.rsplit("/", 1)[-1]
    a, b = await PostgresStore.open(pg_url, check_every=0.2), await PostgresStore.open(pg_url)
    admin = await asyncpg.connect(postgres.url())
    try:
        heard = Heard()
        a.listen(heard)
        await b.add_jobs([new_job("before")])
        await heard.until(1)
        # cut the LISTEN connections and keep them from coming back, while b writes on its pool
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = $1 AND application_name = $2", name, APPLICATION_NAME)
        await until_listening(a, False)
        claimed = await b.claim("before", 2.0, "gw-b")
        assert claimed is not None
        await b.add_jobs([new_job("during")])
        await b.save(transition(claimed, Start(3.0)), expect=State.SUBMITTED)
        await asyncio.sleep(0.5)
        assert heard.changes == [("before", State.QUEUED, None)]  # nothing heard while cut off
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        await until_listening(a, True)
        # re-read on reconnecting: each job in its newest state, from the state last told
        assert sorted(await heard.until(3)) == [
            ("before", State.QUEUED, None), ("before", State.RUNNING, State.QUEUED), ("during", State.QUEUED, None)]
        await b.add_jobs([new_job("after")])  # and notifications flow again
        assert (await heard.until(4))[3] == ("after", State.QUEUED, None)
        await asyncio.sleep(0.3)
        assert len(heard.changes) == 4  # none told twice
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        await admin.close()
        await a.close()
        await b.close()


async def test_after_the_server_restarts_a_job_queued_by_another_replica_reaches_the_listeners(
        postgres: PostgresServer, pg_url: str) -> None:
    a, b = await PostgresStore.open(pg_url, check_every=0.2), await PostgresStore.open(pg_url)
    try:
        heard = Heard()
        a.listen(heard)
        await asyncio.to_thread(postgres.restart)
        await until_listening(a, True)
        await b.add_jobs([new_job("after-restart")])
        assert await heard.until(1) == [("after-restart", State.QUEUED, None)]
    finally:
        await a.close()
        await b.close()
