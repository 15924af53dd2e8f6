"""Live progress: job records while pending and processing, and the per-job event stream."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any

import pytest
from PIL import Image

from gateway.api import live
from tests.conftest import API_KEY, Comfy, Gateway, running_gateway
from tests.fake_comfy import FakeComfyUI
from tests.helpers import sse_events
from tests.test_integration import needs_checkpoint


async def stream(gateway: Gateway, job_id: str, query: str = "") -> list[tuple[str, Any]]:
    """Every event of a job's stream until the server ends it."""
    seen: list[tuple[str, Any]] = []
    resp = await gateway.client.get(f"/api/v1/job/{job_id}/events{query}", headers=gateway.headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "text/event-stream"
    async for event, data in sse_events(resp):
        seen.append((event, data if event == ":" else json.loads(data)))
    return seen


def of(events: list[tuple[str, Any]], name: str) -> list[Any]:
    return [data for event, data in events if event == name]


async def test_a_stream_follows_a_job_from_the_queue_to_its_result(gateway: Gateway, comfy: Comfy) -> None:
    checkpoint = needs_checkpoint(comfy)
    if comfy.fake is not None:
        comfy.fake.step_delay = 0.02  # steps as a real sampler's: apart in time, so none is coalesced away
    first, second = await gateway.generate("sd15", {"count": 2, "checkpoint": checkpoint, "width": 64,
                                                    "height": 64, "seed": 5})
    events = await stream(gateway, second, "?previews=1")

    names = [e for e, _ in events]
    assert names[0] == "job" and names[-1] == "end"
    assert events[0][1]["status"] == "pending"
    assert events[0][1]["queue_position"] in (1, 2)  # behind the first job, unless it already started
    statuses = [record["status"] for record in of(events, "job")]
    assert "processing" in statuses
    progress = of(events, "progress")
    samples = [p for p in progress if p["total_steps"]]
    assert samples and samples[-1]["step"] == samples[-1]["total_steps"]
    assert {p["node_type"] for p in samples} <= {"KSampler", "VAEDecode", "SaveImage"}
    assert samples[0]["node_type"] == "KSampler"
    assert all(p["percent"] == round(100 * p["step"] / p["total_steps"], 1) for p in samples)
    previews = of(events, "preview")
    assert previews, "previews were asked for"
    header, _, encoded = previews[0]["image"].partition(",")
    assert header == "data:image/jpeg;base64"
    with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
        assert image.format == "JPEG"
    end = events[-1][1]
    assert end["status"] == "done" and end["result"]["seed"] == 6
    assert end == await gateway.job(second)
    assert (await gateway.wait(first))["status"] == "done"


async def test_previews_only_when_asked(gateway: Gateway, comfy: Comfy) -> None:
    checkpoint = needs_checkpoint(comfy)
    [job_id] = await gateway.generate("sd15", {"checkpoint": checkpoint, "width": 64, "height": 64})
    events = await stream(gateway, job_id)
    assert not of(events, "preview")
    assert events[-1][0] == "end"


async def test_a_late_subscriber_gets_the_final_record_and_the_end(gateway: Gateway, comfy: Comfy) -> None:
    [job_id] = await gateway.generate("example_01", {"width": 64, "height": 64})
    record = await gateway.wait(job_id)
    events = await stream(gateway, job_id)
    assert events == [("job", record), ("end", record)]


async def test_a_stream_for_an_unknown_job_is_a_404(gateway: Gateway) -> None:
    resp = await gateway.client.get("/api/v1/job/nope/events", headers=gateway.headers)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "job_not_found"


async def test_a_stream_needs_a_key_and_takes_it_in_the_query(gateway: Gateway) -> None:
    [job_id] = await gateway.generate("example_01", {"width": 64, "height": 64})
    assert (await gateway.client.get(f"/api/v1/job/{job_id}/events")).status == 401
    await gateway.wait(job_id)
    resp = await gateway.client.get(f"/api/v1/job/{job_id}/events?api_key={API_KEY}")  # what EventSource can do
    assert resp.status == 200
    assert [e async for e, _ in sse_events(resp)] == ["job", "end"]


@pytest.mark.parametrize("flag", ["maybe", "2"])
async def test_a_bad_previews_flag_is_refused_naming_it(gateway: Gateway, flag: str) -> None:
    resp = await gateway.client.get(f"/api/v1/job/x/events?previews={flag}", headers=gateway.headers)
    assert resp.status == 400
    assert (await resp.json())["error"]["field"] == "previews"


async def test_queue_positions_count_down_while_waiting(gateway: Gateway, fake: FakeComfyUI) -> None:
    fake.stall = True
    ids = await gateway.generate("example_01", {"count": 4, "width": 64, "height": 64})
    last = ids[-1]
    record = await gateway.job(last)
    assert (record["status"], record["progress"]) == ("pending", None)
    assert record["queue_position"] in (3, 4)  # 3 once ComfyUI has started the first job
    watcher = asyncio.create_task(stream(gateway, last))
    await asyncio.sleep(0.3)
    fake.job_delay = 0.3  # jobs long enough for the queue to be seen moving
    fake.stall = False
    fake.release()
    events = await asyncio.wait_for(watcher, 20)
    assert events[0][0] == "job" and events[0][1]["queue_position"] in (3, 4)  # the first may have started
    positions = [d["queue_position"] for d in of(events, "queue")]
    assert positions and positions == sorted(positions, reverse=True)
    assert positions[-1] < events[0][1]["queue_position"]
    assert all(r["queue_position"] is None for r in of(events, "job") if r["status"] != "pending")
    assert all(r["queue_position"] for r in of(events, "job") if r["status"] == "pending")
    assert events[-1][1]["status"] == "done"


async def test_the_job_record_shows_progress_while_processing(gateway: Gateway, fake: FakeComfyUI,
                                                              comfy: Comfy) -> None:
    fake.step_delay = 0.05
    [job_id] = await gateway.generate("sd15", {"checkpoint": needs_checkpoint(comfy), "width": 64, "height": 64})
    record = await gateway.wait(job_id, until=("processing",))
    for _ in range(200):
        record = await gateway.job(job_id)
        if record["progress"] and record["progress"]["step"] >= 2:
            break
        await asyncio.sleep(0.02)
    progress = record["progress"]
    assert progress["node_type"] == "KSampler" and progress["total_steps"] == 20
    assert 2 <= progress["step"] <= 20 and record["queue_position"] is None
    done = await gateway.wait(job_id)
    assert done["progress"] is None


async def test_idle_streams_get_keep_alive_comments(gateway: Gateway, fake: FakeComfyUI,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "KEEPALIVE_SECONDS", 0.05)
    fake.stall = True
    [job_id] = await gateway.generate("example_01", {"width": 64, "height": 64})
    resp = await gateway.client.get(f"/api/v1/job/{job_id}/events", headers=gateway.headers)
    seen = []
    async for event, data in sse_events(resp):
        seen.append((event, data))
        if event == ":":
            break
    assert seen[0][0] == "job" and seen[-1] == (":", "keep-alive")
    resp.close()
    fake.stall = False
    fake.release()


async def test_many_subscribers_cost_one_comfyui_stream(gateway: Gateway, fake: FakeComfyUI) -> None:
    fake.stall = True
    [job_id] = await gateway.generate("example_01", {"width": 64, "height": 64})
    watchers = [asyncio.create_task(stream(gateway, job_id)) for _ in range(100)]
    await asyncio.sleep(0.5)
    fake.stall = False
    fake.release()
    results = await asyncio.wait_for(asyncio.gather(*watchers), 30)
    final = await gateway.job(job_id)
    assert all(events[-1] == ("end", final) for events in results)
    assert fake.open_sockets == 1


async def test_stopping_the_gateway_ends_open_streams(settings: Any, fake: FakeComfyUI) -> None:
    fake.stall = True

    async def watch_then_stop() -> None:
        async with running_gateway(settings) as gateway:
            [job_id] = await gateway.generate("example_01", {"width": 64, "height": 64})
            resp = await gateway.client.get(f"/api/v1/job/{job_id}/events", headers=gateway.headers)
            assert b"event: job" in await resp.content.readuntil(b"\n\n")

    # an open stream would hold the shutdown until aiohttp's timeout (60 s)
    await asyncio.wait_for(watch_then_stop(), 10)
    fake.stall = False
    fake.release()
