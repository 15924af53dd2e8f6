from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.errors import QueueFull
from gateway.jobs import Complete, Fail, Job, Start, State, StoredImage, Submit, transition
from gateway.storage import ApiKeyRow, Attempt, IdempotencyRow, SavedRow, Store
from gateway.store import MIGRATIONS, SqliteStore
from tests.conftest import Stores

# Tests taking `store`, `hooked` or `stores` run on SQLite and on PostgreSQL; those opening a
# database file themselves are about SQLite only.


def new_job(job_id: str, created: float = 1.0) -> Job:
    return Job(id=job_id, preset="p", label="Preset: P", params={"seed": 1, "positive": "ü"}, created_at=created)


@pytest.fixture
async def store(stores: Stores) -> Store:
    return await stores.open()


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


async def test_a_batch_is_stored_whole_or_not_at_all(stores: Stores) -> None:
    store = await stores.open()
    await store.add_jobs([new_job("dup")])
    with pytest.raises(stores.integrity_error):
        await store.add_jobs([new_job("fresh"), new_job("dup")])
    assert await store.get("fresh") is None


async def test_jobs_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    s = await SqliteStore.open(path)
    await s.add_jobs([new_job("kept")])
    await s.save(transition(new_job("kept"), Submit(2.0)))
    await s.close()
    s = await SqliteStore.open(path)  # migrations run again without harm
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
        await SqliteStore.open(path)


async def test_keys(store: Store) -> None:
    await store.add_key(ApiKeyRow("k1", "ci", "h1", 1.0, None))
    await store.add_key(ApiKeyRow("k2", "bot", "h2", 2.0, None))
    assert list(await store.active_keys()) == ["h1", "h2"]
    assert await store.revoke_key("bot", 3.0) == 1
    assert await store.revoke_key("bot", 4.0) == 0
    assert list(await store.active_keys()) == ["h1"]
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
    s = await SqliteStore.open(path)
    try:
        rows, total = await s.images(limit=5, offset=0)
        assert total == 1 and rows[0].id == "old-0" and rows[0].job.seed == 3 and rows[0].created_at == 2
    finally:
        await s.close()


# --- idempotency, webhook outbox, saved results ----------------------------------------------------

def render(job: Job, before: State) -> tuple[str, str] | None:
    """A stand-in for the API's renderer: terminal states only, the state in the body."""
    if job.state in (State.DONE, State.FAILED) and before is not job.state:
        return f"job.{job.state.value}", f'{{"id":"{job.id}","status":"{job.state.value}"}}'
    return None


@pytest.fixture
async def hooked(stores: Stores) -> Store:
    return await stores.open(webhook=render)


def hooked_job(job_id: str, url: str | None = "https://hooks.example.com/in") -> Job:
    return Job(id=job_id, preset="p", label="P", params={}, created_at=1.0, webhook_url=url,
               client_reference="ref-1", metadata={"user": "42"}, references=("gw_" + "a" * 40 + ".png",))


def done(job: Job) -> Job:
    return transition(transition(transition(job, Submit(2.0)), Start(3.0)), Complete(4.0, (StoredImage("x.png"),)))


async def test_new_job_fields_round_trip(hooked: Store) -> None:
    await hooked.add_jobs([hooked_job("a")])
    assert await hooked.get("a") == hooked_job("a")
    assert await hooked.live_references() == {"gw_" + "a" * 40 + ".png"}
    await hooked.save(done(hooked_job("a")))
    assert await hooked.live_references() == set()


async def test_a_terminal_save_writes_one_outbox_row_in_its_transaction(hooked: Store) -> None:
    await hooked.add_jobs([hooked_job("a"), hooked_job("quiet", url=None)])
    running = transition(transition(hooked_job("a"), Submit(2.0)), Start(3.0))
    await hooked.save(running)
    assert await hooked.deliveries_of("a") == []  # not terminal: nothing to deliver
    finished = done(hooked_job("a"))
    assert await hooked.save(finished, expect=State.RUNNING)
    assert not await hooked.save(finished, expect=State.RUNNING)  # lost compare-and-set: no second row
    assert await hooked.save(finished)  # same state again: no second row
    await hooked.save(done(hooked_job("quiet", url=None)))
    [(delivery, attempts)] = await hooked.deliveries_of("a")
    assert (delivery.event, delivery.url, delivery.state, delivery.attempts, attempts) == (
        "job.done", "https://hooks.example.com/in", "pending", 0, [])
    assert delivery.payload == '{"id":"a","status":"done"}'
    assert delivery.id.startswith("msg_")
    assert await hooked.deliveries_of("quiet") == []


