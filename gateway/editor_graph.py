"""The editor's saved graph read into typed pieces: nodes, links, input slots. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MUTED = 2
BYPASSED = 4

Json = Any


@dataclass(frozen=True)
class Problem:
    """One thing that stops a workflow from being converted."""

    node_id: str
    node_type: str
    reason: str

    def __str__(self) -> str:
        return f"node {self.node_id} ({self.node_type}): {self.reason}"


@dataclass(frozen=True)
class Link:
    origin_id: str
    origin_slot: int
    target_id: str
    target_slot: int


@dataclass
class Slot:
    name: str
    type: str
    link: int | None


@dataclass
class Graph:
    nodes: dict[str, Mapping[str, Json]]
    links: dict[int, Link]
    definition: Mapping[str, Json] | None = None
    """A subgraph's definition (its inputs and outputs); None for the top-level graph."""


@dataclass
class Node:
    exec_id: str
    raw: Mapping[str, Json]
    graph: Graph
    parent: Node | None
    info: Mapping[str, Json] | None = None
    slots: list[Slot] = field(default_factory=list)
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
class Ref:
    """A resolved input: a link to an emitted node's output, or a value from a promoted widget."""

    link: tuple[str, int] | None = None
    value: Any = None


def read_links(raw: object) -> dict[int, Link]:
    links: dict[int, Link] = {}
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, list) and len(item) >= 5:
            link_id, origin, o_slot, target, t_slot = item[:5]
        elif isinstance(item, Mapping):
            link_id, origin, o_slot = item.get("id"), item.get("origin_id"), item.get("origin_slot")
            target, t_slot = item.get("target_id"), item.get("target_slot")
        else:
            continue
        if isinstance(link_id, int) and isinstance(o_slot, int) and isinstance(t_slot, int):
            links[link_id] = Link(str(origin), o_slot, str(target), t_slot)
    return links


def read_graph(raw: Mapping[str, Json], definition: Mapping[str, Json] | None = None) -> Graph:
    nodes = {str(n["id"]): n for n in raw.get("nodes") or [] if isinstance(n, Mapping) and "id" in n}
    return Graph(nodes=nodes, links=read_links(raw.get("links")), definition=definition)


def slot_link(entry: Mapping[str, Json]) -> int | None:
    link = entry.get("link")
    return link if isinstance(link, int) else None


def saved_slots(node: Node) -> list[Slot]:
    return [Slot(str(s.get("name")), str(s.get("type", "*")), slot_link(s))
            for s in node.raw.get("inputs") or [] if isinstance(s, Mapping)]


class Cycle(Exception):
    def __init__(self, node: Node) -> None:
        super().__init__(node.exec_id)
        self.node = node


def fits(a: str, b: str) -> bool:
    """Whether slot types connect (the editor's rule: '*' matches all, 'A,B' lists alternatives)."""
    if a in ("", "*") or b in ("", "*") or a == b:
        return True
    left, right = a.lower().split(","), b.lower().split(",")
    return any(x == y or x in ("", "*") or y in ("", "*") for x in left for y in right)
