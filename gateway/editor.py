"""The ComfyUI editor's saved workflow (nodes + links + widgets_values) to an API-format prompt.

Pure: a workflow and the server's `/object_info` in, a prompt out. The result is what ComfyUI's
own web frontend submits for the same graph (`graphToPrompt`), rule for rule:

- Widget values are matched to widgets by position. A node's widgets follow its definition's
  `input_order` (required, then optional, then extras such as the image `upload` button), and
  some widgets hold a slot in `widgets_values` without being sent: the `control_after_generate`
  combo after seed-like inputs (plus a filter list after combos), and the upload button.
  Values missing from the file take the definition's defaults.
- Each input connected by a link becomes `[node_id, output_index]`, traced through Reroutes,
  bypassed nodes (mode 4: the first input of the same type passes through), subgraph inputs and
  outputs. A widget fed by a PrimitiveNode gets the primitive's value.
- Muted nodes (mode 2), bypassed nodes, Notes, PrimitiveNodes, Reroutes and subgraph nodes are
  not emitted; an input that pointed at a node that is not emitted is left out.
- Nodes inside subgraphs (`definitions.subgraphs`) are emitted with ids `"<outer>:<inner>"`;
  values of a subgraph node's promoted widgets override the stored values inside.

What cannot be converted raises `ConversionError` listing every problem (node id, type, reason).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import ConfigError

MUTED = 2
BYPASSED = 4
_SUBGRAPH_INPUT = "-10"
_SUBGRAPH_OUTPUT = "-20"
_VIRTUAL = frozenset({"Note", "MarkdownNote", "PrimitiveNode", "Reroute"})
_WIDGET_TYPES = frozenset({
    "INT", "FLOAT", "BOOLEAN", "STRING", "COMBO", "MARKDOWN", "COLOR", "IMAGECOMPARE", "CHART",
    "GALLERIA", "TEXTAREA",
})
_UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
_FRONTEND_BUILT = frozenset({
    "COMFY_DYNAMICCOMBO_V3", "COMFY_AUTOGROW_V3", "WEBCAM", "AUDIO_RECORD", "LOAD_3D", "LOAD_3D_ANIMATION",
})
"""Input types whose widgets and sockets ComfyUI's web frontend builds with its own code."""

Json = Any
Prompt = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Problem:
    """One thing that stops a workflow from being converted."""

    node_id: str
    node_type: str
    reason: str

    def __str__(self) -> str:
        return f"node {self.node_id} ({self.node_type}): {self.reason}"


class ConversionError(ConfigError):
    """The workflow cannot be converted; `problems` lists every reason found."""

    def __init__(self, problems: Iterable[Problem], source: str = "workflow") -> None:
        self.problems = tuple(problems)
        listed = "; ".join(map(str, self.problems))
        super().__init__(f"{source} cannot be converted from the editor's format: {listed}")


def is_editor_format(data: object) -> bool:
    """True for a workflow as the editor saves it (nodes and links), not an API-format prompt."""
    return isinstance(data, Mapping) and isinstance(data.get("nodes"), list) and "links" in data


@dataclass(frozen=True)
class _Link:
    origin_id: str
    origin_slot: int
    target_id: str
    target_slot: int


@dataclass
class _Slot:
    name: str
    type: str
    link: int | None


@dataclass
class _Graph:
    nodes: dict[str, Mapping[str, Json]]
    links: dict[int, _Link]
    definition: Mapping[str, Json] | None = None
    """A subgraph's definition (its inputs and outputs); None for the top-level graph."""


@dataclass
class _Node:
    exec_id: str
    raw: Mapping[str, Json]
    graph: _Graph
    parent: _Node | None
    info: Mapping[str, Json] | None = None
    slots: list[_Slot] = field(default_factory=list)
    widgets: dict[str, Any] = field(default_factory=dict)
    """Values of the widgets sent to ComfyUI, by input name, in widget order."""
    dynamic_prompts: set[str] = field(default_factory=set)
    promoted: dict[str, Any] = field(default_factory=dict)
    """Subgraph nodes only: values of widgets promoted from subgraph inputs, by input name."""

    @property
    def type(self) -> str:
        return str(self.raw.get("type", "?"))

    @property
    def mode(self) -> int:
        mode = self.raw.get("mode", 0)
        return mode if isinstance(mode, int) else 0

    def sibling_id(self, node_id: str) -> str:
        prefix = self.exec_id.rpartition(":")[0]
        return f"{prefix}:{node_id}" if prefix else node_id


