"""`GET /api/v1/status`: job counts, the ComfyUI backend's state, and estimates."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import Comfy, Gateway
from tests.fake_comfy import FakeComfyUI
from tests.test_integration import needs_checkpoint


async def status(gateway: Gateway) -> dict[str, Any]:
    resp = await gateway.client.get("/api/v1/status", headers=gateway.headers)
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def until(gateway: Gateway, check: Any, timeout: float = 20.0) -> dict[str, Any]:
    for _ in range(int(timeout / 0.02)):
        answer = await status(gateway)
        if check(answer):
            return answer
        await asyncio.sleep(0.02)
    raise AssertionError(f"status never matched: {answer}")


async def test_a_fresh_gateway_is_idle_and_knows_comfyuis_version(gateway: Gateway, comfy: Comfy) -> None:
    answer = await until(gateway, lambda s: s["backend"]["version"] is not None)
    assert answer["jobs"] == {"waiting": 0, "running": 0, "done_last_hour": 0, "failed_last_hour": 0}
    backend = answer["backend"]
    assert backend["state"] == "idle" and backend["url"] == comfy.url and backend["model_swaps"] == 0
    assert answer["estimates"] == {"job_seconds": None, "wait_seconds": None}


async def test_counts_checkpoint_and_estimates_after_work(gateway: Gateway, comfy: Comfy) -> None:
    checkpoint = needs_checkpoint(comfy)
    done = await gateway.generate("sd15", {"count": 2, "checkpoint": checkpoint, "width": 64, "height": 64})
    failed = await gateway.generate("sd15", {"checkpoint": "missing.safetensors", "width": 64, "height": 64})
    await gateway.wait_all(done + failed)
    answer = await status(gateway)
    assert answer["jobs"] == {"waiting": 0, "running": 0, "done_last_hour": 2, "failed_last_hour": 1}
    assert answer["backend"]["loaded_checkpoint"] == checkpoint
    assert answer["estimates"]["job_seconds"] > 0 and answer["estimates"]["wait_seconds"] == 0


async def test_waiting_and_running_while_comfyui_works(gateway: Gateway, fake: FakeComfyUI) -> None:
    fake.stall = True
    await gateway.generate("example_01", {"count": 3, "width": 64, "height": 64})
    answer = await until(gateway, lambda s: s["backend"]["state"] == "running" and s["jobs"]["running"] == 1)
    assert answer["jobs"]["waiting"] == 2
    assert "running job" in answer["backend"]["message"]
    fake.stall = False
    fake.release()
    await until(gateway, lambda s: s["jobs"]["done_last_hour"] == 3 and s["backend"]["state"] == "idle")


async def test_a_checkpoint_change_counts_as_a_model_swap(gateway: Gateway, fake: FakeComfyUI) -> None:
    for checkpoint in ("tiny.safetensors", "other.safetensors", "other.safetensors", "tiny.safetensors"):
        await gateway.wait_all(await gateway.generate("sd15", {"checkpoint": checkpoint, "width": 64, "height": 64}))
    backend = (await status(gateway))["backend"]
    assert backend["model_swaps"] == 2 and backend["loaded_checkpoint"] == "tiny.safetensors"


async def test_an_execution_error_shows_until_a_job_succeeds(gateway: Gateway, fake: FakeComfyUI) -> None:
    fake.fail_next(message="boom in a node")
    [bad] = await gateway.generate("example_01", {"width": 64, "height": 64})
    await gateway.wait(bad)
    backend = (await status(gateway))["backend"]
    assert backend["state"] == "errored" and "boom in a node" in backend["message"]
    await gateway.wait_all(await gateway.generate("example_01", {"width": 64, "height": 64}))
    assert (await status(gateway))["backend"]["state"] == "idle"


async def test_an_unreachable_comfyui_is_reported(gateway: Gateway, fake: FakeComfyUI) -> None:
    await until(gateway, lambda s: s["backend"]["state"] == "idle")
    await fake.stop()
    answer = await until(gateway, lambda s: s["backend"]["state"] == "unreachable")
    assert "unreachable" in answer["backend"]["message"]
