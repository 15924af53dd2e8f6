"""The command line: keys, check, and the first-start key."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest

from gateway.__main__ import main
from gateway.settings import Settings
from tests.conftest import Comfy, running_gateway
from tests.helpers import ROOT


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GATEWAY_PRESETS", str(ROOT / "presets.yaml"))
    monkeypatch.delenv("GATEWAY_API_KEY", raising=False)
    return tmp_path


def test_keys_create_list_revoke(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--name", "bot"]) == 0
    out = capsys.readouterr().out
    key = out.strip().splitlines()[-1]
    assert key.startswith("cgw_")
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "bot" in listing and "active" in listing and key not in listing
    assert main(["keys", "revoke", "bot"]) == 0
    assert main(["keys", "revoke", "bot"]) == 1
    assert "no active key" in capsys.readouterr().err
    main(["keys", "list"])
    assert "revoked" in capsys.readouterr().out


async def test_a_created_key_works_and_a_revoked_one_stops(env: Path, capsys: pytest.CaptureFixture[str],
                                                           comfy: Comfy) -> None:
    await asyncio.to_thread(main, ["keys", "create", "--name", "app"])
    key = capsys.readouterr().out.strip().splitlines()[-1]
    settings = Settings(comfyui_url=comfy.url, data_dir=env / "data", presets_path=ROOT / "presets.yaml")
    async with running_gateway(settings) as gw:
        assert (await gw.client.get("/api/v1/presets", headers={"X-API-Key": key})).status == 200
        await asyncio.to_thread(main, ["keys", "revoke", "app"])
        await asyncio.sleep(2.1)  # the documented bound on how long a revoked key keeps working
        assert (await gw.client.get("/api/v1/presets", headers={"X-API-Key": key})).status == 403


async def test_first_start_creates_and_logs_one_key(tmp_path: Path, comfy: Comfy,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(comfyui_url=comfy.url, data_dir=tmp_path / "data", presets_path=ROOT / "presets.yaml")
    with caplog.at_level(logging.WARNING, logger="gateway"):
        async with running_gateway(settings) as gw:
            match = re.search(r"API key: (cgw_\S+)", caplog.text)
            assert match, caplog.text
            assert (await gw.client.get("/api/v1/presets", headers={"X-API-Key": match.group(1)})).status == 200
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway"):
        async with running_gateway(settings):
            pass
    assert "API key:" not in caplog.text  # only on the very first start


def test_check_offline(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--offline"]) == 0
    out = capsys.readouterr().out
    assert "example_01" in out and "5 preset(s)" in out


def test_check_reports_a_broken_presets_file(env: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = env / "presets.yaml"
    bad.write_text("x:\n  name: X\n  workflow: missing.json\n")
    monkeypatch.setenv("GATEWAY_PRESETS", str(bad))
    assert main(["check", "--offline"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_bad_setting_is_one_clear_line(env: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "http")
    assert main(["keys", "list"]) == 2
    assert capsys.readouterr().err.strip() == "comfy-gateway: GATEWAY_PORT='http' is not valid: " \
        "invalid literal for int() with base 10: 'http'"