@dataclass(frozen=True)
class _Ref:
    """A resolved input: a link to an emitted node's output, or a value from a promoted widget."""

    link: tuple[str, int] | None = None
    value: Any = None


def _links(raw: object) -> dict[int, _Link]:
    links: dict[int, _Link] = {}
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, list) and len(item) >= 5:
            link_id, origin, o_slot, target, t_slot = item[:5]
        elif isinstance(item, Mapping):
            link_id, origin, o_slot = item.get("id"), item.get("origin_id"), item.get("origin_slot")
            target, t_slot = item.get("target_id"), item.get("target_slot")
        else:
            continue
        if isinstance(link_id, int) and isinstance(o_slot, int) and isinstance(t_slot, int):
            links[link_id] = _Link(str(origin), o_slot, str(target), t_slot)
    return links


def _graph(raw: Mapping[str, Json], definition: Mapping[str, Json] | None = None) -> _Graph:
    nodes = {str(n["id"]): n for n in raw.get("nodes") or [] if isinstance(n, Mapping) and "id" in n}
    return _Graph(nodes=nodes, links=_links(raw.get("links")), definition=definition)


def _spec_options(spec: object) -> Mapping[str, Json]:
    if isinstance(spec, list) and len(spec) > 1 and isinstance(spec[1], Mapping):
        return spec[1]
    return {}


def _spec_type(spec: object) -> str:
    if isinstance(spec, list) and spec:
        return "COMBO" if isinstance(spec[0], list) else str(spec[0])
    return "*"


def _ordered_inputs(info: Mapping[str, Json]) -> list[tuple[str, Json]]:
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


def _is_widget(spec: Json) -> bool:
    return _spec_type(spec) in _WIDGET_TYPES and not _spec_options(spec).get("forceInput")


def _control_slots(name: str, spec: Json) -> int:
    """How many unsent widgets the editor adds after this one (value control, combo filter)."""
    kind, control = _spec_type(spec), _spec_options(spec).get("control_after_generate")
    if kind == "INT" and (control if control is not None else name in ("seed", "noise_seed")):
        return 1
    if kind == "FLOAT" and control:
        return 1
    if kind == "COMBO" and control:
        return 2
    return 0


def _default(spec: Json) -> Any:
    options = _spec_options(spec)
    if "default" in options:
        return options["default"]
    kind = _spec_type(spec)
    if kind == "COMBO":
        choices = spec[0] if isinstance(spec, list) and isinstance(spec[0], list) else options.get("options")
        return choices[0] if isinstance(choices, list) and choices else None
    return {"INT": options.get("min", 0), "FLOAT": options.get("min", 0), "BOOLEAN": False}.get(kind, "")


def _widget_layout(info: Mapping[str, Json]) -> list[tuple[str | None, Json]]:
    """One entry per `widgets_values` slot: (input name, spec), or (None, None) for slots not sent."""
    layout: list[tuple[str | None, Json]] = []
    upload = False
    for name, spec in _ordered_inputs(info):
        if _is_widget(spec):
            layout.append((name, spec))
            layout.extend([(None, None)] * _control_slots(name, spec))
        upload = upload or any(_spec_options(spec).get(o) is True for o in _UPLOAD_OPTIONS)
    if upload:
        layout.append((None, None))  # the upload button keeps a value in widgets_values
    return layout


def _migrate(info: Mapping[str, Json], layout: list[tuple[str | None, Json]], values: list[Any]) -> list[Any]:
    """Drop the placeholder values old editors saved for inputs that are now `forceInput`."""
    groups = info.get("input") or {}
    declared = [(n, s) for g in ("required", "optional") for n, s in (groups.get(g) or {}).items()]
    widget_names = {name for name, _ in layout if name}
    originals = [(n, s) for n, s in declared if n in widget_names or _spec_options(s).get("forceInput")]
    if not any(_spec_options(s).get("forceInput") for _, s in originals):
        return values
    counted = [(n, s, 2 if (_spec_options(s).get("control_after_generate") or n in ("seed", "noise_seed")) else 1)
               for n, s in originals]
    if sum(c for *_, c in counted) != len(values):
        return values
    kept, i = [], 0
    for _, spec, count in counted:
        if not _spec_options(spec).get("forceInput"):
            kept.extend(values[i:i + count])
        i += count
    return kept


