from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.jobs import Complete, Fail, Job, Start, State, StoredImage, Submit, transition
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


def run(job: Job, *, at: float = 2.0) -> Job:
    return transition(transition(job, Submit(at)), Start(at + 1))


async def test_listeners_hear_committed_changes_with_the_state_before(store: Store) -> None:
    heard: list[tuple[str, State, State | None]] = []
    store.listen(lambda changes: heard.extend((j.id, j.state, before) for j, before in changes))
    await store.add_jobs([new_job("a"), new_job("b")])
    submitted = transition(new_job("a"), Submit(2.0))
    assert await store.save(submitted, expect=State.QUEUED)
    assert not await store.save(submitted, expect=State.QUEUED)  # not written: not heard
    assert await store.fail_queued("cancelled", 3.0) == 1
    assert heard == [("a", State.QUEUED, None), ("b", State.QUEUED, None), ("a", State.SUBMITTED, State.QUEUED),
                     ("b", State.FAILED, State.QUEUED)]


async def test_queue_positions_count_every_waiting_job_ahead(store: Store) -> None:
    await store.add_jobs([new_job(n) for n in ("a", "b", "c", "d")])
    await store.save(run(new_job("a")))              # running: no longer waiting
    await store.save(transition(new_job("b"), Submit(2.0)))  # in ComfyUI's queue: still waiting
    assert await store.queue_positions(["d", "b", "a", "zzz", "c"]) == {"b": 1, "c": 2, "d": 3}
    assert await store.queue_positions([]) == {}


async def test_counts_live_jobs_and_recent_finished_ones(store: Store) -> None:
    await store.add_jobs([new_job(n) for n in ("q", "r", "old", "new", "bad")])
    await store.save(run(new_job("r")))
    await store.save(transition(run(new_job("old")), Complete(10.0, (StoredImage("presets/p/o.png"),))))
    await store.save(transition(run(new_job("new")), Complete(100.0, (StoredImage("presets/p/n.png"),))))
    await store.save(transition(new_job("bad"), Fail(101.0, "x")))
    counts = await store.counts(since=50.0)
    assert (counts.waiting, counts.running, counts.done_since, counts.failed_since) == (1, 1, 1, 1)
    assert await store.recent_durations(5) == [97.0, 7.0]


async def test_done_jobs_images_reach_the_gallery_newest_first(store: Store) -> None:
    await store.add_jobs([Job(id=n, preset=p, label="L", params={"seed": s}, created_at=1.0)
                          for n, p, s in (("a", "p", 1), ("b", "q", 2))])
    imgs = (StoredImage("presets/p/1.png", "9", "presets/p/1.webp"), StoredImage("presets/p/2.png", "9"))
    await store.save(transition(run(Job(id="a", preset="p", label="L", params={"seed": 1}, created_at=1.0)),
                                Complete(5.0, imgs)))
    await store.save(transition(run(Job(id="b", preset="q", label="L", params={"seed": 2}, created_at=1.0)),
                                Complete(6.0, (StoredImage("presets/q/3.png"),))))
    rows, total = await store.images(limit=10, offset=0)
    assert total == 3
    assert [(r.id, r.image.relative_path, r.image.thumb_path, r.job.seed) for r in rows] == [
        ("b-0", "presets/q/3.png", None, 2), ("a-1", "presets/p/2.png", None, 1),
        ("a-0", "presets/p/1.png", "presets/p/1.webp", 1)]
    rows, total = await store.images(limit=1, offset=1, preset="p")
    assert total == 2 and [r.id for r in rows] == ["a-0"]


async def test_the_gallery_migration_takes_in_earlier_results(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(f"BEGIN; {MIGRATIONS[0]}; PRAGMA user_version=1; COMMIT;")
    db.execute("INSERT INTO jobs (id, preset, label, state, params, images, created_at, finished_at) "
               "VALUES ('old', 'p', 'L', 'done', '{\"seed\": 3}', '[{\"relative_path\": \"presets/p/o.png\"}]', 1, 2)")
    db.commit()
    db.close()
    s = await Store.open(path)
    try:
        rows, total = await s.images(limit=5, offset=0)
        assert total == 1 and rows[0].id == "old-0" and rows[0].job.seed == 3 and rows[0].created_at == 2
    finally:
        await s.close()


QUEUE_READS = {
    "next_queued": lambda s: s.next_queued(),
    "count_queued": lambda s: s.count_queued(),
    "in_comfy": lambda s: s.in_comfy(),
    "queue_positions": lambda s: s.queue_positions(["a"]),
    "counts": lambda s: s.counts(since=0.0),
    "add_jobs with max_queued": lambda s: s.add_jobs([new_job("z")], max_queued=10),
}


@pytest.mark.parametrize("read", QUEUE_READS.values(), ids=QUEUE_READS.keys())
async def test_queue_queries_search_an_index_instead_of_scanning_every_job(tmp_path: Path, read) -> None:
    path = tmp_path / "gateway.db"
    store = await Store.open(path)
    try:
        await store.add_jobs([new_job("a"), new_job("b")])
        statements: list[str] = []
        await store._db.set_trace_callback(statements.append)
        await read(store)
        await store._db.set_trace_callback(None)
    finally:
        await store.close()
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert selects
    with sqlite3.connect(path) as db:
        plans = {sql: [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}")] for sql in selects}
    assert not {sql: plan for sql, plan in plans.items() if any(p.startswith("SCAN jobs") for p in plan)}
