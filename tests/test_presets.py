from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.presets import load_presets
from tests.helpers import ROOT, workflow

SD15 = workflow("sd15_text_to_image.json")


def write(tmp_path: Path, yaml_text: str, graph: object = SD15, name: str = "wf.json") -> Path:
    (tmp_path / name).write_text(json.dumps(graph))
    presets = tmp_path / "presets.yaml"
    presets.write_text(yaml_text)
    return presets


def test_shipped_presets_load() -> None:
    presets = load_presets(ROOT / "presets.yaml")
    assert next(iter(presets)) == "example_01"  # the GAZE examples call it; it needs no model
    assert "checkpoint" not in presets["example_01"].bindings
    assert {"sd15", "sdxl", "illustrious"} <= set(presets)
    assert presets["illustrious"].defaults["cfg"] == 5.5


def test_only_name_and_workflow_are_needed(tmp_path: Path) -> None:
    preset = load_presets(write(tmp_path, "p:\n  name: P\n  workflow: wf.json\n"))["p"]
    assert preset.defaults["positive"] == SD15["6"]["inputs"]["text"]
    assert preset.defaults["checkpoint"] == SD15["4"]["inputs"]["ckpt_name"]
    assert preset.save_nodes == ("9",)


def test_explicit_bindings_and_defaults(tmp_path: Path) -> None:
    text = ("p:\n  name: P\n  workflow: wf.json\n  params:\n    seed: KSampler.seed\n    batch: 5.batch_size\n"
            "  defaults:\n    batch: 2\n    width: 640\n")
    preset = load_presets(write(tmp_path, text))["p"]
    assert [str(r) for r in preset.bindings["batch"]] == ["5.batch_size"]
    assert preset.defaults["batch"] == 2
    assert preset.defaults["width"] == 640


@pytest.mark.parametrize(
    ("yaml_text", "graph", "message"),
    [
        ("p:\n  workflow: wf.json\n", SD15, "preset 'p': 'name' is required"),
        ("p:\n  name: P\n", SD15, "'workflow' (a workflow JSON file) is required"),
        ("p:\n  name: P\n  workflow: missing.json\n", SD15, "workflow file"),
        ("p:\n  name: P\n  workflow: wf.json\n  params:\n    seed: '3.sed'\n", SD15,
         "preset 'p': parameter 'seed' in wf.json: node 3 (KSampler) has no input 'sed'"),
        ("p:\n  name: P\n  workflow: wf.json\n  defaults:\n    color: 5\n", SD15,
         "preset 'p': default for 'color' does not resolve: wf.json has no place for it"),
        ("p:\n  name: P\n  workflow: wf.json\n  defaults:\n    seed: abc\n", SD15, "default 'seed' must be an integer"),
        ("p:\n  name: P\n  workflow: wf.json\n  cover: nope.png\n", SD15, "cover file"),
        ("p:\n  name: P\n  workflow: wf.json\n  colour: red\n", SD15, "unknown keys ['colour']"),
        ("'bad slug':\n  name: P\n  workflow: wf.json\n", SD15, "slug must be"),
        ("p:\n  name: P\n  workflow: wf.json\n", {"nodes": [], "links": []}, "editor's format"),
        ("p:\n  name: P\n  workflow: wf.json\n", {"1": {"inputs": {}}}, "node '1' has no class_type"),
        ("p:\n  name: P\n  workflow: wf.json\n", {"1": {"class_type": "EmptyImage", "inputs": {}}},
         "has no SaveImage or PreviewImage node"),
        ("p:\n  name: P\n  workflow: wf.json\n",
         {"1": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "x"}}},
         "links to missing node '7'"),
        ("p: [1, 2]\n", SD15, "must be a mapping"),
        ("- a\n", SD15, "must map preset slugs"),
        ("p: {name: [\n", SD15, "is not valid YAML"),
    ],
)
def test_refusals_name_preset_parameter_and_file(tmp_path: Path, yaml_text: str, graph: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_presets(write(tmp_path, yaml_text, graph))
    assert message in info.value.message


def test_invalid_json_workflow(tmp_path: Path) -> None:
    (tmp_path / "wf.json").write_text("{nope")
    (tmp_path / "presets.yaml").write_text("p:\n  name: P\n  workflow: wf.json\n")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_presets(tmp_path / "presets.yaml")


def test_missing_presets_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_presets(tmp_path / "absent.yaml")
