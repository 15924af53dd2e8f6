"""Preset management through the API, the files behind it, and reloads of hand edits."""

from __future__ import annotations

import base64
import json
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.api.state import REGISTRY
from gateway.atomic import write_atomic
from gateway.preset_registry import PresetRegistry
from gateway.settings import Settings
from tests.conftest import API_KEY, Comfy, Gateway, running_gateway
from tests.helpers import DATA, ROOT, load_json, workflow

EDITOR_DEFAULT = load_json(DATA / "editor" / "default.editor.json")
SD15 = workflow("sd15_text_to_image.json")
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()


def copy_presets(folder: Path) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "presets.yaml", folder / "presets.yaml")
    shutil.copytree(ROOT / "workflows", folder / "workflows")
    return folder / "presets.yaml"


@pytest.fixture
async def admin(tmp_path: Path, comfy: Comfy) -> AsyncIterator[Gateway]:
    settings = Settings(comfyui_url=comfy.url, data_dir=tmp_path / "data", api_key=API_KEY, job_timeout=60.0,
                        presets_path=copy_presets(tmp_path / "presets"))
    async with running_gateway(settings) as gw:
        yield gw


async def call(gw: Gateway, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    resp = await gw.client.request(method, path, json=body, headers=gw.headers)
    return resp.status, await resp.json()


def on_disk(gw: Gateway) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(gw.settings.presets_path.read_text(encoding="utf-8"))
    return data


async def slugs(gw: Gateway) -> set[str]:
    _, body = await call(gw, "GET", "/api/v1/presets")
    return {p["slug"] for p in body["presets"]}


async def test_create_from_api_format_with_cover(admin: Gateway) -> None:
    status, body = await call(admin, "POST", "/api/v1/presets", {
        "slug": "mine", "name": "Mine", "workflow": SD15, "defaults": {"steps": 4}, "cover": PNG,
        "description": "made by the API"})
    assert status == 201, body
    assert body["slug"] == "mine" and body["has_cover"] and "steps" in body["parameters"]
    assert "mine" in await slugs(admin)
    spec = on_disk(admin)["mine"]
    assert spec["defaults"] == {"steps": 4}
    base = admin.settings.presets_path.parent
    assert load_json(base / spec["workflow"]) == SD15
    assert (base / spec["cover"]).read_bytes().startswith(b"\x89PNG")
    assert admin.settings.presets_path.read_text().startswith("# Presets callable")  # header comment kept
    resp = await admin.client.get(body["cover_url"])
    assert resp.status == 200


async def test_create_from_the_editor_format_and_generate(admin: Gateway, comfy: Comfy) -> None:
    status, body = await call(admin, "POST", "/api/v1/presets", {
        "slug": "from-editor", "name": "From the editor", "workflow": EDITOR_DEFAULT,
        "defaults": {"checkpoint": comfy.checkpoint, "steps": 1, "width": 64, "height": 64}})
    assert status == 201, body
    spec = on_disk(admin)["from-editor"]
    assert "nodes" in load_json(admin.settings.presets_path.parent / spec["workflow"])  # kept as uploaded
    assert admin.settings.object_info_cache.is_file()
    [job] = await admin.generate("from-editor", {"seed": 1})
    assert (await admin.wait(job))["status"] == "done"


@pytest.mark.parametrize(("body", "field", "text"), [
    ({"slug": "x", "name": "X", "workflow": {"nodes": [{"id": 1, "type": "NoSuchNode", "mode": 0}], "links": []}},
     "workflow", "NoSuchNode"),
    ({"slug": "x", "name": "X", "workflow": {"1": {"inputs": {}}}}, "workflow", "has no class_type"),
    ({"slug": "x", "name": "X", "workflow": SD15, "params": {"seed": "3.sed"}}, "params", "no input 'sed'"),
    ({"slug": "x", "name": "X", "workflow": SD15, "defaults": {"colour": 1}}, "defaults", "does not resolve"),
    ({"slug": "x", "name": "X", "workflow": SD15, "cover": "bm90IGFuIGltYWdl"}, "cover", "PNG, JPEG or WebP"),
    ({"slug": "x y", "name": "X", "workflow": SD15}, "slug", "must match"),
    ({"slug": "x", "workflow": SD15}, "name", "required"),
    ({"slug": "x", "name": "X", "workflow": SD15, "colour": 1}, "colour", "not a known field"),
])
async def test_create_refusals_name_the_field(admin: Gateway, body: dict[str, Any], field: str, text: str) -> None:
    before = admin.settings.presets_path.read_bytes()
    status, answer = await call(admin, "POST", "/api/v1/presets", body)
    assert status == 400, answer
    assert answer["error"]["field"] == field
    assert text in answer["error"]["message"]
    assert admin.settings.presets_path.read_bytes() == before
    assert sorted(p.name for p in (admin.settings.presets_path.parent / "workflows").iterdir()) == \
        sorted(p.name for p in (ROOT / "workflows").iterdir())


async def test_conversion_problems_are_listed(admin: Gateway) -> None:
    wf = {"nodes": [{"id": 7, "type": "NoSuchNode", "mode": 0}], "links": []}
    _, answer = await call(admin, "POST", "/api/v1/presets", {"slug": "x", "name": "X", "workflow": wf})
    assert answer["error"]["problems"] == [{"node_id": "7", "node_type": "NoSuchNode",
                                            "reason": "ComfyUI has no node of this type (a custom node that is "
                                                      "not installed?)"}]


async def test_slug_taken_and_unknown_slugs(admin: Gateway) -> None:
    status, answer = await call(admin, "POST", "/api/v1/presets", {"slug": "sd15", "name": "X", "workflow": SD15})
    assert (status, answer["error"]["code"]) == (409, "preset_exists")
    status, answer = await call(admin, "POST", "/api/v1/presets/sd15/duplicate", {"slug": "sdxl"})
    assert (status, answer["error"]["code"]) == (409, "preset_exists")
    for method, path, body in [("POST", "/api/v1/presets/nope/duplicate", {"slug": "n2"}),
                               ("PATCH", "/api/v1/presets/nope", {"name": "N"}),
                               ("DELETE", "/api/v1/presets/nope", None)]:
        status, answer = await call(admin, method, path, body)
        assert (status, answer["error"]["code"]) == (404, "preset_not_found")


async def test_duplicate_change_and_delete(admin: Gateway) -> None:
    status, body = await call(admin, "POST", "/api/v1/presets/illustrious/duplicate", {"slug": "ill2"})
    assert status == 201 and body["name"] == "Illustrious (SDXL) anime portrait (copy)"
    assert on_disk(admin)["ill2"]["workflow"] == on_disk(admin)["illustrious"]["workflow"]

    status, body = await call(admin, "PATCH", "/api/v1/presets/ill2",
                              {"name": "Renamed", "defaults": {"steps": 9}, "description": None, "workflow": SD15})
    assert status == 200, body
    spec = on_disk(admin)["ill2"]
    assert spec["name"] == "Renamed" and spec["defaults"] == {"steps": 9} and "description" not in spec
    written = admin.settings.presets_path.parent / spec["workflow"]
    assert load_json(written) == SD15
    assert admin.client.app[REGISTRY].presets["ill2"].defaults["steps"] == 9

    status, answer = await call(admin, "PATCH", "/api/v1/presets/ill2", {"defaults": {"steps": "many"}})
    assert (status, answer["error"]["field"]) == (400, "defaults")
    assert on_disk(admin)["ill2"]["defaults"] == {"steps": 9}

    status, _ = await call(admin, "DELETE", "/api/v1/presets/ill2")
    assert status == 200
    assert "ill2" not in on_disk(admin) and "ill2" not in await slugs(admin)
    assert not written.exists()  # written by the gateway, named by no preset any more
    assert (admin.settings.presets_path.parent / on_disk(admin)["illustrious"]["workflow"]).is_file()


async def test_generate_after_delete_is_404(admin: Gateway) -> None:
    await call(admin, "DELETE", "/api/v1/presets/sdxl")
    resp = await admin.client.post("/api/v1/generate/sdxl", json={}, headers=admin.headers)
    assert resp.status == 404


# -- the registry on its own ------------------------------------------------------------------

def registry_at(tmp_path: Path, fetch: Any = None) -> PresetRegistry:
    path = copy_presets(tmp_path / "presets")
    return PresetRegistry(presets_path=path, cache_path=tmp_path / "object_info.json", fetch_object_info=fetch)


def append(path: Path, text: str) -> None:
    write_atomic(path, (path.read_text() + text).encode())


async def test_hand_edits_are_reloaded_and_broken_ones_refused(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    registry = registry_at(tmp_path)
    registry.load()
    seen = registry.presets
    assert not await registry.check_for_changes()
    append(registry.path, "\nhand:\n  name: Hand\n  workflow: workflows/sd15_text_to_image.json\n")
    assert await registry.check_for_changes()
    assert "hand" in registry.presets and registry.presets is seen
    append(registry.path, "\nbroken:\n  name: Broken\n  workflow: workflows/none.json\n")
    with caplog.at_level(logging.ERROR):
        assert await registry.check_for_changes()
    assert "broken" not in registry.presets and "hand" in registry.presets
    assert "previous set stays in use" in caplog.text and "none.json" in caplog.text
    assert not await registry.check_for_changes()  # refused once, not again every second


async def test_a_changed_workflow_file_is_reloaded(tmp_path: Path) -> None:
    registry = registry_at(tmp_path)
    registry.load()
    graph = workflow("sd15_text_to_image.json")
    graph["3"]["inputs"]["steps"] = 3
    write_atomic(registry.path.parent / "workflows" / "sd15_text_to_image.json", json.dumps(graph).encode())
    assert await registry.check_for_changes()
    assert registry.presets["sd15"].defaults["steps"] == 3


async def test_editor_presets_wait_for_object_info(tmp_path: Path) -> None:
    object_info = json.loads((DATA / "object_info.json").read_text())

    async def fetch() -> dict[str, Any]:
        return object_info

    registry = registry_at(tmp_path, fetch)
    shutil.copy(DATA / "editor" / "default.editor.json", registry.path.parent / "workflows" / "ed.json")
    append(registry.path, "\ned:\n  name: Editor\n  workflow: workflows/ed.json\n")
    registry.load()
    assert "ed" not in registry.presets and "sd15" in registry.presets
    assert "/object_info" in registry.unconverted["ed"]
    await registry.refresh_object_info()
    assert "ed" in registry.presets and not registry.unconverted
    assert registry.presets["ed"].graph["3"]["class_type"] == "KSampler"

    again = PresetRegistry(presets_path=registry.path, cache_path=registry.cache_path)
    again.load()  # the cached /object_info converts it without asking ComfyUI
    assert "ed" in again.presets


def test_a_failed_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "presets.yaml"
    target.write_text("old")

    def crash(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["presets.yaml"]
