"""Fixtures: a ComfyUI (the fake, or a real one when COMFYUI_URL is set) and a running gateway.

Every test that uses `comfy` also runs against a real ComfyUI when `COMFYUI_URL` is set; tests
that need the fake's fault switches ask for `fake` and are skipped there.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.settings import Settings
from tests.fake_comfy import FakeComfyUI
from tests.helpers import ROOT
from tests.receiver import receiver  # noqa: F401  (a fixture: a webhook receiver)

REAL_COMFYUI_URL = os.environ.get("COMFYUI_URL", "").rstrip("/")
API_KEY = "test-key"


@dataclass
class Comfy:
    url: str
    fake: FakeComfyUI | None
    checkpoint: str | None
    """A checkpoint the server has, for text-to-image tests (None: skip those)."""


async def _real_checkpoint(url: str) -> str | None:
    wanted = os.environ.get("COMFYUI_CHECKPOINT")
    if wanted:
        return wanted
    async with aiohttp.ClientSession() as session, session.get(f"{url}/models/checkpoints") as resp:
        names = await resp.json()
    return names[0] if names else None


@pytest.fixture
async def comfy() -> AsyncIterator[Comfy]:
    if REAL_COMFYUI_URL:
        yield Comfy(REAL_COMFYUI_URL, None, await _real_checkpoint(REAL_COMFYUI_URL))
        return
    fake = FakeComfyUI(checkpoints=("tiny.safetensors", "other.safetensors"))
    await fake.start()
    try:
        yield Comfy(fake.url, fake, "tiny.safetensors")
    finally:
        await fake.stop()


@pytest.fixture
def fake(comfy: Comfy) -> FakeComfyUI:
    if comfy.fake is None:
        pytest.skip("needs the fake ComfyUI's fault switches")
    return comfy.fake


@pytest.fixture
def settings(tmp_path: Path, comfy: Comfy) -> Settings:
    return Settings(comfyui_url=comfy.url, data_dir=tmp_path / "data", presets_path=ROOT / "presets.yaml",
                    api_key=API_KEY, job_timeout=60.0)


class Gateway:
    """A running gateway with helpers that speak its API."""

    def __init__(self, client: TestClient[Any, Any], settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.headers = {"X-API-Key": API_KEY}

    async def generate(self, slug: str, body: dict[str, Any] | None = None) -> list[str]:
        resp = await self.client.post(f"/api/v1/generate/{slug}", json=body or {}, headers=self.headers)
        assert resp.status == 202, await resp.text()
        return [job["job_id"] for job in (await resp.json())["jobs"]]

    async def job(self, job_id: str) -> dict[str, Any]:
        resp = await self.client.get(f"/api/v1/job/{job_id}", headers=self.headers)
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data

    async def wait(self, job_id: str, *, until: tuple[str, ...] = ("done", "failed"),
                   timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            record = await self.job(job_id)
            if record["status"] in until:
                return record
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {record['status']} after {timeout}s: {record}")
            await asyncio.sleep(0.02)

    async def wait_all(self, job_ids: list[str], timeout: float = 30.0) -> list[dict[str, Any]]:
        return [await self.wait(j, timeout=timeout) for j in job_ids]


@asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        yield Gateway(client, settings)
    finally:
        await client.close()


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    async with running_gateway(settings) as gw:
        yield gw


def with_timeout(settings: Settings, seconds: float) -> Settings:
    return replace(settings, job_timeout=seconds)


@pytest.fixture
async def lora_gateway(tmp_path: Path) -> AsyncIterator[tuple[Gateway, FakeComfyUI]]:
    """The fake ComfyUI with LoRA files (the real test server has none)."""
    fake = FakeComfyUI(checkpoints=("tiny.safetensors",), loras=("style.safetensors", "detail.safetensors"))
    await fake.start()
    settings = Settings(comfyui_url=fake.url, data_dir=tmp_path / "data", presets_path=ROOT / "presets.yaml",
                        api_key=API_KEY)
    try:
        async with running_gateway(settings) as gw:
            yield gw, fake
    finally:
        await fake.stop()
