"""The dispatcher in burst mode: real store, real client, the fake (or a real) ComfyUI."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.comfy.client import ComfyClient
from gateway.compiler import plan_jobs
from gateway.dispatcher import Dispatcher
from gateway.jobs import Job, State, Submit, transition
from gateway.models import GenerateRequest
from gateway.outputs_local import LocalOutputStore
from gateway.presets import load_presets
from gateway.scheduling import Fairness
from gateway.storage import Store
from tests.conftest import Comfy, Stores
from tests.helpers import ROOT

PRESETS = load_presets(ROOT / "presets.yaml")


def jobs_for(count: int, seed: int = 1) -> list[Job]:
    params = plan_jobs(PRESETS["example_01"], GenerateRequest(count=count, seed=seed, width=64, height=64), 0)
    return [Job(id=f"job-{seed}-{i}-{time.monotonic_ns()}", preset="example_01", label="Preset: Example Preset",
                params=p, created_at=time.time()) for i, p in enumerate(params)]


@pytest.fixture
async def store(stores: Stores) -> Store:
    """The dispatcher on each backend (SQLite, PostgreSQL)."""
    return await stores.open()


@pytest.fixture
async def dispatcher(store: Store, comfy: Comfy, tmp_path: Path) -> AsyncIterator[Dispatcher]:
    async with aiohttp.ClientSession() as session:
        client = ComfyClient(base_url=comfy.url, session=session, client_id=f"test-{time.monotonic_ns()}")
        yield Dispatcher(store=store, client=client, outputs=LocalOutputStore(tmp_path / "uploads"),
                         presets=lambda: PRESETS, max_in_flight=2)


async def test_burst_mode_drains_the_queue_and_stops(store: Store, dispatcher: Dispatcher, tmp_path: Path) -> None:
    jobs = jobs_for(5)
    await store.add_jobs(jobs)
    await asyncio.wait_for(dispatcher.run(until_idle=True), timeout=60)
    stored = [await store.get(j.id) for j in jobs]
    assert [j.state for j in stored if j] == [State.DONE] * 5
    for job in stored:
        assert job is not None and job.attempts == 1
        assert (tmp_path / "uploads" / job.images[0].relative_path).is_file()


async def test_burst_mode_with_nothing_to_do_returns(dispatcher: Dispatcher) -> None:
    await asyncio.wait_for(dispatcher.run(until_idle=True), timeout=10)


async def test_a_job_marked_submitted_but_never_posted_runs_once(
    store: Store, dispatcher: Dispatcher, comfy: Comfy
) -> None:
    """The process died between writing `submitted` and posting: ComfyUI has never seen the job."""
    job = jobs_for(1, seed=77)[0]
    await store.add_jobs([job])
    await store.save(transition(job, Submit(time.time())))
    await asyncio.wait_for(dispatcher.run(until_idle=True), timeout=60)
    done = await store.get(job.id)
    assert done is not None and done.state is State.DONE
    assert done.attempts == 2  # requeued once, posted once
    if comfy.fake:
        assert comfy.fake.prompt_counts[job.id] == 1


async def test_a_job_whose_preset_was_removed_fails(store: Store, dispatcher: Dispatcher) -> None:
    job = Job(id="orphan", preset="gone", label="Preset: Gone", params={}, created_at=time.time())
    await store.add_jobs([job])
    await asyncio.wait_for(dispatcher.run(until_idle=True), timeout=10)
    failed = await store.get("orphan")
    assert failed is not None and failed.state is State.FAILED
    assert failed.error == "preset 'gone' no longer exists"


async def two_checkpoints(comfy: Comfy) -> tuple[str, str]:
    if comfy.fake is not None:
        return "tiny.safetensors", "other.safetensors"
    async with aiohttp.ClientSession() as session, session.get(f"{comfy.url}/models/checkpoints") as resp:
        names = sorted(await resp.json())
    if len(names) < 2:
        pytest.skip("the ComfyUI under test has fewer than two checkpoints")
    return names[0], names[1]


def sd15_jobs(checkpoints: list[str], *, priorities: list[int] | None = None) -> list[Job]:
    jobs = []
    for i, checkpoint in enumerate(checkpoints):
        body = GenerateRequest(checkpoint=checkpoint, width=64, height=64, steps=2, seed=i)
        params = plan_jobs(PRESETS["sd15"], body, 0)[0]
        jobs.append(Job(id=f"sd-{i}-{time.monotonic_ns()}", preset="sd15", label="Preset: SD", params=params,
                        created_at=time.time(), priority=priorities[i] if priorities else 0))
    return jobs


def run_order(stored: list[Job | None]) -> list[Job]:
    done = [j for j in stored if j is not None and j.state is State.DONE and j.started_at is not None]
    assert len(done) == len(stored)
    return sorted(done, key=lambda j: j.started_at or 0.0)


@pytest.mark.timeout(150)  # a real ComfyUI on a busy CPU: its sd15 jobs take seconds each
async def run_all(store: Store, comfy: Comfy, tmp_path: Path, jobs: list[Job], *, max_in_flight: int,
                  max_skips: int) -> tuple[list[Job], Dispatcher]:
    """Run the stored `jobs` to the end with affinity bounded by `max_skips`: the jobs in the order
    they ran, and the dispatcher that ran them."""
    async with aiohttp.ClientSession() as session:
        client = ComfyClient(base_url=comfy.url, session=session, client_id=f"test-{time.monotonic_ns()}")
        dispatcher = Dispatcher(store=store, client=client, outputs=LocalOutputStore(tmp_path / "uploads"),
                                presets=lambda: PRESETS, max_in_flight=max_in_flight,
                                fairness=Fairness(max_skips=max_skips, max_wait=3600.0))
        await asyncio.wait_for(dispatcher.run(until_idle=True), timeout=120)
    return run_order([await store.get(j.id) for j in jobs]), dispatcher


async def test_affinity_batches_jobs_by_checkpoint_within_the_bound(
    store: Store, comfy: Comfy, tmp_path: Path
) -> None:
    a, b = await two_checkpoints(comfy)
    jobs = sd15_jobs([a, b] * 4)
    await store.add_jobs(jobs)
    order, dispatcher = await run_all(store, comfy, tmp_path, jobs, max_in_flight=2, max_skips=2)
    arrival = [j.id for j in jobs]
    overtaken = [sum(1 for later in order[:i] if arrival.index(later.id) > arrival.index(job.id))
                 for i, job in enumerate(order)]
    assert max(overtaken) == 2  # the bound, reached
    checkpoints = [j.params["checkpoint"] for j in order]
    changes = sum(x != y for x, y in itertools.pairwise(checkpoints))
    assert checkpoints == [a] * 3 + [b] * 4 + [a]  # first come would change 7 times
    assert dispatcher.backend.model_swaps == changes
    if comfy.fake:
        assert comfy.fake.model_loads == changes + 1


@pytest.mark.timeout(150)  # a real ComfyUI on a busy CPU: its sd15 jobs take seconds each
async def test_higher_priority_runs_first_whatever_the_checkpoint(
    store: Store, comfy: Comfy, tmp_path: Path
) -> None:
    a, b = await two_checkpoints(comfy)
    jobs = sd15_jobs([a, a, b, a], priorities=[0, -2, 5, 0])
    await store.add_jobs(jobs)
    order, _ = await run_all(store, comfy, tmp_path, jobs, max_in_flight=1, max_skips=3)
    assert [jobs.index(next(j for j in jobs if j.id == done.id)) for done in order] == [2, 0, 3, 1]


async def test_a_job_is_run_without_reading_it_back_from_the_store(
    store: Store, dispatcher: Dispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dispatcher writes each state change from the job it claimed: the store is read for a
    job only when a compare-and-set loses (a cancellation came in between)."""
    jobs = jobs_for(3, seed=5)
    await store.add_jobs(jobs)
    reads: list[str] = []
    get = store.get

    async def counted(job_id: str) -> Job | None:
        reads.append(job_id)
        return await get(job_id)

    monkeypatch.setattr(store, "get", counted)
    await asyncio.wait_for(dispatcher.run(until_idle=True), timeout=60)
    monkeypatch.undo()
    assert reads == []
    for job in jobs:
        done = await store.get(job.id)
        assert done is not None and done.state is State.DONE and done.started_at is not None
