"""End to end: gateway + ComfyUI. Runs against the fake, and against a real ComfyUI when
COMFYUI_URL is set (tests needing fault switches are then skipped)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.api.state import DISPATCHER
from gateway.settings import Settings
from tests.conftest import Comfy, Gateway, running_gateway
from tests.fake_comfy import FakeComfyUI
from tests.helpers import ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def comfy_history(comfy: Comfy, prompt_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{comfy.url}/history/{prompt_id}") as resp:
        data: dict[str, Any] = await resp.json()
    return data


def needs_checkpoint(comfy: Comfy) -> str:
    if comfy.checkpoint is None:
        pytest.skip("the ComfyUI under test has no checkpoint")
    return comfy.checkpoint


async def test_generate_wait_and_download_without_a_key(gateway: Gateway, comfy: Comfy) -> None:
    ids = await gateway.generate("example_01", {"count": 3, "seed": 927640517599332, "width": 64, "height": 64})
    records = await gateway.wait_all(ids)
    assert [r["status"] for r in records] == ["done"] * 3
    assert [r["result"]["seed"] for r in records] == [927640517599332 + i for i in range(3)]
    images = []
    for record in records:
        result = record["result"]
        assert set(result) == {"image_url", "relative_path", "seed"}
        assert record["error"] is None
        assert result["image_url"] == f"/static/uploads/{result['relative_path']}"
        assert result["relative_path"].startswith("presets/example_01/gen_")
        resp = await gateway.client.get(result["image_url"])  # no key
        assert resp.status == 200
        data = await resp.read()
        assert data.startswith(PNG_MAGIC)
        assert (gateway.settings.uploads_dir / result["relative_path"]).read_bytes() == data
        images.append(data)
        assert record["finished_at"] >= record["started_at"] >= record["created_at"]
    assert len(set(images)) == 3  # each seed made its own image
    assert len({r["result"]["relative_path"] for r in records}) == 3
    for job_id in ids:  # prompt_id = job id, and each was run once
        assert job_id in await comfy_history(comfy, job_id)
    if comfy.fake:
        assert all(comfy.fake.prompt_counts[j] == 1 for j in ids)


async def test_text_to_image_with_a_checkpoint(gateway: Gateway, comfy: Comfy) -> None:
    checkpoint = needs_checkpoint(comfy)
    ids = await gateway.generate("sd15", {"checkpoint": checkpoint, "width": 64, "height": 64, "seed": 1,
                                          "extra_positive": "smiling", "extra_negative": "blurry"})
    record = await gateway.wait(ids[0], timeout=120)
    assert record["status"] == "done", record
    assert record["params"]["positive"].endswith(", smiling")
    history = (await comfy_history(comfy, ids[0]))[ids[0]]
    graph = history["prompt"][2]
    assert graph["4"]["inputs"]["ckpt_name"] == checkpoint
    assert graph["5"]["inputs"]["width"] == 64
    assert graph["6"]["inputs"]["text"].endswith(", smiling")
    assert graph["7"]["inputs"]["text"].endswith(", blurry")
    assert graph["9"]["inputs"]["filename_prefix"] == f"gateway/{ids[0]}"


async def test_a_prompt_comfyui_rejects_fails_with_a_readable_error(gateway: Gateway) -> None:
    ids = await gateway.generate("sd15", {"checkpoint": "no-such-model.safetensors", "width": 64, "height": 64})
    record = await gateway.wait(ids[0])
    assert record["status"] == "failed"
    assert record["result"] is None
    assert "node 4 (CheckpointLoaderSimple) input 'ckpt_name'" in record["error"]
    assert "no-such-model.safetensors" in record["error"]
    assert "Traceback" not in record["error"]


async def test_an_execution_error_fails_the_job_and_others_go_on(
    tmp_path: Path, settings: Settings, comfy: Comfy
) -> None:
    # A 1x1 image blurred with a radius larger than the image fails inside ComfyUI at run time.
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 1, "height": 1, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 1.0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    }
    (tmp_path / "blur.json").write_text(json.dumps(graph))
    presets = tmp_path / "presets.yaml"
    shipped = (ROOT / "presets.yaml").read_text().replace("workflow: workflows/", f"workflow: {ROOT}/workflows/")
    presets.write_text(shipped + "\nbroken:\n  name: Broken\n  workflow: blur.json\n")
    if comfy.fake:
        comfy.fake.fail_next(1, message="Padding size should be less than the corresponding input dimension")
    async with running_gateway(replace(settings, presets_path=presets)) as gw:
        bad = await gw.generate("broken")
        good = await gw.generate("example_01", {"width": 64, "height": 64})
        failed = await gw.wait(bad[0])
        assert failed["status"] == "failed"
        assert failed["error"].startswith("node ")
        assert "failed:" in failed["error"] and "Traceback" not in failed["error"]
        assert (await gw.wait(good[0]))["status"] == "done"


async def test_jobs_wait_while_comfyui_is_down_and_run_when_it_is_back(gateway: Gateway, fake: FakeComfyUI) -> None:
    await fake.stop()
    ids = await gateway.generate("example_01", {"count": 2, "width": 64, "height": 64})
    await asyncio.sleep(0.3)
    assert [(await gateway.job(j))["status"] for j in ids] == ["pending", "pending"]
    resp = await gateway.client.get("/readyz")
    assert resp.status == 503
    await fake.start()
    records = await gateway.wait_all(ids)
    assert [r["status"] for r in records] == ["done", "done"]
    assert (await gateway.client.get("/readyz")).status == 200


async def test_gateway_restart_settles_jobs_comfyui_finished_meanwhile(settings: Settings, comfy: Comfy) -> None:
    if comfy.fake:
        comfy.fake.stall = True
        slug, body = "example_01", {"count": 3, "width": 64, "height": 64}
    else:  # a real diffusion job takes long enough to stop the gateway while it runs
        slug, body = "sd15", {"count": 3, "width": 64, "height": 64, "checkpoint": needs_checkpoint(comfy)}
    async with running_gateway(settings) as gw:
        ids = await gw.generate(slug, body)
        await gw.wait(ids[0], until=("processing",), timeout=60)
    # The gateway is gone; ComfyUI finishes what it had.
    if comfy.fake:
        comfy.fake.release()
    await asyncio.sleep(0.2)
    async with running_gateway(settings) as gw:
        records = await gw.wait_all(ids, timeout=120)
    assert [r["status"] for r in records] == ["done"] * 3
    for job_id in ids:
        assert job_id in await comfy_history(comfy, job_id)
    if comfy.fake:
        assert [comfy.fake.prompt_counts[j] for j in ids] == [1, 1, 1]


async def test_jobs_lost_by_a_comfyui_restart_are_submitted_again(gateway: Gateway, fake: FakeComfyUI) -> None:
    fake.stall = True
    ids = await gateway.generate("example_01", {"count": 3, "width": 64, "height": 64})
    await gateway.wait(ids[0], until=("processing",))
    await fake.stop()  # its in-memory queue is gone
    fake.release()
    await fake.start()
    records = await gateway.wait_all(ids)
    assert [r["status"] for r in records] == ["done"] * 3
    assert fake.prompt_counts[ids[0]] == 2  # the lost one, once before the restart and once after
    assert fake.executed_ids.count(ids[0]) == 2
    assert fake.prompt_counts[ids[2]] == 1


async def test_a_dropped_websocket_is_reconnected_and_jobs_settled(gateway: Gateway, fake: FakeComfyUI) -> None:
    fake.job_delay = 0.05
    ids = await gateway.generate("example_01", {"count": 6, "width": 64, "height": 64})
    await gateway.wait(ids[1], until=("processing", "done"))
    fake.drop_sockets()
    await asyncio.sleep(0.1)
    fake.drop_sockets()
    records = await gateway.wait_all(ids)
    assert [r["status"] for r in records] == ["done"] * 6
    assert all(fake.prompt_counts[j] == 1 for j in ids)


async def test_a_job_past_its_deadline_is_interrupted_and_failed(settings: Settings, fake: FakeComfyUI) -> None:
    fake.stall = True
    async with running_gateway(replace(settings, job_timeout=0.4)) as gw:
        ids = await gw.generate("example_01", {"width": 64, "height": 64})
        record = await gw.wait(ids[0])
        assert record["status"] == "failed"
        assert "timed out" in record["error"]
        for _ in range(250):  # the job is failed first, then its prompt is interrupted in ComfyUI
            if ids[0] in fake.interrupts:
                break
            await asyncio.sleep(0.02)
        assert ids[0] in fake.interrupts
        fake.release()
        more = await gw.generate("example_01", {"width": 64, "height": 64})
        assert (await gw.wait(more[0]))["status"] == "done"


async def test_a_result_that_cannot_be_downloaded_fails_clearly(gateway: Gateway, fake: FakeComfyUI) -> None:
    fake.fail_view = True
    ids = await gateway.generate("example_01", {"width": 64, "height": 64})
    record = await gateway.wait(ids[0])
    assert record["status"] == "failed"
    assert "could not download the result" in record["error"]


async def test_few_prompts_are_in_comfyui_at_once(gateway: Gateway, fake: FakeComfyUI) -> None:
    fake.stall = True
    ids = await gateway.generate("example_01", {"count": 8, "width": 64, "height": 64})
    await gateway.wait(ids[0], until=("processing",))
    await asyncio.sleep(0.2)
    assert len(fake.submissions) == gateway.settings.max_in_flight
    fake.release()
    assert [r["status"] for r in await gateway.wait_all(ids)] == ["done"] * 8
    assert fake.executed_ids == ids  # first come, first served


async def test_a_silent_websocket_delays_results_but_loses_none(settings: Settings, fake: FakeComfyUI) -> None:
    async with running_gateway(settings) as gw:
        gw.client.app[DISPATCHER]._stale_after = 0.3  # seconds; 10 in service
        await gw.wait((await gw.generate("example_01", {"width": 64, "height": 64}))[0])
        fake.silent = True  # the socket stays open, but nothing arrives on it
        ids = await gw.generate("example_01", {"count": 3, "width": 64, "height": 64})
        records = await gw.wait_all(ids, timeout=20)
    assert [r["status"] for r in records] == ["done"] * 3


async def test_an_unwritable_uploads_folder_fails_the_job_and_the_service_stays_up(gateway: Gateway) -> None:
    blocked = gateway.settings.uploads_dir / "presets" / "example_01"
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("a file where the folder should be")
    ids = await gateway.generate("example_01", {"width": 64, "height": 64})
    record = await gateway.wait(ids[0])
    assert record["status"] == "failed"
    assert record["error"].startswith("could not write the result file:")
    blocked.unlink()
    ids = await gateway.generate("example_01", {"width": 64, "height": 64})
    assert (await gateway.wait(ids[0]))["status"] == "done"
