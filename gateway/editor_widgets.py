"""A node definition's widgets as the editor builds them: which inputs are widgets, the slots
they hold in `widgets_values` (sent or not), their defaults. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.editor_graph import Json, Node, Problem, Slot, slot_link

_WIDGET_TYPES = frozenset({
    "INT", "FLOAT", "BOOLEAN", "STRING", "COMBO", "MARKDOWN", "COLOR", "IMAGECOMPARE", "CHART",
    "GALLERIA", "TEXTAREA",
})
_UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
_FRONTEND_BUILT = frozenset({
    "COMFY_DYNAMICCOMBO_V3", "COMFY_AUTOGROW_V3", "WEBCAM", "AUDIO_RECORD", "LOAD_3D", "LOAD_3D_ANIMATION",
})
"""Input types whose widgets and sockets ComfyUI's web frontend builds with its own code."""


def spec_options(spec: object) -> Mapping[str, Json]:
    if isinstance(spec, list) and len(spec) > 1 and isinstance(spec[1], Mapping):
        return spec[1]
    return {}


def spec_type(spec: object) -> str:
    if isinstance(spec, list) and spec:
        return "COMBO" if isinstance(spec[0], list) else str(spec[0])
    return "*"


def ordered_inputs(info: Mapping[str, Json]) -> list[tuple[str, Json]]:
    """The definition's inputs in the order the editor builds them."""
    groups = info.get("input") or {}
    order = info.get("input_order") or {}
    specs: list[tuple[str, Json]] = []
    seen: set[str] = set()
    for group in ("required", "optional"):
        declared = groups.get(group) or {}
        for name in order.get(group) or declared:
            if name in declared and name not in seen:
                specs.append((name, declared[name]))
                seen.add(name)
    for group in ("required", "optional"):
        for name, spec in (groups.get(group) or {}).items():
            if name not in seen:
                specs.append((name, spec))
                seen.add(name)
    return specs


def is_widget(spec: Json) -> bool:
    return spec_type(spec) in _WIDGET_TYPES and not spec_options(spec).get("forceInput")


def control_slots(name: str, spec: Json) -> int:
    """How many unsent widgets the editor adds after this one (value control, combo filter)."""
    kind, control = spec_type(spec), spec_options(spec).get("control_after_generate")
    if kind == "INT" and (control if control is not None else name in ("seed", "noise_seed")):
        return 1
    if kind == "FLOAT" and control:
        return 1
    if kind == "COMBO" and control:
        return 2
    return 0


def default_value(spec: Json) -> Any:
    options = spec_options(spec)
    if "default" in options:
        return options["default"]
    kind = spec_type(spec)
    if kind == "COMBO":
        choices = spec[0] if isinstance(spec, list) and isinstance(spec[0], list) else options.get("options")
        return choices[0] if isinstance(choices, list) and choices else None
    return {"INT": options.get("min", 0), "FLOAT": options.get("min", 0), "BOOLEAN": False}.get(kind, "")


def widget_layout(info: Mapping[str, Json]) -> list[tuple[str | None, Json]]:
    """One entry per `widgets_values` slot: (input name, spec), or (None, None) for slots not sent."""
    layout: list[tuple[str | None, Json]] = []
    upload = False
    for name, spec in ordered_inputs(info):
        if is_widget(spec):
            layout.append((name, spec))
            layout.extend([(None, None)] * control_slots(name, spec))
        upload = upload or any(spec_options(spec).get(o) is True for o in _UPLOAD_OPTIONS)
    if upload:
        layout.append((None, None))  # the upload button keeps a value in widgets_values
    return layout


def migrate_values(info: Mapping[str, Json], layout: list[tuple[str | None, Json]], values: list[Any]) -> list[Any]:
    """Drop the placeholder values old editors saved for inputs that are now `forceInput`."""
    groups = info.get("input") or {}
    declared = [(n, s) for g in ("required", "optional") for n, s in (groups.get(g) or {}).items()]
    widget_names = {name for name, _ in layout if name}
    originals = [(n, s) for n, s in declared if n in widget_names or spec_options(s).get("forceInput")]
    if not any(spec_options(s).get("forceInput") for _, s in originals):
        return values
    counted = [(n, s, 2 if (spec_options(s).get("control_after_generate") or n in ("seed", "noise_seed")) else 1)
               for n, s in originals]
    if sum(c for *_, c in counted) != len(values):
        return values
    kept, i = [], 0
    for _, spec, count in counted:
        if not spec_options(spec).get("forceInput"):
            kept.extend(values[i:i + count])
        i += count
    return kept


def configure(node: Node, problems: list[Problem]) -> None:
    """Widget values and input slots of a node with a known definition."""
    info = node.info
    assert info is not None
    for name, spec in ordered_inputs(info):
        if spec_type(spec) in _FRONTEND_BUILT or spec_options(spec).get("audio_upload"):
            problems.append(Problem(node.exec_id, node.type, f"input {name!r} ({spec_type(spec)}) is built by "
                                    "the editor's own code; export this workflow with 'Export (API)'"))
    saved = {str(s.get("name")): s for s in node.raw.get("inputs") or [] if isinstance(s, Mapping)}
    ordered = ordered_inputs(info)
    sockets = [(n, s) for n, s in ordered if not is_widget(s)]
    widgets = [(n, s) for n, s in ordered if is_widget(s)]
    for name, spec in sockets + widgets:
        entry = saved.pop(name, {})
        node.slots.append(Slot(name, spec_type(spec), slot_link(entry)))
    for name, entry in saved.items():
        node.slots.append(Slot(name, str(entry.get("type", "*")), slot_link(entry)))

    layout = widget_layout(info)
    raw_values = node.raw.get("widgets_values")
    if isinstance(raw_values, Mapping):  # some custom nodes save their values by name
        values_by_name = dict(raw_values)
        for key, spec in layout:
            if key is not None:
                node.widgets[key] = values_by_name.get(key, default_value(spec))
    else:
        values = migrate_values(info, layout, list(raw_values) if isinstance(raw_values, list) else [])
        for i, (key, spec) in enumerate(layout):
            if key is not None:
                node.widgets[key] = values[i] if i < len(values) else default_value(spec)
    node.dynamic_prompts = {n for n, s in widgets if spec_options(s).get("dynamicPrompts")}
