"""Several ComfyUI backends fed from one queue (gateway/fleet.py), each a fake ComfyUI server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.api.state import STORE
from gateway.errors import ConfigError
from gateway.settings import Settings
from tests.conftest import API_KEY, Gateway, running_gateway
from tests.fake_comfy import FakeComfyUI
from tests.helpers import ROOT, free_port

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
        name = fake.url.removeprefix("http://")  # plain URLs are named after host and port
        assert f'gateway_backend_info{{backend="{name}",url="{fake.url}"}} 1.0' in metrics
        assert f'gateway_backend_up{{backend="{name}"}} 1.0' in metrics
        assert f'gateway_backend_model_swaps_total{{backend="{name}"}} 0.0' in metrics


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


def backends_file(tmp_path: Path, *entries: dict[str, Any], **overrides: Any) -> Settings:
    path = tmp_path / "backends.yaml"
    path.write_text(yaml.safe_dump({"backends": list(entries)}))
    return replace(fleet_settings(tmp_path), backends_file=path, **overrides)


async def test_a_backends_file_names_each_backend_with_its_own_limit_in_status_and_metrics(
        tmp_path: Path, fakes: Callable[..., Any]) -> None:
    small, big = await fakes(), await fakes()
    settings = backends_file(tmp_path, {"name": "small", "url": small.url, "max_in_flight": 1},
                             {"name": "big", "url": big.url, "max_in_flight": 3, "weight": 2})
    async with running_gateway(settings) as gw:
        await until(gw, lambda s: "unreachable" not in states(s))
        small.stall = big.stall = True
        ids = await gw.generate("sd15", {**SMALL, "count": 6})
        answer = await until(gw, lambda s: [b["in_flight"] for b in s["backends"]] == [1, 3])
        shown = [(b["name"], b["url"], b["max_in_flight"], b["weight"], b["reachable"]) for b in answer["backends"]]
        assert shown == [("small", small.url, 1, 1.0, True), ("big", big.url, 3, 2.0, True)]
        assert answer["backend"]["name"] == "small"
        assert answer["jobs"]["waiting"] + answer["jobs"]["running"] == 6  # two wait in the gateway's queue
        metrics = await (await gw.client.get("/metrics")).text()
        for name, limit in (("small", 1), ("big", 3)):
            assert f'gateway_backend_in_flight{{backend="{name}"}} {limit}.0' in metrics
            assert f'gateway_backend_max_in_flight{{backend="{name}"}} {limit}.0' in metrics
        small.release()
        big.release()
        assert [r["status"] for r in await gw.wait_all(ids)] == ["done"] * 6
        metrics = await (await gw.client.get("/metrics")).text()
    assert len(small.prompt_counts) + len(big.prompt_counts) == 6
    assert 'gateway_backend_loaded_checkpoint{backend="big",checkpoint="tiny.safetensors"} 1.0' in metrics


async def test_of_several_free_backends_the_heaviest_takes_a_job_whose_checkpoint_none_has_loaded(
        tmp_path: Path, fakes: Callable[..., Any]) -> None:
    light, heavy = await fakes(), await fakes()
    settings = backends_file(tmp_path, {"name": "light", "url": light.url, "weight": 1},
                             {"name": "heavy", "url": heavy.url, "weight": 5}, max_in_flight=1)
    async with running_gateway(settings) as gw:
        await until(gw, lambda s: "unreachable" not in states(s))
        for checkpoint in ["tiny.safetensors", "other.safetensors"] * 3:  # never the one heavy has loaded
            [job_id] = await gw.generate("sd15", {**SMALL, "checkpoint": checkpoint})
            assert (await gw.wait(job_id))["status"] == "done"
            await until(gw, lambda s: s["jobs"]["running"] == 0 and s["backends"][1]["in_flight"] == 0)
    assert len(heavy.executed_ids) == 6 and not light.executed_ids


async def test_choices_come_from_the_reachable_backends_together(tmp_path: Path) -> None:
    one = FakeComfyUI(checkpoints=("tiny.safetensors",), loras=("style.safetensors",))
    two = FakeComfyUI(checkpoints=("other.safetensors", "tiny.safetensors"), loras=("detail.safetensors",))
    await one.start()
    await two.start()
    dead = f"http://127.0.0.1:{free_port()}"  # the first backend never answers
    settings = backends_file(tmp_path, {"name": "dead", "url": dead}, {"name": "one", "url": one.url},
                             {"name": "two", "url": two.url})
    try:
        async with running_gateway(settings) as gw:
            resp = await gw.client.get("/api/v1/presets/sd15", headers=gw.headers)
            allowed = {p["name"]: p["allowed"] for p in (await resp.json())["parameters"]}
            assert allowed["checkpoint"] == ["tiny.safetensors", "other.safetensors"]
            answer = await gw.client.post("/api/v1/generate/sd15", headers=gw.headers,
                                          json={**SMALL, "loras": [{"name": "detail.safetensors"}]})
            assert answer.status == 202, await answer.text()  # a LoRA of the second reachable backend
            answer = await gw.client.post("/api/v1/generate/sd15", headers=gw.headers,
                                          json={**SMALL, "loras": [{"name": "nowhere.safetensors"}]})
            assert answer.status == 400 and (await answer.json())["error"]["field"] == "loras.0.name"
    finally:
        await one.stop()
        await two.stop()
