"""Where a preset's parameters go in an API-format ComfyUI graph. Pure: no I/O.

A graph is `{node_id: {"class_type": str, "inputs": {name: value | [node_id, output_index]}}}`.
`discover()` finds the usual places of each well-known parameter in a standard graph;
`resolve()` turns an explicit `"<node id or title>.<input>"` binding into an `InputRef`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.models import InputRef

Graph = Mapping[str, Mapping[str, object]]


@dataclass(frozen=True)
class ParamSpec:
    name: str
    kind: type
    help: str


PARAMS: dict[str, ParamSpec] = {
    spec.name: spec
    for spec in (
        ParamSpec("checkpoint", str, "checkpoint loader's ckpt_name"),
        ParamSpec("positive", str, "text of the encoder feeding the sampler's positive input"),
        ParamSpec("negative", str, "text of the encoder feeding the sampler's negative input"),
        ParamSpec("seed", int, "sampler's seed / noise_seed"),
        ParamSpec("width", int, "width of the empty latent or empty image"),
        ParamSpec("height", int, "height of the empty latent or empty image"),
        ParamSpec("steps", int, "sampler's steps"),
        ParamSpec("cfg", float, "sampler's cfg"),
        ParamSpec("sampler", str, "sampler's sampler_name"),
        ParamSpec("scheduler", str, "sampler's scheduler"),
        ParamSpec("denoise", float, "sampler's denoise"),
        ParamSpec("batch", int, "batch_size of the empty latent (images per job)"),
        ParamSpec("reference_image", str, "image of the (first) LoadImage node; reference_image_2 ... the next"),
    )
}
"""Parameters the gateway knows by name. Presets may bind other names explicitly."""

_SAMPLER_INPUTS = {"steps": "steps", "cfg": "cfg", "sampler": "sampler_name", "scheduler": "scheduler",
                   "denoise": "denoise"}
_TEXT_INPUTS = ("text", "text_g", "text_l")
_MAX_HOPS = 8


class BindingError(ValueError):
    """An explicit binding that does not point at a usable node input."""


def is_link(value: object) -> bool:
    """True for `[node_id, output_index]`, how API-format graphs connect nodes."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


def _inputs(node: Mapping[str, object]) -> Mapping[str, object]:
    inputs = node.get("inputs")
    return inputs if isinstance(inputs, Mapping) else {}


def _literal_refs(graph: Graph, names: Iterable[str], kind: type) -> list[InputRef]:
    wanted = tuple(names)
    refs = []
    for node_id, node in graph.items():
        for name, value in _inputs(node).items():
            if name in wanted and _is_kind(value, kind):
                refs.append(InputRef(node_id=node_id, input=name))
    return refs


