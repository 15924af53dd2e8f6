"""Choices from ComfyUI's `/object_info`, merged over several backends."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.choices import input_choices, merge_object_info


def info(checkpoints: list[str], loras: list[str], *, new_form: bool = False, extra: bool = False) -> dict[str, Any]:
    def combo(values: list[str]) -> list[Any]:
        return ["COMBO", {"options": values, "tooltip": "t"}] if new_form else [values, {"tooltip": "t"}]

    found: dict[str, Any] = {
        "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": combo(checkpoints)}}, "output": ["MODEL"]},
        "LoraLoader": {"input": {"required": {"lora_name": combo(loras), "strength_model": ["FLOAT", {}]}}},
        "KSampler": {"input": {"required": {"seed": ["INT", {"min": 0}]}, "optional": {}}},
    }
    if extra:
        found["OnlyHere"] = {"input": {"required": {"x": combo(["x"])}}}
    return found


@pytest.mark.parametrize("new_form", [False, True])
@pytest.mark.parametrize(("infos", "checkpoints", "loras"), [
    ([info(["a", "b"], [])], ["a", "b"], []),
    ([info(["a", "b"], ["l1"]), info(["c", "a"], ["l2"])], ["a", "b", "c"], ["l1", "l2"]),
    ([info([], []), info(["c"], []), info(["d", "c"], ["l"])], ["c", "d"], ["l"]),
])
def test_choices_are_the_union_over_the_backends_in_the_order_first_seen(
        infos: list[dict[str, Any]], checkpoints: list[str], loras: list[str], new_form: bool) -> None:
    if new_form:
        infos = [info(input_choices(i, "CheckpointLoaderSimple", "ckpt_name") or [],
                      input_choices(i, "LoraLoader", "lora_name") or [], new_form=True) for i in infos]
    before = copy.deepcopy(infos)
    merged = merge_object_info(infos)
    assert input_choices(merged, "CheckpointLoaderSimple", "ckpt_name") == checkpoints
    assert input_choices(merged, "LoraLoader", "lora_name") == loras
    assert merged["LoraLoader"]["input"]["required"]["strength_model"] == ["FLOAT", {}]  # not a combo: as it was
    assert merged["CheckpointLoaderSimple"]["output"] == ["MODEL"]
    assert infos == before  # the inputs are not changed


def test_node_types_come_from_the_first_backend_only() -> None:
    merged = merge_object_info([info(["a"], []), info(["b"], [], extra=True)])
    assert "OnlyHere" not in merged
    assert set(merged) == {"CheckpointLoaderSimple", "LoraLoader", "KSampler"}
