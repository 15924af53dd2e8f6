"""Names a request gives (sampler, scheduler, LoRA files) against ComfyUI's `/object_info`. Pure."""

from __future__ import annotations

from collections.abc import Mapping
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
