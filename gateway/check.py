"""`comfy-gateway check`: validate presets offline, then against a running ComfyUI if one answers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from gateway import backends
from gateway.bindings import is_link
from gateway.choices import combo_choices, shown
from gateway.comfy.client import ComfyClient
from gateway.errors import ComfyUnavailable, ConfigError
from gateway.models import Preset
from gateway.presets import read_presets
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
        spec_inputs: dict[str, Any] = {}
        for group in ("required", "optional"):
            spec_inputs.update((info.get("input") or {}).get(group) or {})
        inputs = node.get("inputs")
        for name, value in (inputs.items() if isinstance(inputs, Mapping) else ()):
            value = prompt_values.get(f"{node_id}.{name}", value)
            choices = combo_choices(spec_inputs.get(name))
            if choices is not None and not is_link(value) and value not in choices:
                found.append(f"node {node_id} ({class_type}) input {name!r}: {value!r} is not available "
                             f"on this ComfyUI (choices: {shown(choices)})")
    return found


def _cached_object_info(settings: Settings) -> dict[str, Any] | None:
    try:
        data = json.loads(settings.object_info_cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


async def _fetch_object_info(url: str) -> dict[str, Any] | None:
    async with aiohttp.ClientSession() as session:
        client = ComfyClient(base_url=url, session=session, client_id="comfy-gateway-check")
        try:
            return await client.object_info()
        except ComfyUnavailable as exc:
            print(f"skip ComfyUI checks on {url}: {exc.message}")
            return None


async def run_check(settings: Settings, *, offline: bool = False) -> int:
    """Print findings; exit status 0 when nothing is wrong, 1 otherwise.

    Editor-format workflows are converted with ComfyUI's /object_info (or, offline or when
    ComfyUI does not answer, the one the gateway last kept); each that cannot be is a failure.
    With several backends, every preset is checked against each of them: any may run it.
    """
    specs = backends.configured(urls=settings.comfyui_urls, file=settings.backends_file,
                                max_in_flight=settings.max_in_flight)
    infos = {spec.url: None if offline else await _fetch_object_info(spec.url) for spec in specs}
    object_info = next((info for info in infos.values() if info is not None), None)
    try:
        loaded = read_presets(settings.presets_path, object_info=object_info or _cached_object_info(settings))
    except ConfigError as exc:
        print(f"FAIL {settings.presets_path}: {exc.message}")
        return 1
    presets = loaded.presets
    print(f"ok   {settings.presets_path}: {len(presets)} preset(s)")
    for preset in presets.values():
        kind = " (editor format, converted)" if preset.slug in loaded.editor_format else ""
        print(f"ok   {preset.slug}: {preset.workflow_file}{kind}; "
              f"parameters: {', '.join(sorted(preset.bindings)) or 'none'}")
    failures = 0
    for slug, reason in loaded.unconverted.items():
        failures += 1
        print(f"FAIL {slug}: {reason}")
    for url, info in infos.items():
        if info is None:
            continue
        found = [(preset.slug, problem) for preset in presets.values() for problem in problems_against(preset, info)]
        for slug, problem in found:
            print(f"FAIL {slug}: {problem}" + (f" ({url})" if len(infos) > 1 else ""))
        if not found:
            print(f"ok   every preset is runnable on {url}")
        failures += len(found)
    return 1 if failures else 0
