"""Several real ComfyUI servers behind one gateway.

Runs when `COMFYUI_URLS` names two or more real ComfyUI servers (comma-separated), each with the
checkpoints `COMFYUI_CHECKPOINTS` (comma-separated; default `tiny.safetensors,other.safetensors`);
skipped otherwise. The fake-server tests in tests/test_fleet.py cover faults; these show that the
same sharing holds with the real protocol: every job runs in exactly one server, all are used,
and every result is stored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.settings import Settings
from tests.conftest import API_KEY, running_gateway
from tests.helpers import ROOT

URLS = [url.strip().rstrip("/") for url in os.environ.get("COMFYUI_URLS", "").split(",") if url.strip()]
CHECKPOINTS = os.environ.get("COMFYUI_CHECKPOINTS", "tiny.safetensors,other.safetensors").split(",")

pytestmark = pytest.mark.skipif(len(URLS) < 2, reason="set COMFYUI_URLS to two or more real ComfyUI servers")


async def history(url: str, prompt_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/history/{prompt_id}") as resp:
        entries: dict[str, Any] = await resp.json()
    return entries


async def test_real_backends_share_the_queue_and_each_job_runs_in_one(tmp_path: Path) -> None:
    settings = Settings(comfyui_url=",".join(URLS), data_dir=tmp_path / "data", presets_path=ROOT / "presets.yaml",
                        api_key=API_KEY, job_timeout=300.0)
    async with running_gateway(settings) as gw:
        ids: list[str] = []
        for round_ in range(3):
            for checkpoint in CHECKPOINTS:
                body = {"count": 2, "width": 64, "height": 64, "checkpoint": checkpoint, "seed": round_}
                ids += await gw.generate("sd15", body)
        records = await gw.wait_all(ids, timeout=300.0)
        assert [r["status"] for r in records] == ["done"] * len(ids), records
        for record in records:
            resp = await gw.client.get(record["result"]["image_url"])
            assert resp.status == 200
            assert (await resp.read()).startswith(b"\x89PNG")
        status = await (await gw.client.get("/api/v1/status", headers=gw.headers)).json()
    ran_in = {url: [job_id for job_id in ids if job_id in await history(url, job_id)] for url in URLS}
    assert sorted(job for jobs in ran_in.values() for job in jobs) == sorted(ids)  # each exactly once
    assert all(ran_in.values()), {url: len(jobs) for url, jobs in ran_in.items()}  # every server got work
    assert [b["url"] for b in status["backends"]] == URLS
