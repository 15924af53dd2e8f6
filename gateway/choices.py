"""Names a request gives (sampler, scheduler, LoRA files) against ComfyUI's `/object_info`. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.errors import InvalidParameter
from gateway.models import GenerateRequest

_SHOWN = 8


def combo_choices(spec: object) -> list[Any] | None:
    """The allowed values of a combo input in /object_info (both the old and the new form)."""
    if not isinstance(spec, list) or not spec:
        return None
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], Mapping):
        options = spec[1].get("options")
        return list(options) if isinstance(options, list) else None
    return None


def input_choices(object_info: Mapping[str, Any], class_type: str, input_name: str) -> list[Any] | None:
    info = object_info.get(class_type)
    if not isinstance(info, Mapping):
        return None
    groups = info.get("input") or {}
    for group in ("required", "optional"):
        spec = (groups.get(group) or {}).get(input_name)
        if spec is not None:
            return combo_choices(spec)
    return None


def shown(choices: list[Any]) -> str:
    """A few of the choices, for a message."""
    return ", ".join(map(str, choices[:_SHOWN])) + (", ..." if len(choices) > _SHOWN else "") or "none"


def unknown_name(request: GenerateRequest, object_info: Mapping[str, Any] | None) -> InvalidParameter | None:
    """The first sampler, scheduler or LoRA name the server does not offer, as the error to answer."""
    if not object_info:
        return None
    wanted: list[tuple[str, str | None, str, str]] = [
        ("sampler", request.sampler, "KSampler", "sampler_name"),
        ("scheduler", request.scheduler, "KSampler", "scheduler"),
    ]
    wanted += [(f"loras.{i}.name", lora.name, "LoraLoader", "lora_name") for i, lora in enumerate(request.loras)]
    for field, value, class_type, input_name in wanted:
        if value is None:
            continue
        choices = input_choices(object_info, class_type, input_name)
        if choices is not None and value not in choices:
            return InvalidParameter(field, f"{field}: {value!r} is not available on this ComfyUI "
                                           f"(choices: {shown(choices)})")
    return None


def merge_object_info(infos: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One `/object_info` for several ComfyUI backends: the node types of the first, with every
    list of choices (checkpoints, LoRAs, samplers, ...) the union over all of them, in the order
    first seen. The inputs are left unchanged."""
    if not infos:
        raise ValueError("no /object_info to merge")
    merged = dict(infos[0])
    for class_type, info in infos[0].items():
        groups = info.get("input") if isinstance(info, Mapping) else None
        if not isinstance(groups, Mapping):
            continue
        new_groups = dict(groups)
        for group, specs in groups.items():
            if not isinstance(specs, Mapping):
                continue
            new_specs = dict(specs)
            for input_name, spec in specs.items():
                union = _union([input_choices(other, class_type, input_name) for other in infos])
                if union is not None:
                    new_specs[input_name] = _with_choices(spec, union)
            new_groups[group] = new_specs
        merged[class_type] = {**info, "input": new_groups}
    return merged


def _union(lists: list[list[Any] | None]) -> list[Any] | None:
    if lists[0] is None:
        return None
    seen: dict[str, Any] = {}
    for choices in lists:
        for value in choices or ():
            seen.setdefault(repr(value), value)
    return list(seen.values())


def _with_choices(spec: list[Any], choices: list[Any]) -> list[Any]:
    if isinstance(spec[0], list):
        return [choices, *spec[1:]]
    return [spec[0], {**spec[1], "options": choices}, *spec[2:]]
