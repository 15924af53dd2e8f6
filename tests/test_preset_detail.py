"""GET /api/v1/presets/<slug>: parameters with their ranges, and checkpoint names from ComfyUI when it answers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gateway.settings import Settings
from tests.conftest import Comfy, Gateway, running_gateway


async def detail(gw: Gateway, slug: str) -> tuple[int, dict[str, Any]]:
    resp = await gw.client.get(f"/api/v1/presets/{slug}", headers=gw.headers)
    return resp.status, await resp.json()


async def test_detail_has_the_summary_fields_and_described_parameters(gateway: Gateway, comfy: Comfy) -> None:
    status, body = await detail(gateway, "sd15")
    assert status == 200
    summary = next(p for p in (await (await gateway.client.get("/api/v1/presets", headers=gateway.headers)).json())
                   ["presets"] if p["slug"] == "sd15")
    assert {k: v for k, v in body.items() if k != "parameters"} == {k: v for k, v in summary.items()
                                                                    if k != "parameters"}
    params = {p["name"]: p for p in body["parameters"]}
    assert params["checkpoint"]["bound_to"] == ["4.ckpt_name"]
    assert comfy.checkpoint in params["checkpoint"]["allowed"]
    assert params["width"]["multiple_of"] == 8 and params["width"]["default"] == 512
    assert params["count"]["maximum"] == 20


async def test_detail_without_comfyui_has_no_allowed_values(settings: Settings) -> None:
    async with running_gateway(replace(settings, comfyui_url="http://127.0.0.1:9")) as gw:
        status, body = await detail(gw, "sd15")
    assert status == 200
    assert {p["name"]: p["allowed"] for p in body["parameters"]}["checkpoint"] is None


async def test_unknown_preset_is_404(gateway: Gateway) -> None:
    status, body = await detail(gateway, "nope")
    assert status == 404
    assert body["error"]["code"] == "preset_not_found"
