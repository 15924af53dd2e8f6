"""Several ComfyUI backends fed from one queue (gateway/fleet.py), each a fake ComfyUI server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.api.state import STORE
from gateway.errors import ConfigError
from gateway.settings import Settings
from tests.conftest import API_KEY, Gateway, running_gateway
from tests.fake_comfy import FakeComfyUI
from tests.helpers import ROOT

SMALL = {"width": 64, "height": 64, "checkpoint": "tiny.safetensors"}


@pytest.mark.parametrize(("raw", "urls"), [
    ("http://a:8188", ("http://a:8188",)),
    ("http://a:8188/, http://b:8188", ("http://a:8188", "http://b:8188")),
    ("http://a:8188,,https://b/", ("http://a:8188", "https://b")),
])
def test_several_comfyui_urls_are_read_in_order(raw: str, urls: tuple[str, ...]) -> None:
    assert Settings.from_env({"GATEWAY_COMFYUI_URL": raw}).comfyui_urls == urls


@pytest.mark.parametrize("raw", ["http://a,ftp://b", "http://a,http://a/", " , "])
def test_a_bad_or_repeated_backend_url_is_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match="GATEWAY_COMFYUI_URL"):
        Settings.from_env({"GATEWAY_COMFYUI_URL": raw})


@pytest.fixture
async def fakes() -> AsyncIterator[Callable[..., Any]]:
    started: list[FakeComfyUI] = []

    async def start(**switches: float) -> FakeComfyUI:
        fake = FakeComfyUI(checkpoints=("tiny.safetensors", "other.safetensors"), **switches)
        await fake.start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        await fake.stop()


def fleet_settings(tmp_path: Path, *servers: FakeComfyUI, **overrides: Any) -> Settings:
    settings = Settings(comfyui_url=",".join(f.url for f in servers), data_dir=tmp_path / "data",
                        presets_path=ROOT / "presets.yaml", api_key=API_KEY, job_timeout=60.0)
    return replace(settings, **overrides)


async def status(gateway: Gateway) -> dict[str, Any]:
    resp = await gateway.client.get("/api/v1/status", headers=gateway.headers)
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def until(gateway: Gateway, check: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer = await status(gateway)
        if check(answer):
            return answer
        assert time.monotonic() < deadline, f"status never matched: {answer}"
        await asyncio.sleep(0.02)


def states(answer: dict[str, Any]) -> list[str]:
    return [backend["state"] for backend in answer["backends"]]


async def test_two_backends_share_the_queue_and_both_show_in_status_and_metrics(
        tmp_path: Path, fakes: Callable[..., Any]) -> None:
    one, two = await fakes(job_delay=0.05), await fakes(job_delay=0.05)
    async with running_gateway(fleet_settings(tmp_path, one, two)) as gw:
        answer = await until(gw, lambda s: "unreachable" not in states(s))
        assert [b["url"] for b in answer["backends"]] == [one.url, two.url]
        assert answer["backend"]["url"] == one.url  # the single-backend field: the first one
        ids = await gw.generate("sd15", {**SMALL, "count": 12})
        assert [r["status"] for r in await gw.wait_all(ids)] == ["done"] * 12
        metrics = await (await gw.client.get("/metrics")).text()
    assert one.executed_ids and two.executed_ids  # both got work
    assert sorted(one.executed_ids + two.executed_ids) == sorted(ids)  # each job ran once
    for fake in (one, two):
        assert f'gateway_backend_up{{backend="{fake.url}"}} 1.0' in metrics
        assert f'gateway_backend_model_swaps_total{{backend="{fake.url}"}} 0.0' in metrics


async def test_a_slow_backend_does_not_hold_back_a_fast_one(tmp_path: Path, fakes: Callable[..., Any]) -> None:
    slow, fast = await fakes(job_delay=3.0), await fakes(job_delay=0.01)
    async with running_gateway(fleet_settings(tmp_path, slow, fast, max_in_flight=1)) as gw:
        await until(gw, lambda s: "unreachable" not in states(s))
        ids = await gw.generate("sd15", {**SMALL, "count": 20})
        done = [await gw.wait(job_id) for job_id in ids]
    assert [r["status"] for r in done] == ["done"] * 20
    assert len(fast.executed_ids) >= 16, (len(slow.executed_ids), len(fast.executed_ids))


async def test_a_backend_that_dies_loses_nothing_and_is_taken_back_when_it_returns(
        tmp_path: Path, fakes: Callable[..., Any]) -> None:
    victim, survivor = await fakes(step_delay=0.02), await fakes(step_delay=0.02)
    settings = fleet_settings(tmp_path, victim, survivor, backend_lost_after=0.5)
    async with running_gateway(settings) as gw:
        await until(gw, lambda s: "unreachable" not in states(s))
        ids = await gw.generate("sd15", {**SMALL, "count": 12})
        await until(gw, lambda s: s["backends"][0]["in_flight"] > 0 and len(victim.executed_ids) > 0)
        await victim.stop()
        stopped_at = time.monotonic()
        answer = await until(gw, lambda s: s["backends"][0]["state"] == "unreachable")
        assert "unreachable" in answer["backends"][0]["message"]
        records = await gw.wait_all(ids)
        assert [r["status"] for r in records] == ["done"] * 12
        store = gw.client.app[STORE]
        for job_id in ids:
            job = await store.get(job_id)
            assert job is not None
            submitted = victim.prompt_counts[job_id] + survivor.prompt_counts[job_id]
            assert submitted == job.attempts, job_id  # once per attempt
        moved = set(victim.prompt_counts) & set(survivor.prompt_counts)
        assert moved  # the test killed a backend with jobs in it
        for job_id in moved:
            assert survivor.execution_starts[job_id] > stopped_at  # never in two backends at once

        await victim.start()  # same port: the backend comes back
        await until(gw, lambda s: "unreachable" not in states(s))
        assert moved <= set(victim.deleted)  # its old prompts are taken out before it is fed again
        before = len(victim.executed_ids)
        more = await gw.generate("sd15", {**SMALL, "count": 8})
        assert [r["status"] for r in await gw.wait_all(more)] == ["done"] * 8
    assert len(victim.executed_ids) > before  # fed again