def _configure(node: _Node, problems: list[Problem]) -> None:
    """Widget values and input slots of a node with a known definition."""
    info = node.info
    assert info is not None
    for name, spec in _ordered_inputs(info):
        if _spec_type(spec) in _FRONTEND_BUILT or _spec_options(spec).get("audio_upload"):
            problems.append(Problem(node.exec_id, node.type, f"input {name!r} ({_spec_type(spec)}) is built by "
                                    "the editor's own code; export this workflow with 'Export (API)'"))
    saved = {str(s.get("name")): s for s in node.raw.get("inputs") or [] if isinstance(s, Mapping)}
    ordered = _ordered_inputs(info)
    sockets = [(n, s) for n, s in ordered if not _is_widget(s)]
    widgets = [(n, s) for n, s in ordered if _is_widget(s)]
    for name, spec in sockets + widgets:
        entry = saved.pop(name, {})
        node.slots.append(_Slot(name, _spec_type(spec), _link_id(entry)))
    for name, entry in saved.items():
        node.slots.append(_Slot(name, str(entry.get("type", "*")), _link_id(entry)))

    layout = _widget_layout(info)
    raw_values = node.raw.get("widgets_values")
    if isinstance(raw_values, Mapping):  # some custom nodes save their values by name
        values_by_name = dict(raw_values)
        for key, spec in layout:
            if key is not None:
                node.widgets[key] = values_by_name.get(key, _default(spec))
    else:
        values = _migrate(info, layout, list(raw_values) if isinstance(raw_values, list) else [])
        for i, (key, spec) in enumerate(layout):
            if key is not None:
                node.widgets[key] = values[i] if i < len(values) else _default(spec)
    node.dynamic_prompts = {n for n, s in widgets if _spec_options(s).get("dynamicPrompts")}


def _link_id(entry: Mapping[str, Json]) -> int | None:
    link = entry.get("link")
    return link if isinstance(link, int) else None


def _saved_slots(node: _Node) -> list[_Slot]:
    return [_Slot(str(s.get("name")), str(s.get("type", "*")), _link_id(s))
            for s in node.raw.get("inputs") or [] if isinstance(s, Mapping)]


