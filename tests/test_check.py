"""`check` against a ComfyUI's /object_info: pure findings, and the command against a server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.check import problems_against, run_check
from gateway.presets import load_presets
from gateway.settings import Settings
from tests.conftest import Comfy
from tests.helpers import DATA, ROOT, load_json

PRESETS = load_presets(ROOT / "presets.yaml")
OBJECT_INFO = load_json(DATA / "object_info.json")


def test_model_free_preset_is_runnable() -> None:
    assert problems_against(PRESETS["example_01"], OBJECT_INFO) == []


def test_missing_checkpoint_and_unknown_node_are_reported() -> None:
    info = {k: v for k, v in OBJECT_INFO.items() if k != "VAEDecode"}
    found = problems_against(PRESETS["sd15"], info)
    assert any("node 8: ComfyUI has no node type 'VAEDecode'" in f for f in found)
    assert any("input 'ckpt_name': 'v1-5-pruned-emaonly-fp16.safetensors' is not available" in f for f in found)


def test_new_style_combo_is_understood() -> None:
    info = dict(OBJECT_INFO)
    info["CheckpointLoaderSimple"] = {"input": {"required": {"ckpt_name": ["COMBO", {"options": [
        "v1-5-pruned-emaonly-fp16.safetensors"]}]}}}
    assert not [f for f in problems_against(PRESETS["sd15"], info) if "ckpt_name" in f]


async def test_check_command_against_comfyui(comfy: Comfy, capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    settings = Settings(comfyui_url=comfy.url, presets_path=ROOT / "presets.yaml", data_dir=tmp_path)
    status = await run_check(settings)
    out = capsys.readouterr().out
    assert "FAIL example_01" not in out
    assert "FAIL sd15: node 4 (CheckpointLoaderSimple) input 'ckpt_name'" in out  # no such file on the server
    assert status == 1


async def test_check_without_comfyui_skips_the_server_checks(capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    settings = Settings(comfyui_url="http://127.0.0.1:9", presets_path=ROOT / "presets.yaml", data_dir=tmp_path)
    assert await run_check(settings) == 0
    assert "skip ComfyUI checks" in capsys.readouterr().out


async def test_check_reports_editor_workflows_it_cannot_convert(capsys: pytest.CaptureFixture[str],
                                                                tmp_path: Path) -> None:
    editor = load_json(DATA / "editor" / "default.editor.json")
    broken = {"nodes": [{"id": 7, "type": "NoSuchNode", "mode": 0}], "links": []}
    (tmp_path / "ok.json").write_text(json.dumps(editor))
    (tmp_path / "bad.json").write_text(json.dumps(broken))
    (tmp_path / "presets.yaml").write_text("ok:\n  name: OK\n  workflow: ok.json\n"
                                           "bad:\n  name: Bad\n  workflow: bad.json\n")
    settings = Settings(comfyui_url="http://127.0.0.1:9", presets_path=tmp_path / "presets.yaml",
                        data_dir=tmp_path / "data")
    assert await run_check(settings, offline=True) == 1
    out = capsys.readouterr().out
    assert "FAIL ok: " in out and "/object_info" in out  # nothing to convert with yet

    settings.object_info_cache.parent.mkdir()
    settings.object_info_cache.write_text(json.dumps(OBJECT_INFO))
    assert await run_check(settings, offline=True) == 1
    out = capsys.readouterr().out
    assert "ok   ok: ok.json (editor format, converted)" in out
    assert "FAIL bad: " in out and "node 7 (NoSuchNode): ComfyUI has no node of this type" in out
