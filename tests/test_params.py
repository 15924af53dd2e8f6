"""Parameters beyond the GAZE set through the API: sampling settings, batch and LoRAs."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.api.state import REGISTRY
from tests.conftest import Comfy, Gateway
from tests.fake_comfy import FakeComfyUI


async def post(gw: Gateway, body: dict[str, Any], slug: str = "sd15") -> tuple[int, Any]:
    await gw.client.app[REGISTRY].refresh_object_info()
    resp = await gw.client.post(f"/api/v1/generate/{slug}", json=body, headers=gw.headers)
    return resp.status, await resp.json()


async def test_sampling_parameters_reach_comfyui(gateway: Gateway, comfy: Comfy) -> None:
    body = {"checkpoint": comfy.checkpoint, "width": 64, "height": 64, "steps": 2, "cfg": 4.5,
            "sampler": "dpmpp_2m", "scheduler": "karras", "denoise": 1.0, "batch": 2}
    status, answer = await post(gateway, body)
    assert status == 202, answer
    record = await gateway.wait(answer["jobs"][0]["job_id"], timeout=60)
    assert record["status"] == "done", record
    assert record["params"] | body == record["params"]
    assert len(record["images"]) == 2  # batch 2: two images in one job
    if comfy.fake is not None:
        sampler = comfy.fake.submissions[-1]["prompt"]["3"]["inputs"]
        assert (sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == \
            (2, 4.5, "dpmpp_2m", "karras")


@pytest.mark.parametrize(("body", "field", "text"), [
    ({"sampler": "no_such_sampler"}, "sampler", "choices: euler"),
    ({"scheduler": "sometimes"}, "scheduler", "choices: simple"),
    ({"loras": [{"name": "missing.safetensors"}]}, "loras.0.name", "'missing.safetensors' is not available"),
    ({"steps": 0}, "steps", "at least 1"),
    ({"cfg": "high"}, "cfg", "must be a number"),
    ({"denoise": 1.5}, "denoise", "at most 1"),
    ({"batch": 17}, "batch", "at most 16"),
    ({"loras": [{"name": "a", "strength": 11}]}, "loras.0.strength", "at most 10"),
    ({"loras": [{"name": "a", "weight": 1}]}, "loras.0.weight", "not a known field"),
    ({"loras": "a.safetensors"}, "loras", "must be a list"),
])
async def test_bad_values_name_the_field(gateway: Gateway, body: dict[str, Any], field: str, text: str) -> None:
    status, answer = await post(gateway, body)
    assert status == 400, answer
    assert answer["error"]["field"] == field
    assert text in answer["error"]["message"]


async def test_a_preset_without_the_place_refuses(gateway: Gateway) -> None:
    status, answer = await post(gateway, {"steps": 3}, slug="example_01")
    assert (status, answer["error"]["code"], answer["error"]["field"]) == (400, "unsupported_parameter", "steps")


async def test_loras_are_inserted_and_run(lora_gateway: tuple[Gateway, FakeComfyUI]) -> None:
    gw, fake = lora_gateway
    body = {"checkpoint": "tiny.safetensors", "width": 64, "height": 64,
            "loras": [{"name": "style.safetensors", "strength": 0.7}, {"name": "detail.safetensors"}]}
    status, answer = await post(gw, body)
    assert status == 202, answer
    record = await gw.wait(answer["jobs"][0]["job_id"])
    assert record["status"] == "done", record
    prompt = fake.submissions[-1]["prompt"]
    loaders = {nid: node["inputs"] for nid, node in prompt.items() if node["class_type"] == "LoraLoader"}
    assert [(i["lora_name"], i["strength_model"]) for i in loaders.values()] == [
        ("style.safetensors", 0.7), ("detail.safetensors", 1.0)]
    last = list(loaders)[-1]
    assert prompt["3"]["inputs"]["model"] == [last, 0]
