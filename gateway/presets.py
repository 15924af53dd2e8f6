"""Load `presets.yaml` and its workflows; refuse a preset whose bindings don't resolve.

`build_preset()` is pure (a spec and a graph in, a Preset out); `read_presets()` reads the
files. Every refusal names the preset, the parameter and the file.

A workflow may be in API format or in the editor's own format; the latter is converted with
ComfyUI's `/object_info` (`gateway.editor`). Without one, or when the conversion fails, such a
preset is listed in `LoadedPresets.unconverted` with the reason, and the others load.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway import bindings, editor
from gateway.errors import ConfigError
from gateway.models import InputRef, ParamValue, Preset

SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_SPEC_KEYS = {"name", "workflow", "cover", "description", "defaults", "params", "timeout"}


class NeedsObjectInfo(ConfigError):
    """An editor-format workflow, and no `/object_info` of ComfyUI to convert it with yet."""


def parse_graph(
    data: object, source: str, object_info: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, object]]:
    """Check that `data` is an API-format prompt (the editor's "Export (API)") and return it.

    An editor-format workflow is converted with `object_info`; raises NeedsObjectInfo when there
    is none, `editor.ConversionError` when it cannot be converted.
    """
    if isinstance(data, Mapping) and isinstance(data.get("prompt"), Mapping):
        data = data["prompt"]  # a saved /prompt request body
    if editor.is_editor_format(data):
        if object_info is None:
            raise NeedsObjectInfo(
                f"{source} is in the editor's format; converting it needs ComfyUI's /object_info, which the "
                "gateway has not fetched yet (start ComfyUI, or export the workflow with 'Export (API)')"
            )
        data = editor.to_api(data, object_info, source=source)  # type: ignore[arg-type]
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(f"{source} is not an API-format workflow (expected an object of nodes)")
    graph: dict[str, dict[str, object]] = {}
    for node_id, node in data.items():
        if not isinstance(node, Mapping) or not isinstance(node.get("class_type"), str):
            raise ConfigError(f"{source}: node {node_id!r} has no class_type")
        if not isinstance(node.get("inputs", {}), Mapping):
            raise ConfigError(f"{source}: node {node_id!r} has inputs that are not an object")
        graph[str(node_id)] = dict(node)
    for node_id, node in graph.items():
        for name, value in dict(node.get("inputs", {})).items():  # type: ignore[call-overload]
            if bindings.is_link(value) and value[0] not in graph:
                raise ConfigError(f"{source}: node {node_id} input {name!r} links to missing node {value[0]!r}")
    return graph


def build_preset(
    slug: str, spec: Mapping[str, Any], graph: dict[str, dict[str, object]], *, workflow_file: str,
    cover_file: str | None = None,
) -> Preset:
    """Validate one preset's spec against its graph and resolve every parameter binding."""
    where = f"preset {slug!r}"
    if not SLUG_RE.match(slug):
        raise ConfigError(
            f"{where}: slug must be 1-64 letters, digits, '_' or '-', starting with a letter or digit",
            field="slug",
        )
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown keys {sorted(unknown)} (known: {sorted(_SPEC_KEYS)})",
            field="spec",
        )
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"{where}: 'name' is required",
            field="name",
        )

    found = bindings.discover(graph)
    explicit = spec.get("params") or {}
    if not isinstance(explicit, Mapping):
        raise ConfigError(
            f"{where}: 'params' must map parameter names to '<node>.<input>' bindings",
            field="params",
        )
    for param, targets in explicit.items():
        specs = targets if isinstance(targets, list) else [targets]
        try:
            found[str(param)] = tuple(bindings.resolve(graph, str(t)) for t in specs)
        except bindings.BindingError as exc:
            raise ConfigError(
                f"{where}: parameter {param!r} in {workflow_file}: {exc}",
                field="params",
            ) from exc

    saves = bindings.save_nodes(graph)
    if not bindings.output_nodes(graph):
        raise ConfigError(
            f"{where}: {workflow_file} has no SaveImage or PreviewImage node, so it makes no image",
            field="workflow",
        )
    # A save node's prefix is set per job; a parameter bound there would be overwritten.
    for param, refs in found.items():
        for ref in refs:
            if ref.node_id in saves and ref.input == "filename_prefix":
                raise ConfigError(
                    f"{where}: parameter {param!r} is bound to {ref}, which the gateway sets per job",
                    field="params",
                )

    defaults = _defaults(where, spec.get("defaults") or {}, found, graph, workflow_file)
    timeout = spec.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
        raise ConfigError(
            f"{where}: 'timeout' must be a number of seconds greater than 0",
            field="timeout",
        )
    return Preset(
        slug=slug,
        name=name.strip(),
        description=spec.get("description"),
        workflow_file=workflow_file,
        graph=graph,
        cover_file=cover_file,
        bindings=found,
        defaults=defaults,
        save_nodes=saves,
        timeout=float(timeout) if timeout is not None else None,
    )


