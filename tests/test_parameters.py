"""A preset's parameters as clients see them: ranges from the request model, allowed values from /object_info."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field

from gateway.models import MAX_COUNT, MAX_SIDE
from gateway.parameters import describe
from gateway.presets import load_presets
from tests.helpers import DATA, ROOT, load_json

PRESETS = load_presets(ROOT / "presets.yaml")
OBJECT_INFO = load_json(DATA / "object_info.json")
CHECKPOINTS = ["tiny.safetensors", "other.safetensors"]


def with_checkpoints(names: list[str]) -> dict[str, Any]:
    info = dict(OBJECT_INFO)
    info["CheckpointLoaderSimple"] = {"input": {"required": {"ckpt_name": [names]}}}
    return info


@pytest.mark.parametrize(
    ("slug", "names"),
    [
        ("example_01", ["count", "seed", "width", "height", "batch"]),
        ("sd15", ["count", "checkpoint", "extra_positive", "extra_negative", "seed", "width", "height", "steps",
                  "cfg", "sampler", "scheduler", "denoise", "batch"]),
    ],
)
def test_only_what_the_preset_offers_is_described(slug: str, names: list[str]) -> None:
    assert [p.name for p in describe(PRESETS[slug])] == names


@pytest.mark.parametrize(
    ("slug", "name", "expected"),
    [
        ("example_01", "count", {"type": "integer", "default": 1, "minimum": 1, "maximum": MAX_COUNT,
                                 "bound_to": []}),
        ("example_01", "width", {"type": "integer", "default": 512, "minimum": 8, "maximum": MAX_SIDE,
                                 "multiple_of": 8}),
        ("example_01", "seed", {"type": "integer", "default": None, "minimum": 0}),
        ("sd15", "checkpoint", {"type": "string", "default": "v1-5-pruned-emaonly-fp16.safetensors",
                                "bound_to": ["4.ckpt_name"], "allowed": CHECKPOINTS}),
        ("sd15", "extra_positive", {"type": "string", "default": "", "bound_to": ["6.text"], "max_length": 10_000,
                                    "allowed": None}),
        ("sd15", "seed", {"bound_to": ["3.seed"], "allowed": None}),
        ("illustrious", "width", {"default": 1024}),
    ],
)
def test_type_default_range_and_binding(slug: str, name: str, expected: dict[str, Any]) -> None:
    described = {p.name: p for p in describe(PRESETS[slug], with_checkpoints(CHECKPOINTS))}
    assert described[name].model_dump(include=set(expected)) == expected
    assert described[name].description


def test_without_comfyui_there_are_no_allowed_values() -> None:
    assert all(p.allowed is None for p in describe(PRESETS["sd15"], None))


def test_allowed_values_follow_the_bound_input() -> None:
    described = {p.name: p for p in describe(PRESETS["sd15"], OBJECT_INFO)}
    assert described["sampler"].default == "euler" and described["sampler"].bound_to == ["3.sampler_name"]
    assert described["sampler"].allowed == OBJECT_INFO["KSampler"]["input"]["required"]["sampler_name"][0]
    assert "karras" in (described["scheduler"].allowed or [])
    assert described["cfg"].type == "number" and described["steps"].allowed is None


def test_fields_that_set_no_preset_parameter_are_not_described() -> None:
    class Request(BaseModel):
        count: int = Field(1, ge=1)
        webhook_url: str | None = None
        loras: list[str] = Field(default_factory=list)
        steps: int | None = Field(None, ge=1)

    assert [p.name for p in describe(PRESETS["example_01"], None, Request)] == ["count"]
    assert [p.name for p in describe(PRESETS["sd15"], None, Request)] == ["count", "steps"]