async def test_the_outbox_row_rolls_back_with_the_job(stores: Stores) -> None:
    def broken(job: Job, before: State) -> tuple[str, str] | None:
        raise RuntimeError("render failed")

    store = await stores.open(webhook=broken)
    await store.add_jobs([hooked_job("a")])
    with pytest.raises(RuntimeError):
        await store.save(done(hooked_job("a")))
    job = await store.get("a")
    assert job is not None and job.state is State.QUEUED  # neither the state nor a row


async def test_cancelling_the_queue_writes_rows_for_hooked_jobs(hooked: Store) -> None:
    await hooked.add_jobs([hooked_job("a"), hooked_job("b", url=None), hooked_job("c")])
    assert await hooked.fail_queued("cancelled", 9.0) == 3
    rows = [d for job_id in ("a", "b", "c") for d, _ in await hooked.deliveries_of(job_id)]
    assert [(d.job_id, d.event, d.payload) for d in rows] == [
        ("a", "job.failed", '{"id":"a","status":"failed"}'), ("c", "job.failed", '{"id":"c","status":"failed"}')]


async def test_attempts_move_a_delivery_on_and_survive_reopening(stores: Stores) -> None:
    store = await stores.open(webhook=render)
    await store.add_jobs([hooked_job("a"), hooked_job("b")])
    await store.save(done(hooked_job("a")))
    await store.save(done(hooked_job("b")))
    (a, _), = await store.deliveries_of("a")
    (b, _), = await store.deliveries_of("b")
    claimed = await store.claim_deliveries(a.created_at + 1, lease_until=a.created_at + 50)
    assert {d.id for d in claimed} == {a.id, b.id}
    assert await store.claim_deliveries(a.created_at + 1, a.created_at + 50) == []  # being sent: not twice
    assert await store.next_delivery_at() == a.created_at + 50
    await store.record_attempt(Attempt(a.id, 1, 10.0, 0.25, 500, "answered HTTP 500"), delivered=False,
                               retry_at=a.created_at + 100)
    await store.record_attempt(Attempt(b.id, 1, 10.0, 0.1, None, "refused"), delivered=False, retry_at=None)
    assert await store.claim_deliveries(a.created_at + 99, a.created_at + 150) == []
    assert await store.next_delivery_at() == a.created_at + 100
    await stores.close(store)

    store = await stores.open(webhook=render)  # a restart keeps the pending delivery
    [due] = await store.claim_deliveries(a.created_at + 100, a.created_at + 150)
    assert (due.id, due.attempts) == (a.id, 1)
    await store.record_attempt(Attempt(a.id, 2, 20.0, 0.05, 204, None), delivered=True, retry_at=None)
    [(final, attempts)] = await store.deliveries_of("a")
    assert (final.state, final.attempts, final.next_attempt_at) == ("delivered", 2, None)
    assert [(x.attempt, x.status_code, x.error) for x in attempts] == [(1, 500, "answered HTTP 500"),
                                                                     (2, 204, None)]
    [(gave_up, _)] = await store.deliveries_of("b")
    assert gave_up.state == "failed"
    assert await store.next_delivery_at() is None


async def test_an_idempotency_key_is_stored_with_its_jobs_once(store: Store) -> None:
    row = IdempotencyRow("scope", "key-1", "hash", 202, '{"jobs": []}', 100.0)
    assert await store.add_jobs([new_job("a")], idempotency=row) is None
    again = IdempotencyRow("scope", "key-1", "other", 202, "{}", 101.0)
    assert await store.add_jobs([new_job("b")], idempotency=again) == row
    assert await store.get("b") is None
    other_scope = IdempotencyRow("scope-2", "key-1", "hash", 202, "{}", 101.0)
    assert await store.add_jobs([new_job("c")], idempotency=other_scope) is None
    # an expired key is forgotten: the new request wins
    assert await store.add_jobs([new_job("d")], idempotency=again, forget_before=100.5) is None
    assert await store.get("d") is not None
    assert await store.forget_idempotency(101.0) == 0
    assert await store.forget_idempotency(102.0) == 2


async def test_a_full_queue_stores_no_idempotency_key(store: Store) -> None:
    row = IdempotencyRow("scope", "key", "hash", 202, "{}", 1.0)
    with pytest.raises(QueueFull):
        await store.add_jobs([new_job("a"), new_job("b")], max_queued=1, idempotency=row)
    assert await store.add_jobs([new_job("a")], max_queued=1, idempotency=row) is None


