"""The editor-format converter: recorded pairs from ComfyUI's own frontend, and one table per rule."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.editor import ConversionError, dynamic_prompt, is_editor_format, to_api

DATA = Path(__file__).parent / "data" / "editor"
OBJECT_INFO: dict[str, Any] = json.loads(gzip.decompress((DATA / "object_info.json.gz").read_bytes()))
PAIRS = sorted(p.name.removesuffix(".editor.json") for p in DATA.glob("*.editor.json"))


@pytest.mark.parametrize("name", PAIRS)
def test_matches_the_frontends_own_conversion(name: str) -> None:
    workflow = json.loads((DATA / f"{name}.editor.json").read_text(encoding="utf-8"))
    expected = json.loads((DATA / f"{name}.api.json").read_text(encoding="utf-8"))["output"]
    assert to_api(workflow, OBJECT_INFO) == expected


def test_every_pair_is_tested() -> None:
    assert len(PAIRS) >= 8
    assert all((DATA / f"{name}.api.json").is_file() for name in PAIRS)


# -- hand-made graphs -------------------------------------------------------------------------

def node(node_id: int, type_: str, widgets: list[Any] | None = None, *, inputs: list[dict[str, Any]] | None = None,
         outputs: list[str] = (), mode: int = 0, title: str | None = None,
         **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"id": node_id, "type": type_, "mode": mode, "inputs": inputs or [],
                            "outputs": [{"name": o, "type": o, "links": []} for o in outputs],
                            "widgets_values": widgets if widgets is not None else [], **extra}
    if title is not None:
        data["title"] = title
    return data


def slot(name: str, type_: str, link: int | None, widget: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "type": type_, "link": link}
    if widget:
        entry["widget"] = {"name": name}
    return entry


def workflow(*nodes: dict[str, Any], links: list[list[Any]] = (), **extra: Any) -> dict[str, Any]:
    return {"nodes": list(nodes), "links": list(links), "groups": [], **extra}


CKPT = node(4, "CheckpointLoaderSimple", ["tiny.safetensors"], outputs=["MODEL", "CLIP", "VAE"])
LATENT = node(5, "EmptyLatentImage", [64, 64, 1], outputs=["LATENT"])


def sampler(**links: int) -> dict[str, Any]:
    names = [("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
             ("latent_image", "LATENT")]
    return node(3, "KSampler", [7, "randomize", 20, 8, "euler", "normal", 1],
                inputs=[slot(n, t, links.get(n)) for n, t in names], outputs=["LATENT"])


def encoder(node_id: int, text: str, clip_link: int | None, **kw: Any) -> dict[str, Any]:
    return node(node_id, "CLIPTextEncode", [text], inputs=[slot("clip", "CLIP", clip_link)],
                outputs=["CONDITIONING"], **kw)


def test_widget_order_skips_the_hidden_control_value() -> None:
    out = to_api(workflow(sampler()), OBJECT_INFO)
    assert out["3"]["inputs"] == {"seed": 7, "steps": 20, "cfg": 8, "sampler_name": "euler",
                                  "scheduler": "normal", "denoise": 1}


@pytest.mark.parametrize(("values", "expected"), [
    ([64, 64, 1], {"width": 64, "height": 64, "batch_size": 1}),
    ([64], {"width": 64, "height": 512, "batch_size": 1}),  # missing values: the definition's defaults
    ([], {"width": 512, "height": 512, "batch_size": 1}),
])
def test_missing_widget_values_take_defaults(values: list[Any], expected: dict[str, Any]) -> None:
    out = to_api(workflow(node(5, "EmptyLatentImage", values, outputs=["LATENT"])), OBJECT_INFO)
    assert out["5"]["inputs"] == expected


def test_a_widget_converted_to_an_input_takes_the_link() -> None:
    seed = node(9, "PrimitiveInt", [42, "fixed"], outputs=["INT"])
    ks = sampler()
    ks["inputs"].append(slot("seed", "INT", 1, widget=True))
    out = to_api(workflow(seed, ks, links=[[1, 9, 0, 3, 4, "INT"]]), OBJECT_INFO)
    assert out["3"]["inputs"]["seed"] == ["9", 0]


def test_primitive_node_value_goes_into_each_widget_it_feeds() -> None:
    prim = node(9, "PrimitiveNode", [123, "fixed"], outputs=["INT"])
    ks = sampler()
    ks["inputs"].append(slot("seed", "INT", 1, widget=True))
    latent = node(5, "EmptyLatentImage", [64, 64, 1], inputs=[slot("batch_size", "INT", 2, widget=True)],
                  outputs=["LATENT"])
    out = to_api(workflow(prim, ks, latent, links=[[1, 9, 0, 3, 4, "INT"], [2, 9, 0, 5, 0, "INT"]]),
                 OBJECT_INFO)
    assert "9" not in out
    assert out["3"]["inputs"]["seed"] == 123
    assert out["5"]["inputs"]["batch_size"] == 123


def test_reroutes_are_traced_through() -> None:
    reroute = node(10, "Reroute", inputs=[slot("", "*", 1)], outputs=["*"])
    out = to_api(workflow(CKPT, reroute, encoder(6, "a cat", 2),
                          links=[[1, 4, 1, 10, 0, "CLIP"], [2, 10, 0, 6, 0, "CLIP"]]), OBJECT_INFO)
    assert set(out) == {"4", "6"}
    assert out["6"]["inputs"]["clip"] == ["4", 1]


@pytest.mark.parametrize(("links", "expected_model"), [
    # A bypassed LoraLoader passes MODEL from its own model input.
    ([[1, 4, 0, 20, 0, "MODEL"], [2, 4, 1, 20, 1, "CLIP"], [3, 20, 0, 3, 0, "MODEL"]], ["4", 0]),
    # Nothing connected to the matching input: the consumer's input is left out.
    ([[2, 4, 1, 20, 1, "CLIP"], [3, 20, 0, 3, 0, "MODEL"]], None),
])
def test_bypassed_nodes_pass_a_matching_input_through(links: list[list[Any]], expected_model: Any) -> None:
    linked = {link[0] for link in links}
    lora = node(20, "LoraLoader", ["x.safetensors", 1, 1], mode=4, outputs=["MODEL", "CLIP"],
                inputs=[slot("model", "MODEL", 1 if 1 in linked else None), slot("clip", "CLIP", 2)])
    out = to_api(workflow(CKPT, lora, sampler(model=3), links=links), OBJECT_INFO)
    assert "20" not in out
    assert out["3"]["inputs"].get("model") == expected_model


def test_muted_nodes_are_dropped_with_the_inputs_that_pointed_at_them() -> None:
    enc = encoder(6, "a cat", 1, mode=2)
    out = to_api(workflow(CKPT, enc, sampler(positive=2),
                          links=[[1, 4, 1, 6, 0, "CLIP"], [2, 6, 0, 3, 1, "CONDITIONING"]]), OBJECT_INFO)
    assert "6" not in out
    assert "positive" not in out["3"]["inputs"]


def test_notes_and_groups_are_ignored_and_titles_kept() -> None:
    wf = workflow(node(1, "Note", ["hello"]), node(2, "MarkdownNote", ["# hi"]), encoder(6, "x", None, title="Mine"),
                  LATENT)
    wf["groups"] = [{"title": "Group", "bounding": [0, 0, 10, 10]}]
    out = to_api(wf, OBJECT_INFO)
    assert set(out) == {"5", "6"}
    assert out["6"]["_meta"]["title"] == "Mine"
    assert out["5"]["_meta"]["title"] == "Empty Latent Image"  # the definition's display name


def _subgraph(widget_values: list[Any], proxy: list[list[str]] | None = None) -> dict[str, Any]:
    """A subgraph wrapping one text encoder whose text and clip come from the subgraph's inputs."""
    inner = encoder(1, "inner text", 11)
    inner["inputs"].append(slot("text", "STRING", 12, widget=True))
    inner["outputs"][0]["links"] = [13]
    definition = {
        "id": "sg-1", "name": "Encode", "nodes": [inner],
        "inputs": [{"name": "clip", "type": "CLIP", "linkIds": [11]},
                   {"name": "text", "type": "STRING", "linkIds": [12]}],
        "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "linkIds": [13]}],
        "links": [{"id": 11, "origin_id": -10, "origin_slot": 0, "target_id": 1, "target_slot": 0, "type": "CLIP"},
                  {"id": 12, "origin_id": -10, "origin_slot": 1, "target_id": 1, "target_slot": 1, "type": "STRING"},
                  {"id": 13, "origin_id": 1, "origin_slot": 0, "target_id": -20, "target_slot": 0,
                   "type": "CONDITIONING"}],
    }
    props = {"proxyWidgets": proxy} if proxy is not None else {}
    outer = node(30, "sg-1", widget_values, inputs=[slot("clip", "CLIP", 1), slot("text", "STRING", None)],
                 outputs=["CONDITIONING"], properties=props)
    return workflow(CKPT, outer, sampler(positive=2),
                    links=[[1, 4, 1, 30, 0, "CLIP"], [2, 30, 0, 3, 1, "CONDITIONING"]],
                    definitions={"subgraphs": [definition]})


