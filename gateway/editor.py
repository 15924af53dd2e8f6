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
from typing import Any

from gateway.editor_graph import (
    BYPASSED,
    MUTED,
    Cycle,
    Graph,
    Json,
    Link,
    Node,
    Problem,
    Ref,
    Slot,
    fits,
    read_graph,
    read_links,
    saved_slots,
    slot_link,
)
from gateway.editor_widgets import configure
from gateway.errors import ConfigError

__all__ = ["BYPASSED", "MUTED", "ConversionError", "Problem", "dynamic_prompt", "is_editor_format", "to_api"]

_SUBGRAPH_INPUT = "-10"
_SUBGRAPH_OUTPUT = "-20"
_VIRTUAL = frozenset({"Note", "MarkdownNote", "PrimitiveNode", "Reroute"})
Prompt = dict[str, dict[str, Any]]


class ConversionError(ConfigError):
    """The workflow cannot be converted; `problems` lists every reason found."""

    def __init__(self, problems: Iterable[Problem], source: str = "workflow") -> None:
        self.problems = tuple(problems)
        listed = "; ".join(map(str, self.problems))
        super().__init__(f"{source} cannot be converted from the editor's format: {listed}")


def is_editor_format(data: object) -> bool:
    """True for a workflow as the editor saves it (nodes and links), not an API-format prompt."""
    return isinstance(data, Mapping) and isinstance(data.get("nodes"), list) and "links" in data


class _Converter:
    def __init__(self, workflow: Mapping[str, Json], object_info: Mapping[str, Json]) -> None:
        self.object_info = object_info
        self.problems: list[Problem] = []
        self.nodes: dict[str, Node] = {}
        definitions = workflow.get("definitions") or {}
        self.subgraphs = {str(sg.get("id")): sg for sg in definitions.get("subgraphs") or []
                          if isinstance(sg, Mapping)}
        self.group_nodes = set((workflow.get("extra") or {}).get("groupNodes") or {})
        self._expand(read_graph(workflow), None, "", ())

    def _expand(self, graph: Graph, parent: Node | None, prefix: str, within: tuple[str, ...]) -> None:
        for node_id, raw in graph.nodes.items():
            node = Node(exec_id=prefix + node_id, raw=raw, graph=graph, parent=parent)
            self.nodes[node.exec_id] = node
            definition = self.subgraphs.get(node.type)
            if definition is not None:
                if node.type in within:
                    self.problems.append(Problem(node.exec_id, node.type, "subgraph contains itself"))
                    continue
                node.slots = self._subgraph_slots(node, definition)
                self._expand(read_graph(definition, definition), node, node.exec_id + ":", (*within, node.type))
            elif node.type in _VIRTUAL:
                node.slots = saved_slots(node)
            elif node.type in self.object_info:
                node.info = self.object_info[node.type]
                configure(node, self.problems)
            else:
                node.slots = saved_slots(node)
                if node.mode not in (MUTED, BYPASSED):
                    reason = ("a group node of the old kind; convert it to a subgraph in the editor"
                              if node.type in self.group_nodes or node.type.startswith("workflow>")
                              else "ComfyUI has no node of this type (a custom node that is not installed?)")
                    self.problems.append(Problem(node.exec_id, node.type, reason))

    @staticmethod
    def _subgraph_slots(node: Node, definition: Mapping[str, Json]) -> list[Slot]:
        saved = {str(s.get("name")): s for s in node.raw.get("inputs") or [] if isinstance(s, Mapping)}
        return [Slot(str(i.get("name")), str(i.get("type", "*")), slot_link(saved.get(str(i.get("name")), {})))
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

    def _inner_widget(self, node: Node, link_id: object) -> Any:
        """The current value of the widget a subgraph input's link feeds, or None."""
        definition = self.subgraphs[node.type]
        link = read_links(definition.get("links")).get(link_id) if isinstance(link_id, int) else None
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

    def resolve_input(self, node: Node, slot: Slot, kind: str, seen: set[str]) -> Ref | None:
        key = f"{node.exec_id}[I]{slot.name}"
        if key in seen:
            raise Cycle(node)
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

    def _from_subgraph_input(self, node: Node, link: Link, seen: set[str]) -> Ref | None:
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
            return Ref(value=outer.promoted[name]) if name in outer.promoted else None
        return self.resolve_input(outer, slot, slot.type, seen)

    def resolve_output(self, node: Node, index: int, kind: str, seen: set[str]) -> Ref | None:
        key = f"{node.exec_id}[O]{index}"
        if key in seen:
            raise Cycle(node)
        seen.add(key)
        if node.mode == BYPASSED:
            through = self._bypass_slot(node, index, kind)
            return None if through is None else self.resolve_input(node, through, through.type, seen)
        definition = self.subgraphs.get(node.type)
        if definition is not None:
            outputs = definition.get("outputs") or []
            link_ids = outputs[index].get("linkIds") if 0 <= index < len(outputs) else None
            inner_links = read_links(definition.get("links"))
            link = inner_links.get(link_ids[0]) if link_ids else None
            inner = self.nodes.get(f"{node.exec_id}:{link.origin_id}") if link else None
            return None if link is None or inner is None else self.resolve_output(inner, link.origin_slot, kind, seen)
        if node.type in _VIRTUAL:
            slot = node.slots[index] if node.type == "Reroute" and index < len(node.slots) else None
            return None if slot is None else self.resolve_input(node, slot, kind, seen)
        return Ref(link=(node.exec_id, index))

    @staticmethod
    def _bypass_slot(node: Node, index: int, kind: str) -> Slot | None:
        """The input a bypassed node passes through to output `index` (the editor's rule)."""
        slots = node.slots
        if not slots:
            return None
        if kind in ("*", ""):
            return slots[index] if index < len(slots) else slots[0]
        outputs = node.raw.get("outputs") or []
        out_type = str(outputs[index].get("type", "*")) if index < len(outputs) else "*"
        if index < len(slots) and fits(slots[index].type, out_type) and fits(slots[index].type, kind):
            return slots[index]
        exact = next((s for s in slots if s.type == kind), None)
        if exact is not None:
            return exact
        return next((s for s in slots if fits(s.type, out_type) and fits(s.type, kind)), None)

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
                except Cycle as cycle:
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