async def test_saved_rows(store: Store) -> None:
    for i in range(3):
        await store.add_saved(SavedRow(f"s{i}", f"label {i}", "job", f"saved/{i}.png", float(i)))
    rows, total = await store.list_saved(2, 0)
    assert ([r.id for r in rows], total) == (["s2", "s1"], 3)
    rows, total = await store.list_saved(2, 2)
    assert ([r.id for r in rows], total) == (["s0"], 3)
    assert await store.get_saved("s1") == SavedRow("s1", "label 1", "job", "saved/1.png", 1.0)
    assert await store.delete_saved("s1") == SavedRow("s1", "label 1", "job", "saved/1.png", 1.0)
    assert await store.delete_saved("s1") is None
    assert await store.get_saved("s1") is None


async def test_jobs_of_an_older_schema_read_with_empty_new_fields(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    with sqlite3.connect(path) as db:
        db.executescript(f"BEGIN; {MIGRATIONS[0]}; PRAGMA user_version=1; COMMIT;")
        db.execute("INSERT INTO jobs (id, preset, label, state, params, created_at) "
                   "VALUES ('old', 'p', 'P', 'queued', '{}', 1.0)")
    store = await SqliteStore.open(path)
    try:
        job = await store.get("old")
        assert job is not None
        assert (job.client_reference, job.metadata, job.webhook_url, job.references) == (None, {}, None, ())
    finally:
        await store.close()


async def test_an_older_database_starts_its_queue_size_from_its_waiting_jobs(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    with sqlite3.connect(path) as db:
        db.executescript(f"BEGIN; {MIGRATIONS[0]}; PRAGMA user_version=1; COMMIT;")
        db.executemany("INSERT INTO jobs (id, preset, label, state, params, created_at) "
                       "VALUES (?, 'p', 'P', ?, '{}', 1.0)",
                       [("a", "queued"), ("b", "done"), ("c", "queued"), ("d", "running")])
    store = await SqliteStore.open(path)
    try:
        assert await store.count_queued() == 2
    finally:
        await store.close()


QUEUE_CHANGES = {
    "add": lambda s: s.add_jobs([new_job("a"), new_job("b"), new_job("c"), new_job("d")]),
    "submit": lambda s: s.save(transition(new_job("a"), Submit(2.0))),
    "resubmit": lambda s: s.save(transition(new_job("a"), Submit(3.0))),  # submitted -> submitted
    "requeue": lambda s: s.save(new_job("a")),
    "claim": lambda s: s.claim("b", 2.0, "gw"),
    "claim again": lambda s: s.claim("b", 2.0, "gw"),
    "fail the queue": lambda s: s.fail_queued("stopped", 3.0),
    "add more": lambda s: s.add_jobs([new_job("e"), new_job("f")]),
    "refused": lambda s: s.add_jobs([new_job("g")], max_queued=2),
}


async def test_the_queue_size_follows_every_change_of_the_queue(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    store = await SqliteStore.open(path)

    def counted() -> int:
        with sqlite3.connect(path) as db:
            return int(db.execute("SELECT count(*) FROM jobs WHERE state='queued'").fetchone()[0])

    try:
        for name, change in QUEUE_CHANGES.items():
            with contextlib.suppress(QueueFull):
                await change(store)
            assert await store.count_queued() == counted(), name
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM jobs WHERE id IN ('e', 'a')")  # one waiting, one failed
        assert await store.count_queued() == counted() == 1
    finally:
        await store.close()


async def test_a_claim_whose_attempt_was_never_recorded_is_due_again(hooked: Store) -> None:
    await hooked.add_jobs([hooked_job("a")])
    await hooked.save(done(hooked_job("a")))
    [claimed] = await hooked.claim_deliveries(1e12, lease_until=1e12 + 40)  # then the process dies
    assert await hooked.claim_deliveries(1e12 + 39, 1e12 + 80) == []
    [again] = await hooked.claim_deliveries(1e12 + 40, 1e12 + 80)
    assert again.id == claimed.id and again.attempts == 0


# --- several gateways on one database ------------------------------------------------------------

async def test_claims_take_the_queue_in_order_and_mark_the_owner(store: Store) -> None:
    heard: list[tuple[str, State, State | None]] = []
    store.listen(lambda changes: heard.extend((j.id, j.state, before) for j, before in changes))
    await store.add_jobs([new_job("a"), new_job("b")])
    first = await store.claim("a", 5.0, "gw-1")
    assert first == transition(new_job("a"), Submit(5.0))
    assert await store.get("a") == first
    assert await store.claim("a", 6.0, "gw-2") is None  # taken already
    second = await store.claim("b", 6.0, "gw-2")
    assert second is not None and second.id == "b"
    assert await store.claim("missing", 7.0, "gw-1") is None
    assert [j.id for j in await store.in_comfy(owner="gw-1")] == ["a"]
    assert [j.id for j in await store.in_comfy()] == ["a", "b"]
    assert heard[2:] == [("a", State.SUBMITTED, State.QUEUED), ("b", State.SUBMITTED, State.QUEUED)]


async def test_replicas_claiming_at_once_take_each_job_once(stores: Stores) -> None:
    replicas = [await stores.open() for _ in range(3)]
    await replicas[0].add_jobs([new_job(f"j{i:03}") for i in range(60)])

    async def drain(store: Store, owner: str) -> list[str]:
        taken = []
        while window := await store.queue_window(1):  # all claimers choose the same head
            job = await store.claim(window[0].id, 1.0, owner)
            if job is not None:
                taken.append(job.id)
        return taken

    taken = await asyncio.gather(*(drain(s, f"gw-{n}") for n, s in enumerate(replicas) for _ in range(2)))
    claimed = [job_id for batch in taken for job_id in batch]
    assert sorted(claimed) == [f"j{i:03}" for i in range(60)]  # every job, none twice
    for n, store in enumerate(replicas):
        owned = {j.id for j in await store.in_comfy(owner=f"gw-{n}")}
        assert owned == set(taken[2 * n] + taken[2 * n + 1])


async def test_jobs_of_a_replica_whose_lease_ran_out_are_taken_over_once(stores: Stores) -> None:
    a, b = await stores.open(), await stores.open()
    await a.add_jobs([new_job("x"), new_job("y"), new_job("z"), new_job("orphan")])
    await a.claim("x", 1.0, "gw-a")
    await a.claim("y", 1.0, "gw-a")
    assert await a.heartbeat("gw-a", 100.0, 30.0) == []  # its own jobs are not taken again
    await a.save(transition(new_job("orphan"), Submit(1.0)))  # in ComfyUI, no owner (an older gateway's)
    assert [j.id for j in await b.heartbeat("gw-b", 110.0, 30.0)] == ["orphan"]
    assert await b.heartbeat("gw-b", 129.0, 30.0) == []  # gw-a is alive until 130
    taken = await asyncio.gather(b.heartbeat("gw-b", 131.0, 30.0), a.heartbeat("gw-c", 131.0, 30.0))
    assert sorted(len(t) for t in taken) == [0, 2]  # one replica takes both jobs
    winner = "gw-b" if taken[0] else "gw-c"
    assert [j.id for j in await a.in_comfy(owner=winner)] == ["x", "y"] + (["orphan"] if winner == "gw-b" else [])
    assert await a.heartbeat("gw-a", 132.0, 30.0) == []  # back too late: its jobs stay taken
    assert await a.in_comfy(owner="gw-a") == []


async def test_one_idempotency_key_sent_to_two_replicas_stores_one_batch(stores: Stores) -> None:
    a, b = await stores.open(), await stores.open()
    first = IdempotencyRow("scope", "key", "hash", 202, '{"jobs": ["a"]}', 100.0)
    second = IdempotencyRow("scope", "key", "hash", 202, '{"jobs": ["b"]}', 100.0)
    answers = await asyncio.gather(a.add_jobs([new_job("a")], idempotency=first),
                                   b.add_jobs([new_job("b")], idempotency=second))
    stored = [job_id for job_id in ("a", "b") if await a.get(job_id) is not None]
    assert len(stored) == 1
    assert answers.count(None) == 1
    assert [r for r in answers if r is not None] == [first if stored == ["a"] else second]


async def test_replicas_claim_each_webhook_delivery_once(stores: Stores) -> None:
    a, b = await stores.open(webhook=render), await stores.open(webhook=render)
    await a.add_jobs([hooked_job(f"h{i}") for i in range(20)])
    for i in range(20):
        await a.save(done(hooked_job(f"h{i}")))
    now = 1e12
    claimed = await asyncio.gather(*(s.claim_deliveries(now, now + 30, limit=3) for s in (a, b) * 5))
    ids = [d.id for batch in claimed for d in batch]
    assert len(ids) == len(set(ids)) == 20


def job_with(job_id: str, *, priority: int = 0, checkpoint: str | None = None) -> Job:
    params: dict[str, str | int | float] = {"seed": 1} | ({"checkpoint": checkpoint} if checkpoint else {})
    return Job(id=job_id, preset="p", label="L", params=params, created_at=1.0, priority=priority)


async def test_the_queue_window_is_in_priority_then_arrival_order(store: Store) -> None:
    await store.add_jobs([job_with("low", priority=-1), job_with("a", checkpoint="A.safetensors"),
                          job_with("urgent", priority=5, checkpoint="B.safetensors"), job_with("b")])
    window = await store.queue_window(10)
    assert [(c.id, c.priority, c.checkpoint) for c in window] == [
        ("urgent", 5, "B.safetensors"), ("a", 0, "A.safetensors"), ("b", 0, None), ("low", -1, None)]
    assert [c.id for c in await store.queue_window(2)] == ["urgent", "a"]
    first = await store.next_queued()
    assert first is not None and first.id == "urgent" and first.priority == 5


async def test_the_queue_window_reads_an_index_not_the_table(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "gateway.db")
    async with store._db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE state='queued' ORDER BY priority DESC, seq LIMIT 32"
    ) as cur:
        plan = " ".join(str(r[3]) for r in await cur.fetchall())
    await store.close()
    assert "jobs_queue" in plan and "TEMP B-TREE" not in plan


async def test_overtaking_is_counted_and_survives_reopening(stores: Stores) -> None:
    s = await stores.open()
    await s.add_jobs([job_with(i) for i in "abcdef"])
    await s.mark_passed(["a", "b"], 10.0)
    await s.mark_passed(["a"], 20.0)
    await s.mark_passed([], 30.0)
    _, _, c, d, e, f = await s.queue_window(10)
    claimed = await s.claim("e", 40.0, "gw", passed=[c, d])
    assert claimed is not None and claimed.state is State.SUBMITTED
    assert await s.claim("e", 50.0, "gw", passed=[f]) is None  # taken: nothing is counted
    assert await s.claim("f", 50.0, "gw", passed=[c]) is None  # `c` was passed again since: stale
    await stores.close(s)
    s = await stores.open()
    window = {w.id: (w.overtaken, w.passed_at) for w in await s.queue_window(10)}
    assert window == {"a": (2, 10.0), "b": (1, 10.0), "c": (1, 40.0), "d": (1, 40.0), "f": (0, None)}
    assert await s.claim("f", 60.0, "gw", passed=[replace(c, overtaken=1), e]) is not None  # e: not waiting


async def test_replicas_choosing_and_passing_at_once_take_each_job_once(stores: Stores) -> None:
    replicas = [await stores.open() for _ in range(3)]
    await replicas[0].add_jobs([job_with(f"j{i:02}", priority=i % 3) for i in range(45)])

    async def drain(store: Store, owner: str, overtake: bool) -> list[str]:
        taken = []
        while window := await store.queue_window(4):  # some take the last, passing the others
            chosen, passed = (window[-1], window[:-1]) if overtake else (window[0], [])
            job = await store.claim(chosen.id, 1.0, owner, passed=passed)
            if job is not None:
                taken.append(job.id)
        return taken

    taken = await asyncio.gather(*(drain(s, f"gw-{n}", overtake) for n, s in enumerate(replicas)
                                   for overtake in (True, False)))
    assert sorted(job_id for batch in taken for job_id in batch) == [f"j{i:02}" for i in range(45)]
    assert all(job.state is State.SUBMITTED for job in await replicas[0].in_comfy())


async def test_queue_positions_follow_priority(store: Store) -> None:
    await store.add_jobs([job_with("a"), job_with("b"), job_with("vip", priority=3)])
    await store.save(transition(job_with("a"), Submit(2.0)))
    assert await store.queue_positions(["a", "b", "vip"]) == {"a": 1, "vip": 2, "b": 3}


async def test_live_counts(store: Store) -> None:
    await store.add_jobs([new_job("a"), new_job("b"), new_job("c")])
    await store.save(transition(new_job("a"), Submit(2.0)))
    await store.save(transition(new_job("b"), Fail(2.0, "x")))
    assert await store.live_counts() == {State.QUEUED: 1, State.SUBMITTED: 1}


async def test_a_key_keeps_its_maximum_priority(store: Store) -> None:
    await store.add_key(ApiKeyRow("k1", "batch", "h1", 1.0, None))
    await store.add_key(ApiKeyRow("k2", "vip", "h2", 2.0, None, max_priority=7))
    assert await store.active_keys() == {"h1": None, "h2": 7}
    assert [k.max_priority for k in await store.list_keys()] == [None, 7]
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
    store = await SqliteStore.open(path)
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
