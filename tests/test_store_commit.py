"""Group commit in the SQLite store: concurrent writers share one commit, each keeps its own
outcome, and nothing is acknowledged or announced before it is on disk."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from gateway.errors import QueueFull
from gateway.jobs import Job, State, Submit, transition
from gateway.storage import IdempotencyRow
from gateway.store import SqliteStore
from gateway.store.commit import GroupCommit


def new_job(job_id: str) -> Job:
    return Job(id=job_id, preset="p", label="Preset: P", params={"seed": 1}, created_at=1.0)


async def recording(store: SqliteStore) -> list[str]:
    """Start recording the statements the store's connection runs."""
    statements: list[str] = []
    await store._db.set_trace_callback(statements.append)
    return statements


def stored_ids(path: Path) -> set[str]:
    """The job ids committed to the file, read by a connection of their own."""
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT id FROM jobs")}


async def test_concurrent_adds_share_one_commit_and_are_all_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    store = await SqliteStore.open(path)
    statements = await recording(store)
    await asyncio.gather(*(store.add_jobs([new_job(f"j{n:03}-{i}") for i in range(5)]) for n in range(100)))
    await store._db.set_trace_callback(None)
    await store.close()
    assert statements.count("COMMIT") == 1  # the 99 writers waiting behind the first joined its group
    assert stored_ids(path) == {f"j{n:03}-{i}" for n in range(100) for i in range(5)}
    reopened = await SqliteStore.open(path)
    assert await reopened.count_queued() == 500
    await reopened.close()


async def test_writers_after_a_commit_began_form_the_next_group(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    store = await SqliteStore.open(path)
    statements = await recording(store)
    first = asyncio.gather(*(store.add_jobs([new_job(f"a{n}")]) for n in range(3)))
    while not store._commits._committers:  # until the first group's commit is queued behind the three
        await asyncio.sleep(0)
    second = asyncio.gather(*(store.add_jobs([new_job(f"b{n}")]) for n in range(3)))
    await asyncio.gather(first, second)
    await store._db.set_trace_callback(None)
    assert statements.count("COMMIT") == 2
    assert stored_ids(path) == {"a0", "a1", "a2", "b0", "b1", "b2"}
    await store.close()


async def test_a_failing_writer_is_rolled_back_alone(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    store = await SqliteStore.open(path)
    await store.add_jobs([new_job("dup")])
    key = IdempotencyRow("scope", "key", "hash", 202, '{"jobs": ["k1"]}', 100.0)
    statements = await recording(store)
    results = await asyncio.gather(
        store.add_jobs([new_job("before")]),
        store.add_jobs([new_job("fresh"), new_job("dup")]),  # a constraint error halfway through
        store.add_jobs([new_job("k1")], idempotency=key),
        store.add_jobs([new_job("k2")], idempotency=key),  # the key is held: nothing stored
        store.add_jobs([new_job("full")], max_queued=3),  # its queue count sees the group's writes
        store.add_jobs([new_job("after")]),
        return_exceptions=True,
    )
    await store._db.set_trace_callback(None)
    await store.close()
    assert statements.count("COMMIT") == 1
    assert results[0] is None and results[2] is None and results[5] is None
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert results[3] == key
    assert isinstance(results[4], QueueFull)
    assert stored_ids(path) == {"dup", "before", "k1", "after"}


async def test_listeners_hear_each_committed_change_once_in_order(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    store = await SqliteStore.open(path)
    heard: list[tuple[str, State, State | None, bool]] = []

    def listener(changes: list[tuple[Job, State | None]]) -> None:
        committed = stored_ids(path)  # another connection sees only what is on disk
        heard.extend((job.id, job.state, before, job.id in committed) for job, before in changes)

    store.listen(listener)
    await store.add_jobs([new_job("a"), new_job("b")])
    await asyncio.gather(
        store.save(transition(new_job("a"), Submit(2.0)), expect=State.QUEUED),
        store.add_jobs([new_job("c")]),
        store.add_jobs([new_job("b")]),  # fails: heard of never
        store.save(transition(new_job("a"), Submit(3.0)), expect=State.QUEUED),  # not written: not heard
        store.claim("b", 4.0, "gw"),
        return_exceptions=True,
    )
    await store.close()
    assert heard == [
        ("a", State.QUEUED, None, True), ("b", State.QUEUED, None, True),
        ("a", State.SUBMITTED, State.QUEUED, True), ("c", State.QUEUED, None, True),
        ("b", State.SUBMITTED, State.QUEUED, True),
    ]


@pytest.mark.parametrize("turns", [0, 1, 3, 20])
async def test_a_cancelled_writer_leaves_the_others_be(tmp_path: Path, turns: int) -> None:
    path = tmp_path / "gateway.db"
    store = await SqliteStore.open(path)
    tasks = [asyncio.create_task(store.add_jobs([new_job(f"j{n}")])) for n in range(4)]
    for _ in range(turns):  # cancelled at some step of its write: waiting, writing or committing
        await asyncio.sleep(0)
    tasks[0].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await store.close()
    assert results[1:] == [None, None, None]
    assert {"j1", "j2", "j3"} <= stored_ids(path)


@pytest.fixture
async def group(tmp_path: Path) -> AsyncIterator[tuple[GroupCommit, aiosqlite.Connection]]:
    db = await aiosqlite.connect(tmp_path / "t.db", isolation_level=None)
    await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    yield GroupCommit(db, notify=lambda changes: None), db
    await db.close()


async def test_when_sqlite_ends_the_transaction_its_whole_group_fails(
        group: tuple[GroupCommit, aiosqlite.Connection]) -> None:
    commits, db = group

    async def insert(sql: str, value: int) -> None:
        async with commits.write() as w:
            await w.db.execute(sql, (value,))

    await insert("INSERT INTO t VALUES (?)", 1)
    results = await asyncio.gather(
        insert("INSERT INTO t VALUES (?)", 2),
        insert("INSERT OR ROLLBACK INTO t VALUES (?)", 1),  # SQLite rolls back the whole transaction
        insert("INSERT INTO t VALUES (?)", 3),  # already waiting: starts a group of its own
        return_exceptions=True,
    )
    await commits.drain()
    assert isinstance(results[0], sqlite3.IntegrityError)  # its write was lost with the transaction
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert results[2] is None
    async with db.execute("SELECT id FROM t ORDER BY id") as cur:
        assert [r[0] for r in await cur.fetchall()] == [1, 3]
    assert not db.in_transaction