class _Converter:
    def __init__(self, workflow: Mapping[str, Json], object_info: Mapping[str, Json]) -> None:
        self.object_info = object_info
        self.problems: list[Problem] = []
        self.nodes: dict[str, _Node] = {}
        definitions = workflow.get("definitions") or {}
        self.subgraphs = {str(sg.get("id")): sg for sg in definitions.get("subgraphs") or []
                          if isinstance(sg, Mapping)}
        self.group_nodes = set((workflow.get("extra") or {}).get("groupNodes") or {})
        self._expand(_graph(workflow), None, "", ())

    def _expand(self, graph: _Graph, parent: _Node | None, prefix: str, within: tuple[str, ...]) -> None:
        for node_id, raw in graph.nodes.items():
            node = _Node(exec_id=prefix + node_id, raw=raw, graph=graph, parent=parent)
            self.nodes[node.exec_id] = node
            definition = self.subgraphs.get(node.type)
            if definition is not None:
                if node.type in within:
                    self.problems.append(Problem(node.exec_id, node.type, "subgraph contains itself"))
                    continue
                node.slots = self._subgraph_slots(node, definition)
                self._expand(_graph(definition, definition), node, node.exec_id + ":", (*within, node.type))
            elif node.type in _VIRTUAL:
                node.slots = _saved_slots(node)
            elif node.type in self.object_info:
                node.info = self.object_info[node.type]
                _configure(node, self.problems)
            else:
                node.slots = _saved_slots(node)
                if node.mode not in (MUTED, BYPASSED):
                    reason = ("a group node of the old kind; convert it to a subgraph in the editor"
                              if node.type in self.group_nodes or node.type.startswith("workflow>")
                              else "ComfyUI has no node of this type (a custom node that is not installed?)")
                    self.problems.append(Problem(node.exec_id, node.type, reason))

    @staticmethod
    def _subgraph_slots(node: _Node, definition: Mapping[str, Json]) -> list[_Slot]:
        saved = {str(s.get("name")): s for s in node.raw.get("inputs") or [] if isinstance(s, Mapping)}
        return [_Slot(str(i.get("name")), str(i.get("type", "*")), _link_id(saved.get(str(i.get("name")), {})))
                for i in definition.get("inputs") or [] if isinstance(i, Mapping)]

    # -- values pushed into widgets before anything is read ------------------------------------

    def apply_promoted(self) -> None:
        """A subgraph node's widget values for its inputs that feed widgets inside."""
        for node in reversed(list(self.nodes.values())):  # nested subgraph nodes first
            definition = self.subgraphs.get(node.type)
            if definition is None:
                continue
            promoted: list[str] = []
            for sg_input in definition.get("inputs") or []:
                name = str(sg_input.get("name"))
                for link_id in sg_input.get("linkIds") or []:
                    inner = self._inner_widget(node, link_id)
                    if inner is not None:
                        node.promoted[name] = inner
                        promoted.append(name)
                        break
            values = node.raw.get("widgets_values")
            values = values if isinstance(values, list) else []
            for name, value in zip(promoted, values, strict=False):
                node.promoted[name] = value
            proxies = (node.raw.get("properties") or {}).get("proxyWidgets")
            if isinstance(proxies, list):
                for proxy, value in zip(proxies, values, strict=False):
                    if isinstance(proxy, list) and len(proxy) == 2 and str(proxy[0]) == "-1" \
                            and value is not None and proxy[1] in node.promoted:
                        node.promoted[proxy[1]] = value

    def _inner_widget(self, node: _Node, link_id: object) -> Any:
        """The current value of the widget a subgraph input's link feeds, or None."""
        definition = self.subgraphs[node.type]
        link = _links(definition.get("links")).get(link_id) if isinstance(link_id, int) else None
        if link is None:
            return None
        target = self.nodes.get(f"{node.exec_id}:{link.target_id}")
        if target is None:
            return None
        slot = next((s for s in target.slots if s.link == link_id), None)
        if slot is None:
            return None
        if slot.name in target.widgets:
            return target.widgets[slot.name]
        return target.promoted.get(slot.name)

    def apply_primitives(self) -> None:
        """Each PrimitiveNode's value goes into every widget its output feeds."""
        for node in self.nodes.values():
            if node.type != "PrimitiveNode":
                continue
            values = node.raw.get("widgets_values")
            if not isinstance(values, list) or not values:
                continue
            for link_id, link in node.graph.links.items():
                if link.origin_id != str(node.raw.get("id")):
                    continue
                target = self.nodes.get(node.sibling_id(link.target_id))
                slot = next((s for s in target.slots if s.link == link_id), None) if target else None
                if target is None or slot is None:
                    continue
                if slot.name in target.widgets:
                    target.widgets[slot.name] = values[0]
                elif slot.name in target.promoted:
                    target.promoted[slot.name] = values[0]

    # -- links ---------------------------------------------------------------------------------

    def resolve_input(self, node: _Node, slot: _Slot, kind: str, seen: set[str]) -> _Ref | None:
        key = f"{node.exec_id}[I]{slot.name}"
        if key in seen:
            raise _Cycle(node)
        seen.add(key)
        if slot.link is None:
            return None
        link = node.graph.links.get(slot.link)
        if link is None:
            self.problems.append(Problem(node.exec_id, node.type, f"input {slot.name!r} names link {slot.link}, "
                                         "which the workflow does not have"))
            return None
        if link.origin_id == _SUBGRAPH_INPUT:
            return self._from_subgraph_input(node, link, seen)
        origin = self.nodes.get(node.sibling_id(link.origin_id))
        if origin is None:
            self.problems.append(Problem(node.exec_id, node.type, f"input {slot.name!r} is linked to node "
                                         f"{link.origin_id}, which the workflow does not have"))
            return None
        return self.resolve_output(origin, link.origin_slot, kind, seen)

    def _from_subgraph_input(self, node: _Node, link: _Link, seen: set[str]) -> _Ref | None:
        outer = node.parent
        definition = node.graph.definition
        inputs = (definition or {}).get("inputs") or []
        if outer is None or not 0 <= link.origin_slot < len(inputs):
            return None
        name = str(inputs[link.origin_slot].get("name"))
        slot = next((s for s in outer.slots if s.name == name), None)
        if slot is None:
            return None
        if slot.link is None:
            return _Ref(value=outer.promoted[name]) if name in outer.promoted else None
        return self.resolve_input(outer, slot, slot.type, seen)

    def resolve_output(self, node: _Node, index: int, kind: str, seen: set[str]) -> _Ref | None:
        key = f"{node.exec_id}[O]{index}"
        if key in seen:
            raise _Cycle(node)
        seen.add(key)
        if node.mode == BYPASSED:
            through = self._bypass_slot(node, index, kind)
            return None if through is None else self.resolve_input(node, through, through.type, seen)
        definition = self.subgraphs.get(node.type)
        if definition is not None:
            outputs = definition.get("outputs") or []
            link_ids = outputs[index].get("linkIds") if 0 <= index < len(outputs) else None
            inner_links = _links(definition.get("links"))
            link = inner_links.get(link_ids[0]) if link_ids else None
            inner = self.nodes.get(f"{node.exec_id}:{link.origin_id}") if link else None
            return None if link is None or inner is None else self.resolve_output(inner, link.origin_slot, kind, seen)
        if node.type in _VIRTUAL:
            slot = node.slots[index] if node.type == "Reroute" and index < len(node.slots) else None
            return None if slot is None else self.resolve_input(node, slot, kind, seen)
        return _Ref(link=(node.exec_id, index))

    @staticmethod
    def _bypass_slot(node: _Node, index: int, kind: str) -> _Slot | None:
        """The input a bypassed node passes through to output `index` (the editor's rule)."""
        slots = node.slots
        if not slots:
            return None
        if kind in ("*", ""):
            return slots[index] if index < len(slots) else slots[0]
        outputs = node.raw.get("outputs") or []
        out_type = str(outputs[index].get("type", "*")) if index < len(outputs) else "*"
        if index < len(slots) and _fits(slots[index].type, out_type) and _fits(slots[index].type, kind):
            return slots[index]
        exact = next((s for s in slots if s.type == kind), None)
        if exact is not None:
            return exact
        return next((s for s in slots if _fits(s.type, out_type) and _fits(s.type, kind)), None)

    # -- output --------------------------------------------------------------------------------

    def emit(self) -> Prompt:
        prompt: Prompt = {}
        for node in self.nodes.values():
            if node.info is None or node.mode in (MUTED, BYPASSED):
                continue
            inputs: dict[str, Any] = {}
            for name, value in node.widgets.items():
                if name in node.dynamic_prompts and isinstance(value, str):
                    value = dynamic_prompt(value)
                inputs[name] = {"__value__": value} if isinstance(value, list) else value
            for slot in node.slots:
                try:
                    ref = self.resolve_input(node, slot, slot.type, set())
                except _Cycle as cycle:
                    self.problems.append(Problem(cycle.node.exec_id, cycle.node.type, "links form a loop"))
                    continue
                if ref is None:
                    continue
                if ref.link is not None:
                    inputs[slot.name] = [ref.link[0], ref.link[1]]
                else:
                    inputs[slot.name] = {"__value__": ref.value} if isinstance(ref.value, list) else ref.value
            title = node.raw.get("title")
            if not isinstance(title, str):
                title = node.info.get("display_name") or node.info.get("name") or node.type
            prompt[node.exec_id] = {"inputs": inputs, "class_type": node.type, "_meta": {"title": title}}
        for entry in prompt.values():
            for name, value in list(entry["inputs"].items()):
                if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) \
                        and value[0] not in prompt:
                    del entry["inputs"][name]
        return prompt


