"""`comfy-gateway check`: validate presets offline, then against a running ComfyUI if one answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp

from gateway.bindings import is_link
from gateway.comfy.client import ComfyClient
from gateway.errors import ComfyUnavailable, ConfigError
from gateway.models import Preset
from gateway.parameters import combo_choices, input_spec
from gateway.presets import load_presets
from gateway.settings import Settings


def problems_against(preset: Preset, object_info: Mapping[str, Any]) -> list[str]:
    """What ComfyUI would refuse in a preset's graph and defaults: unknown node types, values
    (checkpoints, samplers, ...) that are not among the server's choices. Pure.
    """
    found = []
    prompt_values = {str(ref): preset.defaults[param] for param, refs in preset.bindings.items()
                     if param in preset.defaults for ref in refs}
    for node_id, node in preset.graph.items():
        class_type = str(node.get("class_type"))
        info = object_info.get(class_type)
        if not isinstance(info, Mapping):
            found.append(f"node {node_id}: ComfyUI has no node type {class_type!r} (a custom node not installed?)")
            continue
        inputs = node.get("inputs")
        for name, value in (inputs.items() if isinstance(inputs, Mapping) else ()):
            value = prompt_values.get(f"{node_id}.{name}", value)
            choices = combo_choices(input_spec(object_info, class_type, name))
            if choices is not None and not is_link(value) and value not in choices:
                shown = ", ".join(map(str, choices[:8])) + (", ..." if len(choices) > 8 else "")
                found.append(f"node {node_id} ({class_type}) input {name!r}: {value!r} is not available "
                             f"on this ComfyUI (choices: {shown or 'none'})")
    return found


async def run_check(settings: Settings, *, offline: bool = False) -> int:
    """Print findings; exit status 0 when nothing is wrong, 1 otherwise."""
    try:
        presets = load_presets(settings.presets_path)
    except ConfigError as exc:
        print(f"FAIL {settings.presets_path}: {exc.message}")
        return 1
    print(f"ok   {settings.presets_path}: {len(presets)} preset(s)")
    for preset in presets.values():
        print(f"ok   {preset.slug}: {preset.workflow_file}; parameters: {', '.join(sorted(preset.bindings)) or 'none'}")
    if offline:
        return 0
    async with aiohttp.ClientSession() as session:
        client = ComfyClient(base_url=settings.comfyui_url, session=session, client_id="comfy-gateway-check")
        try:
            object_info = await client.object_info()
        except ComfyUnavailable as exc:
            print(f"skip ComfyUI checks: {exc.message}")
            return 0
    failures = 0
    for preset in presets.values():
        for problem in problems_against(preset, object_info):
            failures += 1
            print(f"FAIL {preset.slug}: {problem}")
    if not failures:
        print(f"ok   every preset is runnable on {settings.comfyui_url}")
    return 1 if failures else 0
