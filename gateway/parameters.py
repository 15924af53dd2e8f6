"""A preset's parameters described for clients: type, default, range, allowed values. Pure: no I/O.

Ranges and descriptions come from `GenerateRequest`'s own JSON schema (the model is the single
source of the limits); defaults from the preset; allowed values from a ComfyUI `/object_info`
answer when one is given (the choices of the node input a parameter is bound to).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from gateway.choices import input_choices
from gateway.models import GenerateRequest, ParameterInfo, Preset

FIELD_PARAMS: dict[str, str | None] = {"count": None, "extra_positive": "positive", "extra_negative": "negative"}
"""Request fields that set a preset parameter of another name; None: the field sets none and every
preset accepts it. Any other field sets the parameter of its own name."""
RANDOM_WHEN_ABSENT = frozenset({"seed"})
"""Fields that are random when not sent, whatever value the preset's graph holds."""

_SCALARS = ("integer", "number", "string")


def allowed_values(preset: Preset, param: str, object_info: Mapping[str, Any] | None) -> list[Any] | None:
    """What ComfyUI offers for a parameter: the choices of the first bound input that has some."""
    if object_info is None:
        return None
    for ref in preset.bindings.get(param, ()):
        class_type = str(preset.graph[ref.node_id].get("class_type"))
        choices = input_choices(object_info, class_type, ref.input)
        if choices is not None:
            return choices
    return None


def _scalar(prop: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The one non-null alternative of a field's schema (`int | None` is an anyOf), if it is a scalar."""
    options: list[Mapping[str, Any]] = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
    if len(options) == 1 and options[0].get("type") in _SCALARS:
        return options[0]
    return None


def describe(
    preset: Preset, object_info: Mapping[str, Any] | None = None,
    request_model: type[BaseModel] = GenerateRequest,
) -> list[ParameterInfo]:
    """Every request field `preset` accepts, in the request model's order."""
    schema = request_model.model_json_schema()
    described = []
    for name, prop in schema["properties"].items():
        param = FIELD_PARAMS.get(name, name)
        scalar = _scalar(prop)
        if scalar is None or (param is not None and param not in preset.bindings):
            continue
        default = prop.get("default")
        if param == name and name in preset.defaults and name not in RANDOM_WHEN_ABSENT:
            default = preset.defaults[name]
        described.append(ParameterInfo(
            name=name, type=scalar["type"], default=default,
            minimum=scalar.get("minimum"), maximum=scalar.get("maximum"), multiple_of=scalar.get("multipleOf"),
            max_length=scalar.get("maxLength"),
            allowed=allowed_values(preset, param, object_info) if param else None,
            description=prop.get("description", ""),
            bound_to=[str(ref) for ref in preset.bindings.get(param, ())] if param else [],
        ))
    return described
