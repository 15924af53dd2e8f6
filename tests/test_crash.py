"""The gateway process killed with SIGKILL in the middle of a batch, then started again."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp

from tests.conftest import API_KEY
from tests.fake_comfy import FakeComfyUI
from tests.helpers import ROOT, free_port, gateway_process, wait_ready


async def statuses(session: aiohttp.ClientSession, base: str, ids: list[str]) -> list[str]:
    found = []
    for job_id in ids:
        async with session.get(f"{base}/api/v1/job/{job_id}", headers={"X-API-Key": API_KEY}) as resp:
            found.append((await resp.json())["status"])
    return found


async def test_sigkill_mid_batch_then_restart_finishes_every_job_once(tmp_path: Path, fake: FakeComfyUI) -> None:
    fake.job_delay = 0.03
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GATEWAY_COMFYUI_URL": fake.url, "GATEWAY_DATA_DIR": str(tmp_path / "data"),
           "GATEWAY_PORT": str(port), "GATEWAY_HOST": "127.0.0.1", "GATEWAY_API_KEY": API_KEY,
           "GATEWAY_PRESETS": str(ROOT / "presets.yaml")}
    async with aiohttp.ClientSession() as session:
        async with gateway_process(env) as proc:
            await wait_ready(session, base)
            async with session.post(f"{base}/api/v1/generate/example_01", headers={"X-API-Key": API_KEY},
                                    json={"count": 20, "width": 64, "height": 64}) as resp:
                assert resp.status == 202
                ids = [j["job_id"] for j in (await resp.json())["jobs"]]
            while (await statuses(session, base, ids)).count("done") < 5:
                await asyncio.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        killed_at = len(fake.submissions)
        assert killed_at < 20  # it really died mid-batch
        async with gateway_process(env):
            await wait_ready(session, base)
            for _ in range(600):
                if set(await statuses(session, base, ids)) == {"done"}:
                    break
                await asyncio.sleep(0.05)
            assert await statuses(session, base, ids) == ["done"] * 20
    assert [fake.prompt_counts[j] for j in ids] == [1] * 20  # each prompt reached ComfyUI exactly once
    assert sorted(fake.executed_ids) == sorted(ids)
