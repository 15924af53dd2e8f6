"""Reference images through a running gateway: checked, stored, uploaded to ComfyUI, bound."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pytest
from PIL import Image

from gateway.settings import Settings
from tests.conftest import Comfy, Gateway, running_gateway
from tests.images import b64, data_url, image_bytes


@pytest.mark.real_comfy
async def test_a_reference_image_is_uploaded_and_bound(gateway: Gateway, comfy: Comfy) -> None:
    png = image_bytes("PNG", size=(40, 30))
    [job_id] = await gateway.generate("reference_soften", {"reference_images": [data_url(png, "image/jpeg")],
                                                           "width": 64, "height": 48})
    record = await gateway.wait(job_id)
    assert record["status"] == "done", record
    result = await gateway.client.get(record["result"]["image_url"])
    assert result.status == 200
    stored = list(gateway.settings.references_dir.iterdir())
    assert [p.read_bytes() for p in stored] == [png]
    name = stored[0].name
    assert record["params"]["reference_image"] == name
    if comfy.fake is not None:
        assert comfy.fake.files[("input", "", name)] == png
        [prompt] = [s["prompt"] for s in comfy.fake.submissions if s["prompt_id"] == job_id]
        assert prompt["1"]["inputs"]["image"] == name


async def test_a_queued_job_keeps_its_image_across_a_restart(settings: Settings, fake: Any) -> None:
    jpeg = image_bytes("JPEG", size=(32, 32))
    await fake.stop()  # ComfyUI is down: the job waits in the gateway's queue
    async with running_gateway(settings) as gw:
        [job_id] = await gw.generate("reference_soften", {"reference_images": [b64(jpeg)]})
        assert (await gw.job(job_id))["status"] == "pending"
    await fake.start()
    async with running_gateway(settings) as gw:
        assert (await gw.wait(job_id))["status"] == "done"
    assert jpeg in fake.files.values()


async def test_a_large_image_fits_the_generate_body_limit(gateway: Gateway, fake: Any) -> None:
    noise = Image.frombytes("RGB", (1000, 700), os.urandom(1000 * 700 * 3))  # incompressible: > 2 MB
    path = gateway.settings.data_dir / "noise.png"
    gateway.settings.data_dir.mkdir(parents=True, exist_ok=True)
    noise.save(path)
    data = path.read_bytes()
    assert len(data) > 2 * 1024 * 1024
    body = json.dumps({"reference_images": [b64(data)]}).encode()
    resp = await gateway.client.post("/api/v1/generate/reference_soften", data=io.BytesIO(body),
                                     headers={**gateway.headers, "Content-Type": "application/json"})
    assert resp.status == 202, await resp.text()
    [job] = (await resp.json())["jobs"]
    record = await gateway.wait(job["job_id"])
    assert record["status"] == "done", record
    assert data in fake.files.values()


@pytest.mark.parametrize(
    ("slug", "images", "field", "message"),
    [
        ("example_01", ["PNG"], "reference_images", "preset 'example_01' has no image input"),
        ("reference_soften", ["PNG", "PNG"], "reference_images", "takes at most 1 image(s), got 2"),
        ("reference_soften", [], "reference_images", "give 1 to 6 images (got 0)"),
        ("reference_soften", ["PNG"] * 7, "reference_images", "give 1 to 6 images (got 7)"),
        ("reference_soften", ["GIF"], "reference_images.0", "item 1 is not a JPEG, PNG or WebP image"),
        ("reference_soften", ["%%%"], "reference_images.0", "item 1 is not valid base64"),
        ("reference_soften", "PNG", "reference_images", "must be a list"),
        ("reference_soften", [3], "reference_images.0", "must be a string"),
    ],
)
async def test_unusable_reference_images_are_400(gateway: Gateway, slug: str, images: Any, field: str,
                                                 message: str) -> None:
    encoded = {"PNG": b64(image_bytes("PNG")), "GIF": b64(b"GIF89a" + b"\0" * 20)}
    items = [encoded.get(i, i) if isinstance(i, str) else i for i in images] if isinstance(images, list) else images
    resp = await gateway.client.post(f"/api/v1/generate/{slug}", json={"reference_images": items},
                                     headers=gateway.headers)
    error = (await resp.json())["error"]
    assert resp.status == 400, error
    assert (error["field"], message in error["message"]) == (field, True), error
    assert not gateway.settings.references_dir.exists() or not any(gateway.settings.references_dir.iterdir())