def _defaults(
    where: str, given: object, found: Mapping[str, tuple[InputRef, ...]], graph: bindings.Graph,
    workflow_file: str,
) -> dict[str, ParamValue]:
    if not isinstance(given, Mapping):
        raise ConfigError(
            f"{where}: 'defaults' must be a mapping of parameter names to values",
            field="defaults",
        )
    defaults: dict[str, ParamValue] = {}
    for param, refs in found.items():
        value = bindings.value_at(graph, refs[0])
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            defaults[param] = value
    for param, value in given.items():
        if param not in found:
            offered = ", ".join(sorted(found)) or "none"
            raise ConfigError(
                f"{where}: default for {param!r} does not resolve: {workflow_file} has no place for it "
                f"(parameters found: {offered}); bind it under 'params'",
                field="defaults",
            )
        problem = bindings.check_kind(str(param), value)
        if problem or isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(
                f"{where}: default {param!r} {problem or 'must be a string or a number'}",
                field="defaults",
            )
        defaults[str(param)] = value
    return defaults


@dataclass(frozen=True)
class LoadedPresets:
    presets: dict[str, Preset]
    unconverted: dict[str, str] = field(default_factory=dict)
    """Editor-format presets that could not be converted (yet), with the reason."""
    editor_format: frozenset[str] = frozenset()
    """Slugs whose workflow is in the editor's format (converted or not)."""


def load_presets(path: Path, *, object_info: Mapping[str, Any] | None = None) -> dict[str, Preset]:
    """Read presets.yaml and every workflow it names; every preset must load.

    Raises ConfigError with a clear reason.
    """
    loaded = read_presets(path, object_info=object_info)
    if loaded.unconverted:
        raise ConfigError("; ".join(loaded.unconverted.values()))
    return loaded.presets


def read_presets(path: Path, *, object_info: Mapping[str, Any] | None = None) -> LoadedPresets:
    """Read presets.yaml and every workflow it names (see `presets_from_specs`)."""
    return presets_from_specs(read_specs(path), path.parent, object_info=object_info)


def read_specs(path: Path) -> dict[str, dict[str, Any]]:
    """presets.yaml as plain data: slug -> the preset's entry. Raises ConfigError."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"presets file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path} must map preset slugs to preset definitions")
    for slug, spec in raw.items():
        if not isinstance(spec, Mapping):
            raise ConfigError(f"preset {slug!r} in {path} must be a mapping with at least 'name' and 'workflow'")
    return {str(slug): dict(spec) for slug, spec in raw.items()}


def presets_from_specs(
    specs: Mapping[str, Mapping[str, Any]], base: Path, *, object_info: Mapping[str, Any] | None = None,
) -> LoadedPresets:
    """Build every preset; workflow and cover paths are relative to `base`.

    Raises ConfigError for anything wrong, except editor-format workflows that cannot be
    converted: those presets are left out and reported in `unconverted`.
    """
    presets: dict[str, Preset] = {}
    unconverted: dict[str, str] = {}
    editor_format: set[str] = set()
    for slug, spec in specs.items():
        workflow = spec.get("workflow")
        if not isinstance(workflow, str):
            raise ConfigError(f"preset {slug!r}: 'workflow' (a workflow JSON file) is required", field="workflow")
        data = read_workflow(base / workflow, slug)
        if editor.is_editor_format(data):
            editor_format.add(slug)
        try:
            graph = parse_graph(data, f"preset {slug!r}: {workflow}", object_info)
        except (NeedsObjectInfo, editor.ConversionError) as exc:
            unconverted[slug] = exc.message
            continue
        cover = spec.get("cover")
        if cover is not None and not (base / str(cover)).is_file():
            raise ConfigError(f"preset {slug!r}: cover file {base / str(cover)} does not exist", field="cover")
        presets[slug] = build_preset(
            slug, spec, graph, workflow_file=workflow,
            cover_file=str(base / str(cover)) if cover is not None else None,
        )
    return LoadedPresets(presets, unconverted, frozenset(editor_format))


def read_workflow(file: Path, slug: object) -> object:
    """The JSON of a preset's workflow file."""
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"preset {slug!r}: workflow file {file} does not exist", field="workflow") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"preset {slug!r}: {file} is not valid JSON: {exc}", field="workflow") from exc
