"""Two gateway processes on one PostgreSQL database and one (fake) ComfyUI: the queue is shared,
every job is dispatched once, and the jobs of a replica that dies are finished by the other."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.conftest import API_KEY
from tests.fake_comfy import FakeComfyUI
from tests.helpers import ROOT, free_port, gateway_process, sse_events, wait_ready

HEADERS = {"X-API-Key": API_KEY}


@dataclass
class Replica:
    base: str
    process: asyncio.subprocess.Process


@asynccontextmanager
async def replicas(count: int, *, pg_url: str, fake: FakeComfyUI, tmp_path: Path, session: aiohttp.ClientSession,
                   without_comfyui: int = 0, **extra: str) -> AsyncIterator[list[Replica]]:
    """`count` gateway processes sharing the database and one data folder (the shared volume
    result files go to). The last `without_comfyui` of them reach no ComfyUI, so they never
    dispatch: all they know of jobs comes through the database."""
    async with AsyncExitStack() as stack:
        started = []
        for n in range(count):
            port = free_port()
            comfy_url = fake.url if n < count - without_comfyui else f"http://127.0.0.1:{free_port()}"
            env = {**os.environ, "GATEWAY_COMFYUI_URL": comfy_url, "GATEWAY_DATA_DIR": str(tmp_path / "data"),
                   "GATEWAY_DATABASE_URL": pg_url, "GATEWAY_PORT": str(port), "GATEWAY_HOST": "127.0.0.1",
                   "GATEWAY_API_KEY": API_KEY, "GATEWAY_PRESETS": str(ROOT / "presets.yaml"),
                   "GATEWAY_MAX_QUEUED": "100000", **extra}
            log = stack.enter_context((tmp_path / f"gateway-{n}.log").open("wb"))
            process = await stack.enter_async_context(gateway_process(env, log=log))
            started.append(Replica(f"http://127.0.0.1:{port}", process))
        for n, replica in enumerate(started):
            await wait_ready(session, replica.base, path="/readyz" if n < count - without_comfyui else "/healthz")
        yield started


async def generate(session: aiohttp.ClientSession, replica: Replica, count: int, seed: int,
                   preset: str = "example_01", **more: str | int) -> list[str]:
    async with session.post(f"{replica.base}/api/v1/generate/{preset}", headers=HEADERS,
                            json={"count": count, "seed": seed, "width": 64, "height": 64, **more}) as resp:
        assert resp.status == 202, await resp.text()
        return [job["job_id"] for job in (await resp.json())["jobs"]]


async def states(pg_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(pg_url)
    try:
        return {r[0]: r[1] for r in await conn.fetch("SELECT state, count(*) FROM jobs GROUP BY state")}
    finally:
        await conn.close()


async def wait_all_finished(pg_url: str, total: int) -> dict[str, int]:
    while True:
        found = await states(pg_url)
        if found.get("done", 0) + found.get("failed", 0) >= total:
            return found
        await asyncio.sleep(0.2)


MAX_SKIPS = 3


def plain(n: int) -> dict[str, str | int]:
    return {}


def mixed(n: int) -> dict[str, str | int]:
    """Four priorities; within each, requests alternate between the two checkpoints."""
    return {"preset": "sd15", "priority": n % 4, "checkpoint": ("tiny.safetensors", "other.safetensors")[n // 4 % 2]}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("request_fields", [plain, mixed])
async def test_two_replicas_dispatch_500_jobs_each_exactly_once(
        pg_url: str, fake: FakeComfyUI, tmp_path: Path, request_fields: Callable[[int], dict[str, str | int]]) -> None:
    async with aiohttp.ClientSession() as session, replicas(
            2, pg_url=pg_url, fake=fake, tmp_path=tmp_path, session=session, GATEWAY_MAX_IN_FLIGHT="4",
            GATEWAY_MAX_PRIORITY="3", GATEWAY_AFFINITY_MAX_SKIPS=str(MAX_SKIPS)) as gws:
        requests = [generate(session, gws[n % 2], 10, seed=1 + n * 10, **request_fields(n)) for n in range(50)]
        ids = [job_id for batch in await asyncio.gather(*requests) for job_id in batch]
        assert len(set(ids)) == 500
        finished = await asyncio.wait_for(wait_all_finished(pg_url, 500), timeout=540)
        async with session.get(f"{gws[1].base}/api/v1/job/{ids[0]}", headers=HEADERS) as resp:
            assert (await resp.json())["status"] == "done"  # a job queued through the other replica
    assert finished == {"done": 500}
    assert sorted(fake.prompt_counts) == sorted(ids)
    assert set(fake.prompt_counts.values()) == {1}  # each job reached ComfyUI exactly once
    assert sorted(fake.executed_ids) == sorted(ids)
    conn = await asyncpg.connect(pg_url)
    try:
        owners = {r[0]: r[1] for r in await conn.fetch("SELECT owner, count(*) FROM jobs GROUP BY owner")}
        overtaken = [r[0] for r in await conn.fetch("SELECT overtaken FROM jobs")]
    finally:
        await conn.close()
    assert len(owners) == 2 and all(count > 0 for count in owners.values()), owners  # both replicas worked
    assert max(overtaken) <= MAX_SKIPS  # the fairness bound holds across replicas
    if request_fields is mixed:
        assert sum(overtaken) > 0  # checkpoint affinity did reorder


@pytest.mark.timeout(300)
async def test_the_jobs_of_a_replica_killed_mid_batch_are_finished_by_the_other(pg_url: str, fake: FakeComfyUI,
                                                                               tmp_path: Path) -> None:
    fake.job_delay = 0.05
    async with aiohttp.ClientSession() as session, replicas(
            2, pg_url=pg_url, fake=fake, tmp_path=tmp_path, session=session, GATEWAY_REPLICA_LEASE="2") as gws:
        ids = await generate(session, gws[0], 20, seed=1) + await generate(session, gws[1], 20, seed=100)
        while (await states(pg_url)).get("done", 0) < 8:
            await asyncio.sleep(0.02)
        gws[0].process.send_signal(signal.SIGKILL)
        await gws[0].process.wait()
        finished = await asyncio.wait_for(wait_all_finished(pg_url, 40), timeout=240)
    assert finished == {"done": 40}
    assert "took over job" in (tmp_path / "gateway-1.log").read_text()  # the dead one's in-flight jobs
    assert sorted(fake.prompt_counts) == sorted(ids)
    assert set(fake.prompt_counts.values()) == {1}


@pytest.mark.timeout(120)
async def test_a_job_queued_through_one_replica_streams_and_cancels_through_the_other(
        pg_url: str, fake: FakeComfyUI, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session, replicas(
            2, pg_url=pg_url, fake=fake, tmp_path=tmp_path, session=session, without_comfyui=1) as gws:
        [done_id] = await generate(session, gws[0], 1, seed=7)
        async with session.get(f"{gws[1].base}/api/v1/job/{done_id}/events", headers=HEADERS) as resp:
            assert resp.status == 200
            seen = []
            async for event, data in sse_events(resp):
                seen.append((event, json.loads(data)["status"] if event in ("job", "end") else None))
                if event == "end":
                    break
        assert seen[-1] == ("end", "done")
        fake.stall = True  # the next job stays running in ComfyUI
        try:
            [running_id] = await generate(session, gws[0], 1, seed=8)
            while running_id not in fake.execution_starts:
                await asyncio.sleep(0.02)
            async with session.delete(f"{gws[1].base}/api/v1/job/{running_id}", headers=HEADERS) as resp:
                record = await resp.json()
            assert (record["status"], record["error"]) == ("failed", "cancelled")
            while running_id not in fake.interrupts:  # withdrawn from ComfyUI by the other replica
                await asyncio.sleep(0.02)
        finally:
            fake.release()
    assert fake.prompt_counts[running_id] == 1
    assert len({body["client_id"] for body in fake.submissions}) == 1  # all posted by the first replica
