from __future__ import annotations

import pytest

from gateway import bindings
from gateway.models import InputRef
from tests.helpers import DATA, load_json, workflow


def refs(*specs: str) -> tuple[InputRef, ...]:
    return tuple(InputRef(node_id=s.split(".")[0], input=s.split(".")[1]) for s in specs)


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        pytest.param(
            workflow("sd15_text_to_image.json"),
            {"checkpoint": refs("4.ckpt_name"), "seed": refs("3.seed"), "width": refs("5.width"),
             "height": refs("5.height"), "positive": refs("6.text"), "negative": refs("7.text"),
             "steps": refs("3.steps"), "cfg": refs("3.cfg"), "sampler": refs("3.sampler_name"),
             "scheduler": refs("3.scheduler"), "denoise": refs("3.denoise"), "batch": refs("5.batch_size")},
            id="standard-text-to-image",
        ),
        pytest.param(
            workflow("example_noise.json"),
            {"seed": refs("2.seed"), "width": refs("1.width"), "height": refs("1.height"),
             "batch": refs("1.batch_size")},
            id="model-free",
        ),
        pytest.param(
            load_json(DATA / "sdxl_base_refiner.api.json"),
            {"seed": refs("10.noise_seed", "11.noise_seed"), "width": refs("5.width"), "height": refs("5.height"),
             "positive": refs("6.text", "15.text"), "negative": refs("7.text", "16.text"),
             "steps": refs("10.steps", "11.steps"), "cfg": refs("10.cfg", "11.cfg"),
             "sampler": refs("10.sampler_name", "11.sampler_name"),
             "scheduler": refs("10.scheduler", "11.scheduler"), "batch": refs("5.batch_size")},
            id="two-checkpoints-is-ambiguous",
        ),
        pytest.param(
            {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
             "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "same", "clip": ["1", 1]}},
             "3": {"class_type": "ControlNetApplyAdvanced",
                   "inputs": {"positive": ["2", 0], "negative": ["4", 0], "control_net": ["9", 0]}},
             "4": {"class_type": "CLIPTextEncodeSDXL", "inputs": {"text_g": "g", "text_l": "l", "clip": ["1", 1]}},
             "5": {"class_type": "KSampler", "inputs": {"positive": ["3", 0], "negative": ["3", 1], "seed": 1,
                                                         "sampler_name": "euler"}}},
            {"checkpoint": refs("1.ckpt_name"), "seed": refs("5.seed"), "positive": refs("2.text"),
             "negative": refs("4.text_g", "4.text_l"), "sampler": refs("5.sampler_name")},
            id="through-pass-through-conditioning",
        ),
        pytest.param(
            {"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "both"}},
             "2": {"class_type": "KSampler", "inputs": {"positive": ["1", 0], "negative": ["1", 0], "seed": ["9", 0]}}},
            {"positive": refs("1.text")},
            id="one-encoder-for-both-sides-and-a-linked-seed",
        ),
        pytest.param(
            workflow("reference_soften.json"), {"reference_image": refs("1.image")}, id="one-image-input",
        ),
        pytest.param(
            {"10": {"class_type": "LoadImage", "inputs": {"image": "b.png"}},
             "9": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
             "x": {"class_type": "LoadImage", "inputs": {"image": "c.png"}},
             "2": {"class_type": "LoadImage", "inputs": {"image": ["9", 0]}},
             "3": {"class_type": "ImageBlend", "inputs": {"image1": ["9", 0], "image2": ["10", 0]}}},
            {"reference_image": refs("9.image"), "reference_image_2": refs("10.image"),
             "reference_image_3": refs("x.image")},
            id="image-inputs-in-node-order",
        ),
    ],
)
def test_discover(graph: dict, expected: dict) -> None:
    assert bindings.discover(graph) == expected


GRAPH = workflow("sd15_text_to_image.json")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("3.seed", InputRef(node_id="3", input="seed")),
        ("Positive Prompt.text", InputRef(node_id="6", input="text")),
        ("KSampler.steps", InputRef(node_id="3", input="steps")),
    ],
)
def test_resolve(spec: str, expected: InputRef) -> None:
    assert bindings.resolve(GRAPH, spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("seed", "is not of the form"),
        ("42.seed", "no node has id or title '42'"),
        ("3.sed", "node 3 (KSampler) has no input 'sed'"),
        ("3.model", "connected to another node"),
    ],
)
def test_resolve_refuses(spec: str, message: str) -> None:
    with pytest.raises(bindings.BindingError) as info:
        bindings.resolve(GRAPH, spec)
    assert message in str(info.value)


def test_resolve_refuses_ambiguous_title() -> None:
    graph = {"1": {"class_type": "A", "_meta": {"title": "T"}, "inputs": {"x": 1}},
             "2": {"class_type": "A", "_meta": {"title": "T"}, "inputs": {"x": 1}}}
    with pytest.raises(bindings.BindingError, match="names several nodes"):
        bindings.resolve(graph, "T.x")


def test_output_nodes() -> None:
    graph = {"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}},
             "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    assert bindings.save_nodes(graph) == ("1",)
    assert bindings.output_nodes(graph) == ("1", "2")


@pytest.mark.parametrize(
    ("bound", "slots"),
    [([], 0), (["seed"], 0), (["reference_image"], 1), (["reference_image", "reference_image_2", "seed"], 2),
     (["reference_image", "reference_image_3"], 1), (["reference_image_2"], 0)],
)
def test_reference_slots(bound: list[str], slots: int) -> None:
    assert bindings.reference_slots(bound) == slots
