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
        {"seed": 5, "width": 512, "height": 512, "batch": 1}]


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


# -- parameters beyond GAZE ------------------------------------------------------------------

@pytest.mark.parametrize(("body", "inputs"), [
    ({"steps": 4, "cfg": 3.5, "sampler": "dpmpp_2m", "scheduler": "karras", "denoise": 0.5},
     {"3": {"steps": 4, "cfg": 3.5, "sampler_name": "dpmpp_2m", "scheduler": "karras", "denoise": 0.5}}),
    ({"batch": 3}, {"5": {"batch_size": 3}}),
    ({"cfg": 7}, {"3": {"cfg": 7.0}}),
])
def test_sampling_parameters_are_bound(body: dict, inputs: dict) -> None:
    params = plan_jobs(SD15, GenerateRequest.model_validate(body), random_seed=0)[0]
    prompt = compile_prompt(SD15, params, "job")
    for node_id, values in inputs.items():
        for name, value in values.items():
            assert prompt[node_id]["inputs"][name] == value


@pytest.mark.parametrize("field", ["steps", "cfg", "sampler", "scheduler", "denoise"])
def test_a_preset_without_a_sampler_refuses_sampling_parameters(field: str) -> None:
    value = {"steps": 3, "cfg": 2.0, "sampler": "euler", "scheduler": "normal", "denoise": 0.5}[field]
    with pytest.raises(UnsupportedParameter) as info:
        plan_jobs(NOISE, GenerateRequest.model_validate({field: value}), random_seed=0)
    assert info.value.field == field


def loras_of(preset: object, *pairs: tuple[str, float]) -> dict:
    body = GenerateRequest.model_validate({"loras": [{"name": n, "strength": s} for n, s in pairs]})
    return compile_prompt(preset, plan_jobs(preset, body, random_seed=0)[0], "job")  # type: ignore[arg-type]


def test_loras_are_inserted_between_the_checkpoint_and_its_users() -> None:
    before = copy.deepcopy(SD15.graph)
    prompt = loras_of(SD15, ("a.safetensors", 0.8), ("b.safetensors", -1.0))
    assert SD15.graph == before
    assert prompt["10"] == {"class_type": "LoraLoader", "_meta": {"title": "LoRA 1"},
                            "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "a.safetensors",
                                       "strength_model": 0.8, "strength_clip": 0.8}}
    assert prompt["11"]["inputs"] == {"model": ["10", 0], "clip": ["10", 1], "lora_name": "b.safetensors",
                                           "strength_model": -1.0, "strength_clip": -1.0}
    assert prompt["3"]["inputs"]["model"] == ["11", 0]
    assert prompt["6"]["inputs"]["clip"] == prompt["7"]["inputs"]["clip"] == ["11", 1]
    assert prompt["8"]["inputs"]["vae"] == ["4", 2]  # the VAE does not go through LoRAs


def test_no_loras_leave_the_graph_alone() -> None:
    params = plan_jobs(SD15, GenerateRequest(), random_seed=0)[0]
    assert set(compile_prompt(SD15, params, "job")) == set(SD15.graph)


WITH_LORA = build_preset("lora", {"name": "L"}, {
    **workflow("sd15_text_to_image.json"),
    "10": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "own.safetensors",
                                                  "strength_model": 1.0, "strength_clip": 0.5}},
}, workflow_file="lora.json")


def test_loras_go_into_the_graphs_own_loader() -> None:
    prompt = loras_of(WITH_LORA, ("mine.safetensors", 0.3))
    assert set(prompt) == set(WITH_LORA.graph)
    assert prompt["10"]["inputs"] == {"model": ["4", 0], "clip": ["4", 1], "lora_name": "mine.safetensors",
                                           "strength_model": 0.3, "strength_clip": 0.3}


@pytest.mark.parametrize(("preset", "count", "reason"), [
    (WITH_LORA, 2, "has 1 LoRA loader"),
    (NOISE, 1, "no checkpoint loader"),
    (SD15, 9, None),  # the request model allows at most 8
])
def test_too_many_loras(preset: object, count: int, reason: str | None) -> None:
    body = {"loras": [{"name": f"{i}.safetensors"} for i in range(count)]}
    if reason is None:
        with pytest.raises(ValueError, match="at most 8"):
            GenerateRequest.model_validate(body)
        return
    with pytest.raises(UnsupportedParameter, match=reason) as info:
        plan_jobs(preset, GenerateRequest.model_validate(body), random_seed=0)  # type: ignore[arg-type]
    assert info.value.field == "loras"
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
