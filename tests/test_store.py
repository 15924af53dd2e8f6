from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.jobs import Complete, Job, Start, State, StoredImage, Submit, transition
from gateway.store import MIGRATIONS, ApiKeyRow, Store


def new_job(job_id: str, created: float = 1.0) -> Job:
    return Job(id=job_id, preset="p", label="Preset: P", params={"seed": 1, "positive": "ü"}, created_at=created)


@pytest.fixture
async def store(tmp_path: Path):
    s = await Store.open(tmp_path / "db" / "gateway.db")
    yield s
    await s.close()


async def test_add_get_save_round_trip(store: Store) -> None:
    await store.add_jobs([new_job("a"), new_job("b")])
    assert await store.get("a") == new_job("a")
    assert await store.get("missing") is None
    job = transition(transition(transition(new_job("a"), Submit(2.0)), Start(3.0)),
                     Complete(4.0, (StoredImage("presets/p/x.png", "9"),)))
    await store.save(job)
    assert await store.get("a") == job


async def test_queue_order_and_in_comfy(store: Store) -> None:
    await store.add_jobs([new_job("first"), new_job("second"), new_job("third")])
    first = await store.next_queued()
    assert first is not None and first.id == "first"
    await store.save(transition(first, Submit(5.0)))
    nxt = await store.next_queued()
    assert nxt is not None and nxt.id == "second"
    assert [j.id for j in await store.in_comfy()] == ["first"]
    assert await store.count_queued() == 2


async def test_a_batch_is_stored_whole_or_not_at_all(store: Store) -> None:
    await store.add_jobs([new_job("dup")])
    with pytest.raises(sqlite3.IntegrityError):
        await store.add_jobs([new_job("fresh"), new_job("dup")])
    assert await store.get("fresh") is None


async def test_jobs_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    s = await Store.open(path)
    await s.add_jobs([new_job("kept")])
    await s.save(transition(new_job("kept"), Submit(2.0)))
    await s.close()
    s = await Store.open(path)  # migrations run again without harm
    try:
        job = await s.get("kept")
        assert job is not None and job.state is State.SUBMITTED
    finally:
        await s.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        await Store.open(path)


async def test_keys(store: Store) -> None:
    await store.add_key(ApiKeyRow("k1", "ci", "h1", 1.0, None))
    await store.add_key(ApiKeyRow("k2", "bot", "h2", 2.0, None))
    assert await store.active_key_hashes() == ["h1", "h2"]
    assert await store.revoke_key("bot", 3.0) == 1
    assert await store.revoke_key("bot", 4.0) == 0
    assert await store.active_key_hashes() == ["h1"]
    assert [(k.name, k.revoked_at) for k in await store.list_keys()] == [("ci", None), ("bot", 3.0)]


async def test_meta_value_is_kept(store: Store) -> None:
    assert await store.meta_value("client", "first") == "first"
    assert await store.meta_value("client", "second") == "first"
