"""The Python client, sync and async, against a running gateway (the fake ComfyUI, or a real one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.models import JobRecord
from gateway.sdk import (
    ApiError,
    AsyncGatewayClient,
    GatewayClient,
    GatewayUnreachable,
    JobEnd,
    JobEvent,
    JobUpdate,
    PreviewImage,
    ProgressUpdate,
)
from tests.conftest import API_KEY, Comfy, Gateway
from tests.fake_comfy import FakeComfyUI
from tests.test_integration import needs_checkpoint


class InThread:
    """A `GatewayClient` whose calls run in a thread, so that the test's loop keeps serving the gateway."""

    def __init__(self, client: GatewayClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)
        return call

    async def all_events(self, job_id: str, **kwargs: Any) -> list[JobEvent]:
        return await asyncio.to_thread(lambda: list(self._client.events(job_id, **kwargs)))


class Async:
    def __init__(self, client: AsyncGatewayClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def all_events(self, job_id: str, **kwargs: Any) -> list[JobEvent]:
        return [event async for event in self._client.events(job_id, **kwargs)]


def base_url(gateway: Gateway) -> str:
    return str(gateway.client.make_url("")).rstrip("/")


@pytest.fixture(params=["sync", "async"])
async def api(request: pytest.FixtureRequest, gateway: Gateway) -> AsyncIterator[Any]:
    if request.param == "sync":
        with GatewayClient(base_url(gateway), API_KEY) as client:
            yield InThread(client)
    else:
        async with AsyncGatewayClient(base_url(gateway), API_KEY) as client:
            yield Async(client)


def text_to_image(comfy: Comfy) -> tuple[str, dict[str, Any]]:
    """A preset and overrides that run on this ComfyUI, small and quick."""
    if comfy.checkpoint is None:
        return "example_01", {"width": 64, "height": 64}
    return "sd15", {"checkpoint": comfy.checkpoint, "width": 64, "height": 64}


async def test_presets(api: Any) -> None:
    presets = await api.presets()
    assert "example_01" in {p.slug for p in presets}
    detail = await api.preset("example_01")
    seed = next(p for p in detail.parameters if p.name == "seed")
    assert (detail.slug, seed.type) == ("example_01", "integer")


async def test_generate_wait_download(api: Any, comfy: Comfy, tmp_path: Path) -> None:
    slug, overrides = text_to_image(comfy)
    ids = await api.generate(slug, count=2, seed=42, **overrides)
    assert len(ids) == 2
    records = [await api.wait(job_id) for job_id in ids]
    assert [r.status for r in records] == ["done", "done"], records
    assert [r.result.seed for r in records] == [42, 43]
    path = await api.download(records[0].result.image_url, tmp_path / "a" / "one.png")
    assert path == tmp_path / "a" / "one.png"
    assert path.read_bytes().startswith(b"\x89PNG")
    assert not list(path.parent.glob("*.part"))
    assert (await api.job(ids[1])) == records[1]


async def test_events_follow_a_job_to_its_end(api: Any, comfy: Comfy) -> None:
    checkpoint = needs_checkpoint(comfy)
    if comfy.fake is not None:
        comfy.fake.step_delay = 0.02
    # the second job waits behind the first: a real ComfyUI can finish a lone 64x64 job before
    # the stream is open, and then there are no steps left to see
    [_, job_id] = await api.generate("sd15", count=2, checkpoint=checkpoint, width=64, height=64, seed=3)
    events = await api.all_events(job_id, previews=True)
    assert isinstance(events[0], JobUpdate) and events[0].job.id == job_id
    assert isinstance(events[-1], JobEnd) and events[-1].job.status == "done"
    assert events[-1].job.result.seed == 4
    assert sum(isinstance(e, JobEnd) for e in events) == 1
    steps = [e.progress for e in events if isinstance(e, ProgressUpdate) and e.progress.total_steps]
    assert steps and steps[-1].step == steps[-1].total_steps
    previews = [e for e in events if isinstance(e, PreviewImage)]
    assert previews and previews[0].content().startswith(b"\xff\xd8")  # JPEG


async def test_events_of_a_finished_job(api: Any, gateway: Gateway) -> None:
    [job_id] = await api.generate("example_01", width=64, height=64)
    await gateway.wait(job_id)
    events = await api.all_events(job_id)
    assert [type(e) for e in events] == [JobUpdate, JobEnd]


async def test_status_and_gallery(api: Any, gateway: Gateway) -> None:
    [job_id] = await api.generate("example_01", width=64, height=64, seed=11)
    await gateway.wait(job_id)
    status = await api.status()
    assert status.jobs.done_last_hour == 1 and status.jobs.waiting == 0
    assert status.backend.url == gateway.settings.comfyui_url
    page = await api.images(limit=10, preset="example_01")
    assert page.total == 1 and (page.images[0].job_id, page.images[0].seed) == (job_id, 11)
    assert (await api.images(preset="sd15")).total == 0


async def test_cancel_and_interrupt_all(api: Any, gateway: Gateway, fake: FakeComfyUI) -> None:
    fake.stall = True
    first, second, third = await api.generate("example_01", count=3, width=64, height=64)
    await gateway.wait(first, until=("processing",))
    cancelled: JobRecord = await api.cancel(third)  # still in the gateway's own queue
    assert (cancelled.status, cancelled.error) == ("failed", "cancelled")
    assert await api.interrupt_all() == 2
    fake.release()
    for job_id in (first, second):
        assert (await gateway.wait(job_id))["error"] == "cancelled"


@pytest.mark.parametrize(("call", "args", "status", "code", "field"), [
    ("generate", ("nope",), 404, "preset_not_found", None),
    ("generate", ("example_01",), 400, "invalid_parameter", "count"),
    ("generate", ("example_01",), 400, "unsupported_parameter", "checkpoint"),
    ("preset", ("nope",), 404, "preset_not_found", None),
    ("job", ("no-such-job",), 404, "job_not_found", None),
    ("cancel", ("no-such-job",), 404, "job_not_found", None),
    ("all_events", ("no-such-job",), 404, "job_not_found", None),
])
async def test_api_errors(api: Any, call: str, args: tuple[str, ...], status: int, code: str,
                          field: str | None) -> None:
    overrides = {"count": 99} if field == "count" else {"checkpoint": "x"} if field else {}
    with pytest.raises(ApiError) as caught:
        await getattr(api, call)(*args, **overrides)
    error = caught.value
    assert (error.status, error.code, error.field) == (status, code, field)
    assert error.message and str(error).startswith(f"{status} {code}: ")


@pytest.mark.parametrize(("key", "status", "code"), [(None, 401, "missing_api_key"), ("wrong", 403, "invalid_api_key")])
async def test_auth_errors(gateway: Gateway, key: str | None, status: int, code: str) -> None:
    async with AsyncGatewayClient(base_url(gateway), key) as client:
        with pytest.raises(ApiError) as caught:
            await client.presets()
    assert (caught.value.status, caught.value.code) == (status, code)


async def test_missing_image_is_an_api_error(api: Any, tmp_path: Path) -> None:
    with pytest.raises(ApiError) as caught:
        await api.download("/static/uploads/presets/none.png", tmp_path / "x.png")
    assert caught.value.status == 404
    assert not (tmp_path / "x.png").exists()


async def test_unreachable_gateway_is_one_error(unused_tcp_port: int) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}"
    async with AsyncGatewayClient(url, "k") as client:
        with pytest.raises(GatewayUnreachable, match=f"cannot reach the gateway at {url}"):
            await client.presets()
    with GatewayClient(url, "k") as sync, pytest.raises(GatewayUnreachable):
        sync.presets()
