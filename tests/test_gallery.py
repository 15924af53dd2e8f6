"""The gallery: result images newest first, thumbnails, and the stream of new images."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from PIL import Image

from gateway.thumbnails import THUMB_SIZE
from tests.conftest import Gateway
from tests.helpers import sse_events


async def images(gateway: Gateway, query: str = "") -> dict:
    resp = await gateway.client.get(f"/api/v1/images{query}", headers=gateway.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_images_are_listed_newest_first_with_thumbnails(gateway: Gateway) -> None:
    first = await gateway.generate("example_01", {"count": 2, "width": 64, "height": 64, "seed": 10})
    await gateway.wait_all(first)
    second = await gateway.generate("example_01", {"width": 512, "height": 384, "seed": 20})
    [record] = await gateway.wait_all(second)

    listed = await images(gateway)
    assert listed["total"] == 3
    newest = listed["images"][0]
    assert newest["job_id"] == second[0] and newest["seed"] == 20 and newest["preset"] == "example_01"
    assert newest["image_url"] == record["result"]["image_url"]
    assert newest["relative_path"] == record["result"]["relative_path"]
    assert {i["job_id"] for i in listed["images"][1:]} == set(first)  # stored as each download ends

    thumb = await gateway.client.get(newest["thumb_url"])  # like the images, served without a key
    assert thumb.status == 200
    with Image.open(io.BytesIO(await thumb.read())) as image:
        assert image.format == "WEBP"
        assert max(image.size) == THUMB_SIZE and image.size == (THUMB_SIZE, THUMB_SIZE * 384 // 512)
    full = await gateway.client.get(newest["image_url"])
    assert full.status == 200


async def test_paging_and_the_preset_filter(gateway: Gateway) -> None:
    await gateway.wait_all(await gateway.generate("example_01", {"count": 5, "width": 64, "height": 64}))
    page = await images(gateway, "?limit=2&offset=1")
    everything = await images(gateway)
    assert page["total"] == 5 and page["images"] == everything["images"][1:3]
    assert (await images(gateway, "?preset=sd15")) == {"images": [], "total": 0}
    assert (await images(gateway, "?preset=example_01"))["total"] == 5


@pytest.mark.parametrize(("query", "field"), [
    ("?limit=0", "limit"), ("?limit=201", "limit"), ("?limit=ten", "limit"), ("?offset=-1", "offset"),
])
async def test_bad_paging_is_refused_naming_the_parameter(gateway: Gateway, query: str, field: str) -> None:
    resp = await gateway.client.get(f"/api/v1/images{query}", headers=gateway.headers)
    assert resp.status == 400
    assert (await resp.json())["error"]["field"] == field


async def test_an_unknown_preset_filter_is_a_404(gateway: Gateway) -> None:
    resp = await gateway.client.get("/api/v1/images?preset=nope", headers=gateway.headers)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "preset_not_found"


async def test_failed_jobs_add_no_images(gateway: Gateway) -> None:
    [job_id] = await gateway.generate("sd15", {"checkpoint": "no-such-model.safetensors", "width": 64, "height": 64})
    assert (await gateway.wait(job_id))["status"] == "failed"
    assert (await images(gateway))["total"] == 0


async def test_new_images_are_announced_as_they_are_stored(gateway: Gateway) -> None:
    resp = await gateway.client.get("/api/v1/images/events", headers=gateway.headers)
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    events = sse_events(resp)
    assert (await anext(events))[0] == ":"  # the stream is open
    ids = await gateway.generate("example_01", {"count": 2, "width": 64, "height": 64})
    announced = []
    while len(announced) < 2:
        event, data = await asyncio.wait_for(anext(events), 20)
        if event == "image":
            announced.append(json.loads(data))
    assert {a["job_id"] for a in announced} == set(ids)
    listed = await images(gateway)
    assert sorted(listed["images"], key=lambda i: i["id"]) == sorted(announced, key=lambda i: i["id"])
    resp.close()
