"""Hostile and heavy use: a fuzz over every endpoint, and 200 clients at once."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import API_KEY, Gateway
from tests.fake_comfy import FakeComfyUI
from tests.helpers import ROOT

FIELDS = ["count", "checkpoint", "extra_positive", "extra_negative", "seed", "width", "height"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), json_values, max_size=5),
    json_values,
)
paths = st.one_of(
    st.sampled_from(["/api/v1/presets", "/api/v1/generate/example_01", "/api/v1/generate/sd15", "/api/v1/interrupt",
                     "/healthz", "/readyz", "/static/uploads/x.png", "/static/covers/example_01"]),
    st.builds(lambda s: f"/api/v1/generate/{s}", st.text(min_size=1, max_size=20)),
    st.builds(lambda s: f"/api/v1/job/{s}", st.text(min_size=1, max_size=40)),
)


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """A gateway and a fake ComfyUI on their own event loop in a thread (hypothesis drives it
    synchronously)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def start() -> None:
        fake = FakeComfyUI()
        await fake.start()
        state["tmp"] = tempfile.TemporaryDirectory()
        settings_ = Settings(comfyui_url=fake.url, data_dir=Path(state["tmp"].name),
                             presets_path=ROOT / "presets.yaml", api_key=API_KEY, max_queued=100_000)
        runner = web.AppRunner(create_app(settings_))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state.update(fake=fake, runner=runner, url=f"http://127.0.0.1:{runner.addresses[0][1]}")
        ready.set()

    async def stop() -> None:
        await state["runner"].cleanup()
        await state["fake"].stop()
        state["tmp"].cleanup()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    ready.wait()
    yield str(state["url"])
    asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]), path=paths, body=bodies,
       key=st.sampled_from([API_KEY, None, "", "wrong", API_KEY + "x"]),
       raw=st.none() | st.binary(max_size=64))
def test_fuzz_every_endpoint_never_answers_5xx(served: str, method: str, path: str, body: Any, key: str | None,
                                               raw: bytes | None) -> None:
    headers = {"X-API-Key": key} if key is not None else {}
    if raw is not None:
        resp = requests.request(method, served + path, data=raw, timeout=10,
                                headers={**headers, "Content-Type": "application/json"})
    else:
        resp = requests.request(method, served + path, json=body, headers=headers, timeout=10)
    assert resp.status_code < 500 or (path == "/readyz" and resp.status_code == 503), (resp.status_code, resp.text)
    if resp.status_code >= 400 and resp.headers.get("Content-Type", "").startswith("application/json"):
        error = resp.json()["error"]
        assert error["code"] and error["message"]


def test_still_healthy_after_the_fuzz(served: str) -> None:
    assert requests.get(served + "/healthz", timeout=10).status_code == 200
    resp = requests.post(served + "/api/v1/generate/example_01", json={"width": 64, "height": 64},
                         headers={"X-API-Key": API_KEY}, timeout=10)
    assert resp.status_code == 202


async def test_200_clients_at_once_lose_and_duplicate_nothing(gateway: Gateway, fake: FakeComfyUI) -> None:
    async def client(session: aiohttp.ClientSession, n: int) -> str:
        async with session.post("/api/v1/generate/example_01", json={"width": 64, "height": 64, "seed": n},
                                headers=gateway.headers) as resp:
            assert resp.status == 202, await resp.text()
            job_id: str = (await resp.json())["jobs"][0]["job_id"]
        for _ in range(480):
            async with session.get(f"/api/v1/job/{job_id}", headers=gateway.headers) as resp:
                assert resp.status == 200, await resp.text()
                record = await resp.json()
            if record["status"] in ("done", "failed"):
                assert record["status"] == "done", record
                assert record["result"]["seed"] == n
                return job_id
            await asyncio.sleep(0.25)  # a polling client's pace (GAZE clients poll every 1-2 s)
        raise AssertionError(f"job {job_id} did not finish")

    async with aiohttp.ClientSession(base_url=str(gateway.client.make_url("/"))) as session:
        ids = await asyncio.wait_for(asyncio.gather(*(client(session, n) for n in range(200))), timeout=120)
    assert len(set(ids)) == 200
    assert sorted(fake.executed_ids) == sorted(ids)
    assert all(count == 1 for count in fake.prompt_counts.values())
