"""Job priorities through the API: the range, the per-key maximum, the job record."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.__main__ import main
from gateway.settings import Settings
from tests.conftest import Comfy, Gateway, running_gateway
from tests.helpers import ROOT
from tests.test_api import assert_error


async def post(gateway: Gateway, body: dict[str, Any], key: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"X-API-Key": key} if key else gateway.headers
    resp = await gateway.client.post("/api/v1/generate/example_01", json=body, headers=headers)
    return resp.status, await resp.json()


@pytest.mark.parametrize(("priority", "code"), [(11, "invalid_parameter"), (-11, "invalid_parameter"),
                                                ("high", "invalid_parameter"), (1.5, "invalid_parameter"),
                                                (True, "invalid_parameter")])
async def test_a_priority_out_of_range_is_400(gateway: Gateway, priority: Any, code: str) -> None:
    status, body = await post(gateway, {"priority": priority})
    assert status == 400
    assert_error(body, code, field="priority")


async def test_above_the_default_maximum_is_403_and_lower_is_always_allowed(gateway: Gateway) -> None:
    status, body = await post(gateway, {"priority": 1})
    assert status == 403
    assert_error(body, "priority_not_allowed", field="priority")
    assert body["error"]["maximum"] == 0
    status, body = await post(gateway, {"priority": -3, "width": 64, "height": 64})
    assert status == 202
    record = await gateway.job(body["jobs"][0]["job_id"])
    assert record["priority"] == -3
    status, body = await post(gateway, {"width": 64, "height": 64})
    assert (await gateway.job(body["jobs"][0]["job_id"]))["priority"] == 0


async def test_the_gateway_maximum_comes_from_settings(settings: Settings) -> None:
    async with running_gateway(replace(settings, max_priority=5)) as gateway:
        assert (await post(gateway, {"priority": 5, "width": 64, "height": 64}))[0] == 202
        assert (await post(gateway, {"priority": 6}))[0] == 403


async def test_a_key_can_have_its_own_maximum(tmp_path: Path, comfy: Comfy, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("GATEWAY_API_KEY", raising=False)
    await asyncio.to_thread(main, ["keys", "create", "--name", "vip", "--max-priority", "8"])
    vip = capsys.readouterr().out.strip().splitlines()[-1]
    await asyncio.to_thread(main, ["keys", "create", "--name", "plain"])
    plain = capsys.readouterr().out.strip().splitlines()[-1]
    await asyncio.to_thread(main, ["keys", "list"])
    listing = capsys.readouterr().out
    assert "max priority 8" in listing and "max priority default" in listing
    settings = Settings(comfyui_url=comfy.url, data_dir=tmp_path / "data", presets_path=ROOT / "presets.yaml",
                        max_priority=2)
    async with running_gateway(settings) as gateway:
        assert (await post(gateway, {"priority": 8, "width": 64, "height": 64}, key=vip))[0] == 202
        status, body = await post(gateway, {"priority": 9}, key=vip)
        assert status == 403 and body["error"]["maximum"] == 8
        assert (await post(gateway, {"priority": 2, "width": 64, "height": 64}, key=plain))[0] == 202
        assert (await post(gateway, {"priority": 3}, key=plain))[0] == 403


@pytest.mark.parametrize("value", ["11", "-1", "x"])
def test_keys_create_refuses_a_bad_maximum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(SystemExit) as exit_info:
        main(["keys", "create", "--name", "x", "--max-priority", value])
    assert exit_info.value.code == 2
    assert "--max-priority" in capsys.readouterr().err