@pytest.mark.parametrize(("values", "proxy", "text"), [
    (["promoted text"], None, "promoted text"),
    ([], None, "inner text"),  # no value on the subgraph node: the inner widget's own
    (["promoted text"], [["-1", "text"]], "promoted text"),
])
def test_subgraphs_are_flattened_with_promoted_widgets(values: list[Any], proxy: Any, text: str) -> None:
    out = to_api(_subgraph(values, proxy), OBJECT_INFO)
    assert set(out) == {"4", "3", "30:1"}
    assert out["30:1"]["inputs"] == {"text": text, "clip": ["4", 1]}
    assert out["3"]["inputs"]["positive"] == ["30:1", 0]


def test_problems_name_every_node_that_cannot_be_converted() -> None:
    wf = workflow(node(7, "NoSuchNode", [1]), node(8, "workflow>Old group"), node(9, "AlsoMissing", mode=2),
                  encoder(6, "x", 99))
    with pytest.raises(ConversionError) as caught:
        to_api(wf, OBJECT_INFO, source="presets/x.json")
    problems = {(p.node_id, p.node_type): p.reason for p in caught.value.problems}
    assert set(problems) == {("7", "NoSuchNode"), ("8", "workflow>Old group"), ("6", "CLIPTextEncode")}
    assert "not installed" in problems[("7", "NoSuchNode")]
    assert "group node" in problems[("8", "workflow>Old group")]
    assert "link 99" in problems[("6", "CLIPTextEncode")]
    assert caught.value.message.startswith("presets/x.json cannot be converted")