class _Cycle(Exception):
    def __init__(self, node: _Node) -> None:
        super().__init__(node.exec_id)
        self.node = node


def _fits(a: str, b: str) -> bool:
    """Whether slot types connect (the editor's rule: '*' matches all, 'A,B' lists alternatives)."""
    if a in ("", "*") or b in ("", "*") or a == b:
        return True
    left, right = a.lower().split(","), b.lower().split(",")
    return any(x == y or x in ("", "*") or y in ("", "*") for x in left for y in right)


_COMMENTS = re.compile(r"/\*[\s\S]*?\*/|//.*")


def dynamic_prompt(text: str) -> str:
    """What the editor sends for a text with dynamic prompts: C-style comments removed.

    The editor also replaces each `{a|b|c}` group by one option chosen at random on every queue;
    a template must not freeze one random choice, so groups are kept as written.
    """
    return _COMMENTS.sub("", text)


def to_api(workflow: Mapping[str, Json], object_info: Mapping[str, Json], *, source: str = "workflow") -> Prompt:
    """Convert an editor-format workflow to an API-format prompt, as ComfyUI's frontend does.

    Raises ConversionError listing every node that cannot be converted.
    """
    if not is_editor_format(workflow):
        raise ConversionError([Problem("-", "-", "not an editor-format workflow (no 'nodes' and 'links')")], source)
    converter = _Converter(workflow, object_info)
    converter.apply_promoted()
    converter.apply_primitives()
    prompt = converter.emit()
    if converter.problems:
        raise ConversionError(dict.fromkeys(converter.problems), source)
    return prompt