def _is_kind(value: object, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def save_nodes(graph: Graph) -> tuple[str, ...]:
    """Nodes that write files named by a `filename_prefix` (SaveImage and its kin)."""
    return tuple(ref.node_id for ref in _literal_refs(graph, ["filename_prefix"], str))


def output_nodes(graph: Graph) -> tuple[str, ...]:
    """Nodes whose images are the job's result: savers, and PreviewImage."""
    savers = save_nodes(graph)
    previews = tuple(nid for nid, node in graph.items() if node.get("class_type") == "PreviewImage")
    return savers + previews


def _text_refs(graph: Graph, link: object, via: str) -> list[InputRef]:
    """Follow a conditioning link upstream to the text encoder(s) that produce it."""
    for _ in range(_MAX_HOPS):
        if not is_link(link):
            return []
        node_id = link[0]  # type: ignore[index]
        node = graph.get(node_id)
        if node is None:
            return []
        inputs = _inputs(node)
        texts = [InputRef(node_id=node_id, input=n) for n in _TEXT_INPUTS if isinstance(inputs.get(n), str)]
        if texts:
            return texts
        # Pass-through conditioning nodes (ControlNet apply, set area, ...) keep the same role name.
        link = inputs.get(via, inputs.get("conditioning"))
    return []


def _prompt_refs(graph: Graph) -> dict[str, list[InputRef]]:
    found: dict[str, list[InputRef]] = {"positive": [], "negative": []}
    for node in graph.values():
        inputs = _inputs(node)
        for role in found:
            for ref in _text_refs(graph, inputs.get(role), role):
                if ref not in found[role]:
                    found[role].append(ref)
    shared = set(found["positive"]) & set(found["negative"])
    if shared:  # one encoder feeding both sides: the prompt is the positive one
        found["negative"] = [r for r in found["negative"] if r not in shared]
    return found


REFERENCE_PARAM = "reference_image"
IMAGE_LOADERS = ("LoadImage",)


def reference_param(index: int) -> str:
    """The parameter the `index`-th (0-based) reference image of a request is bound to."""
    return REFERENCE_PARAM if index == 0 else f"{REFERENCE_PARAM}_{index + 1}"


def reference_slots(bound: Iterable[str]) -> int:
    """How many reference images a preset takes: `reference_image`, `reference_image_2` ... in a row."""
    names = set(bound)
    count = 0
    while reference_param(count) in names:
        count += 1
    return count


def _node_order(node_id: str) -> tuple[int, int | str]:
    return (0, int(node_id)) if node_id.isdigit() else (1, node_id)


def discover(graph: Graph) -> dict[str, tuple[InputRef, ...]]:
    """Bindings of the well-known parameters found in a standard graph.

    A parameter is left out when the graph has no place for it, or (checkpoint only) when
    several loaders make the choice ambiguous: then the preset must bind it explicitly.
    """
    found: dict[str, list[InputRef]] = {}
    checkpoints = _literal_refs(graph, ["ckpt_name"], str)
    if len(checkpoints) == 1:
        found["checkpoint"] = checkpoints
    found["seed"] = _literal_refs(graph, ["seed", "noise_seed"], int)
    sizes = [nid for nid, node in graph.items() if str(node.get("class_type", "")).startswith("Empty")
             and _is_kind(_inputs(node).get("width"), int) and _is_kind(_inputs(node).get("height"), int)]
    found["width"] = [InputRef(node_id=nid, input="width") for nid in sizes]
    found["height"] = [InputRef(node_id=nid, input="height") for nid in sizes]
    found["batch"] = [InputRef(node_id=nid, input="batch_size") for nid in sizes
                      if _is_kind(_inputs(graph[nid]).get("batch_size"), int)]
    found.update(_prompt_refs(graph))
    samplers = [nid for nid, node in graph.items() if "sampler_name" in _inputs(node)]
    for param, input_name in _SAMPLER_INPUTS.items():
        found[param] = [InputRef(node_id=nid, input=input_name) for nid in samplers
                        if _is_kind(_inputs(graph[nid]).get(input_name), PARAMS[param].kind)]
    loaders = sorted((nid for nid, node in graph.items() if node.get("class_type") in IMAGE_LOADERS
                      and isinstance(_inputs(node).get("image"), str)), key=_node_order)
    for index, node_id in enumerate(loaders):
        found[reference_param(index)] = [InputRef(node_id=node_id, input="image")]
    return {name: tuple(refs) for name, refs in found.items() if refs}


def _title(node: Mapping[str, object]) -> str | None:
    meta = node.get("_meta")
    if isinstance(meta, Mapping) and isinstance(meta.get("title"), str):
        return str(meta["title"])
    return None


def resolve(graph: Graph, spec: str) -> InputRef:
    """Resolve `"<node id>.<input>"` or `"<node title>.<input>"` (titles are `_meta.title`).

    The node id wins over a title; a title must name exactly one node. The input must exist
    and hold a value, not a link.
    """
    if not isinstance(spec, str) or "." not in spec:
        raise BindingError(f"{spec!r} is not of the form '<node id or title>.<input>'")
    target, input_name = spec.rsplit(".", 1)
    if target in graph:
        node_id = target
    else:
        matches = [nid for nid, node in graph.items() if _title(node) == target]
        if not matches:
            raise BindingError(f"no node has id or title {target!r}")
        if len(matches) > 1:
            raise BindingError(f"title {target!r} names several nodes ({', '.join(matches)}); use a node id")
        node_id = matches[0]
    inputs = _inputs(graph[node_id])
    label = f"node {node_id} ({graph[node_id].get('class_type', '?')})"
    if input_name not in inputs:
        known = ", ".join(sorted(inputs)) or "none"
        raise BindingError(f"{label} has no input {input_name!r} (inputs: {known})")
    if is_link(inputs[input_name]):
        raise BindingError(f"{label} input {input_name!r} is connected to another node, not a value")
    return InputRef(node_id=node_id, input=input_name)


def value_at(graph: Graph, ref: InputRef) -> object:
    """The value a graph holds at an input."""
    return _inputs(graph[ref.node_id]).get(ref.input)


def check_kind(param: str, value: object) -> str | None:
    """Why `value` cannot be used for a well-known parameter, or None if it can."""
    spec = PARAMS.get(param)
    if spec is None or _is_kind(value, spec.kind):
        return None
    return f"must be {'a number' if spec.kind is float else 'an integer' if spec.kind is int else 'a string'}"
