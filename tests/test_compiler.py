from __future__ import annotations

import copy
import re

import pytest

from gateway.compiler import compile_prompt, join_prompt, plan_jobs
from gateway.errors import UnsupportedParameter
from gateway.models import GenerateRequest, Preset
from gateway.presets import build_preset
from tests.helpers import workflow

SD15 = build_preset("sd15", {"name": "SD", "defaults": {"positive": "a cat"}}, workflow("sd15_text_to_image.json"),
                    workflow_file="sd15.json")
NOISE = build_preset("noise", {"name": "Noise"}, workflow("example_noise.json"), workflow_file="noise.json")
SOFTEN = build_preset("soften", {"name": "Soften"}, workflow("reference_soften.json"), workflow_file="soften.json")
REF = "gw_" + "a" * 40 + ".png"


@pytest.mark.parametrize(
    ("base", "extra", "expected"),
    [("a cat", "", "a cat"), ("a cat", "smiling", "a cat, smiling"), ("a cat,", "smiling", "a cat, smiling"),
     ("", "smiling", "smiling"), ("  a cat ", " outdoors ", "a cat, outdoors")],
)
def test_join_prompt(base: str, extra: str, expected: str) -> None:
    assert join_prompt(base, extra) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, [{"seed": 1000, "positive": "a cat", "width": 512}]),
        ({"seed": 7, "count": 3}, [{"seed": 7}, {"seed": 8}, {"seed": 9}]),
        ({"count": 2}, [{"seed": 1000}, {"seed": 1001}]),
        ({"extra_positive": "smiling", "extra_negative": "blurry"},
         [{"positive": "a cat, smiling", "negative": "lowres, blurry, watermark, text, blurry"}]),
        ({"width": 768, "height": 512, "checkpoint": "x.safetensors"},
         [{"width": 768, "height": 512, "checkpoint": "x.safetensors"}]),
    ],
)
def test_plan_jobs(body: dict, expected: list[dict]) -> None:
    jobs = plan_jobs(SD15, GenerateRequest.model_validate(body), random_seed=1000)
    assert len(jobs) == len(expected)
    for job, wanted in zip(jobs, expected, strict=True):
        assert {k: job[k] for k in wanted} == wanted
        assert set(job) == set(SD15.bindings)  # every bound parameter has a value


@pytest.mark.parametrize(
    ("body", "field"),
    [({"checkpoint": "x"}, "checkpoint"), ({"extra_positive": "smiling"}, "extra_positive"),
     ({"extra_negative": "blurry"}, "extra_negative")],
)
def test_plan_jobs_refuses_what_the_preset_lacks(body: dict, field: str) -> None:
    with pytest.raises(UnsupportedParameter, match=f"{field}: preset 'noise' has no") as info:
        plan_jobs(NOISE, GenerateRequest.model_validate(body), random_seed=1)
    assert info.value.field == field


def test_empty_extra_prompt_is_not_an_override() -> None:
    assert plan_jobs(NOISE, GenerateRequest(extra_positive=""), random_seed=5) == [
        {"seed": 5, "width": 512, "height": 512}]


def test_compile_sets_bindings_and_a_prefix_per_job_without_touching_the_template() -> None:
    before = copy.deepcopy(SD15.graph)
    params = plan_jobs(SD15, GenerateRequest(seed=3, width=64, height=64, extra_positive="hat"), random_seed=0)[0]
    prompt = compile_prompt(SD15, params, "job-1")
    assert SD15.graph == before
    assert prompt["3"]["inputs"]["seed"] == 3
    assert prompt["5"]["inputs"] == {"width": 64, "height": 64, "batch_size": 1}
    assert prompt["6"]["inputs"]["text"] == "a cat, hat"
    assert prompt["6"]["inputs"]["clip"] == ["4", 1]
    assert prompt["9"]["inputs"]["filename_prefix"] == "gateway/job-1"
    prompt["3"]["inputs"]["model"].append("mutated")
    assert SD15.graph == before


def test_reference_images_are_bound_to_image_inputs() -> None:
    [params] = plan_jobs(SOFTEN, GenerateRequest(), 1, [REF])
    assert params == {"reference_image": REF}
    assert compile_prompt(SOFTEN, params, "job")["1"]["inputs"]["image"] == REF
    [defaults] = plan_jobs(SOFTEN, GenerateRequest(), 1)
    assert defaults == {"reference_image": "example.png"}


@pytest.mark.parametrize(
    ("preset", "count", "message"),
    [(NOISE, 1, "has no image input"), (SOFTEN, 2, "takes at most 1 image(s), got 2")],
)
def test_reference_images_the_preset_cannot_take(preset: Preset, count: int, message: str) -> None:
    with pytest.raises(UnsupportedParameter, match=re.escape(message)) as caught:
        plan_jobs(preset, GenerateRequest(), 1, [REF] * count)
    assert caught.value.field == "reference_images"
