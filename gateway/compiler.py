"""From a preset and a request to ComfyUI API-format prompts. Pure: no I/O.

`plan_jobs()` resolves a request into one complete parameter set per image; `compile_prompt()`
turns one parameter set into the prompt submitted for that job. Neither mutates the preset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway import loras
from gateway.bindings import reference_param, reference_slots
from gateway.errors import UnsupportedParameter
from gateway.models import GenerateRequest, ParamValue, Preset

_SAMPLING_FIELDS = ("steps", "cfg", "sampler", "scheduler", "denoise", "batch")

OUTPUT_SUBFOLDER = "gateway"
"""ComfyUI output subfolder the gateway's files are written to (one file name prefix per job)."""


def join_prompt(base: str, extra: str) -> str:
    """Append extra tags to a prompt, with one comma between them."""
    base, extra = base.strip(), extra.strip()
    if not extra:
        return base
    if not base:
        return extra
    return f"{base} {extra}" if base.endswith(",") else f"{base}, {extra}"


def _require(preset: Preset, param: str, field: str) -> None:
    if param not in preset.bindings:
        what = "prompt" if param in ("positive", "negative") else param
        raise UnsupportedParameter(
            field,
            f"{field}: preset '{preset.slug}' has no {what} parameter "
            f"(it offers: {', '.join(sorted(preset.bindings)) or 'nothing'})",
        )


def reference_params(preset: Preset, count: int) -> list[str]:
    """The parameters `count` reference images are bound to, in order; raises
    UnsupportedParameter when the preset has no image input or fewer than `count`."""
    slots = reference_slots(preset.bindings)
    if count and not slots:
        raise UnsupportedParameter(
            "reference_images", f"reference_images: preset '{preset.slug}' has no image input (LoadImage node)"
        )
    if count > slots:
        raise UnsupportedParameter(
            "reference_images", f"reference_images: preset '{preset.slug}' takes at most {slots} image(s), got {count}"
        )
    return [reference_param(i) for i in range(count)]


def plan_jobs(preset: Preset, request: GenerateRequest, random_seed: int,
              references: Sequence[str] = ()) -> list[dict[str, ParamValue]]:
    """One parameter set per image. Job i gets seed + i (the request's seed, else `random_seed`).
    `references` are the stored names of the request's reference images, bound in order.

    Raises UnsupportedParameter when the request sets something the preset does not offer.
    """
    base = dict(preset.defaults)
    for param, name in zip(reference_params(preset, len(references)), references, strict=True):
        base[param] = name
    if request.checkpoint is not None:
        _require(preset, "checkpoint", "checkpoint")
        base["checkpoint"] = request.checkpoint
    for field, param in (("extra_positive", "positive"), ("extra_negative", "negative")):
        extra: str = getattr(request, field)
        if extra.strip():
            _require(preset, param, field)
            base[param] = join_prompt(str(base.get(param, "")), extra)
    if request.width is not None and request.height is not None:
        _require(preset, "width", "width")
        _require(preset, "height", "height")
        base["width"], base["height"] = request.width, request.height
    for field in _SAMPLING_FIELDS:
        value = getattr(request, field)
        if value is not None:
            _require(preset, field, field)
            base[field] = value
    if request.loras:
        most, why = loras.capacity(preset.graph)
        if len(request.loras) > most:
            raise UnsupportedParameter("loras", f"loras: preset '{preset.slug}' takes at most {most} ({why})")
        base["loras"] = loras.encode([(lora.name, lora.strength) for lora in request.loras])
    if request.seed is not None:
        _require(preset, "seed", "seed")
    has_seed = "seed" in preset.bindings
    first_seed = request.seed if request.seed is not None else random_seed
    jobs = []
    for i in range(request.count):
        params = dict(base)
        if has_seed:
            params["seed"] = first_seed + i
        jobs.append(params)
    return jobs


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def compile_prompt(preset: Preset, params: dict[str, ParamValue], job_id: str) -> dict[str, Any]:
    """The API-format prompt for one job: a deep copy of the template with every bound parameter
    set and each save node writing under its own prefix (the job id), so no two jobs can ever
    share an output file name.
    """
    prompt: dict[str, Any] = _copy(preset.graph)
    for param, refs in preset.bindings.items():
        if param in params:
            for ref in refs:
                prompt[ref.node_id]["inputs"][ref.input] = params[param]
    if isinstance(params.get("loras"), str):
        loras.apply(prompt, loras.decode(str(params["loras"])))
    for node_id in preset.save_nodes:
        prompt[node_id]["inputs"]["filename_prefix"] = f"{OUTPUT_SUBFOLDER}/{job_id}"
    return prompt
