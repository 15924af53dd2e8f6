"""LoRAs in an API-format graph. Pure: no I/O.

A request's LoRAs go into the preset's own LoRA loaders when its graph has some (the first
requested one into the first loader, and so on); otherwise a chain of `LoraLoader` nodes is
inserted between the checkpoint loader and every node that used its MODEL or CLIP output.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.bindings import Graph, is_link

LOADERS = ("LoraLoader", "LoraLoaderModelOnly")
_CHECKPOINT_LOADERS = ("CheckpointLoaderSimple", "CheckpointLoader")
MAX_INSERTED = 8

Lora = tuple[str, float]


def existing_loaders(graph: Graph) -> list[str]:
    """The graph's own LoRA loaders whose file is a value (not a link), in graph order."""
    return [nid for nid, node in graph.items() if node.get("class_type") in LOADERS
            and isinstance(_inputs(node).get("lora_name"), str)]


def capacity(graph: Graph) -> tuple[int, str]:
    """How many LoRAs a request may give for this graph, and why no more (for messages)."""
    loaders = existing_loaders(graph)
    if loaders:
        return len(loaders), f"the preset's graph has {len(loaders)} LoRA loader(s)"
    checkpoints = [nid for nid, node in graph.items() if node.get("class_type") in _CHECKPOINT_LOADERS]
    if len(checkpoints) == 1:
        return MAX_INSERTED, f"at most {MAX_INSERTED} LoRAs"
    if checkpoints:
        return 0, "the preset's graph has several checkpoint loaders, so where LoRAs go is ambiguous"
    return 0, "the preset's graph has no checkpoint loader and no LoRA loader"


def encode(loras: Sequence[Lora]) -> str:
    """LoRAs as one job parameter (job parameters are flat values)."""
    return json.dumps([{"name": name, "strength": strength} for name, strength in loras])


def decode(text: str) -> list[Lora]:
    return [(str(item["name"]), float(item["strength"])) for item in json.loads(text)]


def _inputs(node: Mapping[str, object]) -> dict[str, Any]:
    inputs = node.get("inputs")
    return inputs if isinstance(inputs, dict) else {}


def apply(prompt: dict[str, Any], loras: Sequence[Lora]) -> None:
    """Put `loras` into `prompt` (a copy the caller owns). The caller checked `capacity()`."""
    if not loras:
        return
    loaders = existing_loaders(prompt)
    if loaders:
        for node_id, (name, strength) in zip(loaders, loras, strict=False):
            inputs = prompt[node_id]["inputs"]
            inputs["lora_name"] = name
            for key in ("strength_model", "strength_clip"):
                if key in inputs:
                    inputs[key] = strength
        return
    [ckpt] = [nid for nid, node in prompt.items() if node.get("class_type") in _CHECKPOINT_LOADERS]
    next_id = 1 + max((int(nid) for nid in prompt if nid.isdigit()), default=0)
    model, clip = [ckpt, 0], [ckpt, 1]
    chain = []
    for offset, (name, strength) in enumerate(loras):
        node_id = str(next_id + offset)
        chain.append(node_id)
        prompt[node_id] = {
            "class_type": "LoraLoader", "_meta": {"title": f"LoRA {offset + 1}"},
            "inputs": {"model": model, "clip": clip, "lora_name": name, "strength_model": strength,
                       "strength_clip": strength},
        }
        model, clip = [node_id, 0], [node_id, 1]
    for node_id, node in prompt.items():
        if node_id in chain:
            continue
        inputs = _inputs(node)
        for key, value in inputs.items():
            if is_link(value) and value[0] == ckpt and value[1] in (0, 1):
                inputs[key] = list(model if value[1] == 0 else clip)