def test_an_input_type_the_editor_builds_itself_is_refused() -> None:
    info = {"Dyn": {"input": {"required": {"mode": ["COMFY_DYNAMICCOMBO_V3", {}]}}, "output": []}}
    with pytest.raises(ConversionError, match="Export \\(API\\)"):
        to_api(workflow(node(1, "Dyn")), info)


def test_a_loop_of_reroutes_is_a_problem_not_a_hang() -> None:
    a = node(10, "Reroute", inputs=[slot("", "*", 2)], outputs=["*"])
    b = node(11, "Reroute", inputs=[slot("", "*", 1)], outputs=["*"])
    enc = encoder(6, "x", 3)
    with pytest.raises(ConversionError, match="loop"):
        to_api(workflow(a, b, enc, links=[[1, 10, 0, 11, 0, "*"], [2, 11, 0, 10, 0, "*"],
                                          [3, 10, 0, 6, 0, "CLIP"]]), OBJECT_INFO)


@pytest.mark.parametrize(("text", "sent"), [
    ("a cat // a comment", "a cat "),
    ("a /* gone */cat", "a cat"),
    ("{red|blue} cat", "{red|blue} cat"),
])
def test_dynamic_prompt_text(text: str, sent: str) -> None:
    assert dynamic_prompt(text) == sent


def test_upload_button_and_combo_list_values() -> None:
    info = {"Pick": {"input": {"required": {"image": [["a.png", "b.png"], {"image_upload": True}],
                                            "tags": ["COMBO", {"options": ["x", "y"], "multiselect": True}]}},
                     "input_order": {"required": ["image", "tags"]}, "output": ["IMAGE"]}}
    out = to_api(workflow(node(1, "Pick", ["b.png", ["x", "y"], "image"])), info)
    assert out["1"]["inputs"] == {"image": "b.png", "tags": {"__value__": ["x", "y"]}}


def test_placeholder_values_of_force_input_widgets_are_dropped() -> None:
    info = {"F": {"input": {"required": {"a": ["INT", {"forceInput": True}], "b": ["INT", {}]}}, "output": []}}
    out = to_api(workflow(node(1, "F", [0, 5])), info)
    assert out["1"]["inputs"] == {"b": 5}


@pytest.mark.parametrize(("data", "expected"), [
    ({"nodes": [], "links": []}, True),
    ({"3": {"class_type": "KSampler", "inputs": {}}}, False),
    ([], False),
])
def test_is_editor_format(data: object, expected: bool) -> None:
    assert is_editor_format(data) is expected
