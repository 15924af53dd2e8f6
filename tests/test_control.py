"""Cancelling, interrupting everything, backpressure, and lost-job limits."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway.settings import Settings
from tests.conftest import Gateway, running_gateway
from tests.fake_comfy import FakeComfyUI
from tests.helpers import ROOT

SMALL = {"width": 64, "height": 64}


async def cancel(gw: Gateway, job_id: str) -> dict[str, Any]:
    resp = await gw.client.delete(f"/api/v1/job/{job_id}", headers=gw.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_cancel_a_waiting_job(gateway: Gateway, fake: FakeComfyUI) -> None:
    fake.stall = True
    ids = await gateway.generate("example_01", {"count": 4, **SMALL})
    await gateway.wait(ids[0], until=("processing",))
    record = await cancel(gateway, ids[3])  # still in the gateway's own queue
    assert (record["status"], record["error"], record["result"]) == ("failed", "cancelled", None)
    again = await cancel(gateway, ids[3])
    assert again == record  # idempotent
    fake.release()
    records = await gateway.wait_all(ids)
    assert [r["status"] for r in records] == ["done", "done", "done", "failed"]
    assert ids[3] not in fake.prompt_counts  # never sent to ComfyUI


async def test_cancel_a_job_waiting_in_comfyuis_queue_and_a_running_one(gateway: Gateway, fake: FakeComfyUI) -> None:
    fake.stall = True
    ids = await gateway.generate("example_01", {"count": 3, **SMALL})
    await gateway.wait(ids[0], until=("processing",))
    await asyncio.sleep(0.1)
    assert len(fake.submissions) == 2  # ids[1] waits in ComfyUI's queue
    queued = await cancel(gateway, ids[1])
    assert queued["error"] == "cancelled"
    assert ids[1] in fake.deleted
    running = await cancel(gateway, ids[0])
    assert running["error"] == "cancelled"
    assert ids[0] in fake.interrupts  # by prompt id: other clients' prompts are untouched
    assert None not in fake.interrupts
    fake.release()
    last = await gateway.wait(ids[2])
    assert last["status"] == "done"
    assert ids[1] not in fake.executed_ids
    for job_id in ids[:2]:
        assert (await gateway.job(job_id))["error"] == "cancelled"  # late events change nothing


async def test_cancel_unknown_job_is_404_and_a_done_job_stays_done(gateway: Gateway) -> None:
    resp = await gateway.client.delete("/api/v1/job/nope", headers=gateway.headers)
    assert resp.status == 404
    ids = await gateway.generate("example_01", SMALL)
    await gateway.wait(ids[0])
    assert (await cancel(gateway, ids[0]))["status"] == "done"


async def test_interrupt_cancels_everything_waiting_and_running(gateway: Gateway, fake: FakeComfyUI) -> None:
    fake.stall = True
    ids = await gateway.generate("example_01", {"count": 5, **SMALL})
    await gateway.wait(ids[0], until=("processing",))
    resp = await gateway.client.post("/api/v1/interrupt", headers=gateway.headers)
    assert resp.status == 200
    assert (await resp.json()) == {"cancelled": 5}
    records = await gateway.wait_all(ids)
    assert {(r["status"], r["error"]) for r in records} == {("failed", "cancelled")}
    fake.release()
    more = await gateway.generate("example_01", SMALL)
    assert (await gateway.wait(more[0]))["status"] == "done"


async def test_backpressure_refuses_whole_batches_with_retry_after(settings: Settings, fake: FakeComfyUI) -> None:
    fake.stall = True
    async with running_gateway(replace(settings, max_queued=5)) as gw:
        first = await gw.generate("example_01", {"count": 2, **SMALL})
        await gw.wait(first[0], until=("processing",))
        await asyncio.sleep(0.1)  # two are in ComfyUI now; the queue itself is empty
        await gw.generate("example_01", {"count": 4, **SMALL})
        resp = await gw.client.post("/api/v1/generate/example_01", json={"count": 2, **SMALL}, headers=gw.headers)
        assert resp.status == 429
        assert resp.headers["Retry-After"].isdigit()
        body = await resp.json()
        assert body["error"]["code"] == "queue_full"
        await gw.generate("example_01", {"count": 1, **SMALL})  # exactly fills it
        resp = await gw.client.post("/api/v1/generate/example_01", json=SMALL, headers=gw.headers)
        assert resp.status == 429
        fake.release()
        await gw.wait_all(first)


async def test_a_job_comfyui_keeps_losing_fails_after_the_attempt_limit(settings: Settings, fake: FakeComfyUI) -> None:
    fake.stall = True
    async with running_gateway(replace(settings, max_attempts=2)) as gw:
        ids = await gw.generate("example_01", SMALL)
        for attempt in (1, 2):  # ComfyUI dies while running it, twice
            while fake.prompt_counts[ids[0]] < attempt or ids[0] not in fake.executed_ids[-1:]:
                await asyncio.sleep(0.02)
            await fake.stop()
            await fake.start()
        record = await gw.wait(ids[0])
        assert record["status"] == "failed"
        assert "ComfyUI lost this job 2 times" in record["error"]
        assert fake.prompt_counts[ids[0]] == 2


async def test_a_preset_timeout_overrides_the_setting(tmp_path: Path, settings: Settings, fake: FakeComfyUI) -> None:
    presets = tmp_path / "presets.yaml"
    presets.write_text(f"quick:\n  name: Quick\n  workflow: {ROOT}/workflows/example_noise.json\n  timeout: 0.3\n")
    fake.stall = True
    async with running_gateway(replace(settings, presets_path=presets, job_timeout=600)) as gw:
        record = await gw.wait((await gw.generate("quick", SMALL))[0])
    assert record["error"] == "timed out: still not finished after 0.3 s, interrupted"
