"""ComfyUI's websocket frames and JSON answers, parsed into typed values. Pure: no I/O.

Facts this follows (observed on a real server): `executing` with `node: null` and a prompt id is
the completion signal, sent after history is written; `execution_error` and
`execution_interrupted` replace `execution_success` on failure; binary frames start with a
4-byte big-endian event type (1 = preview image, 4 = preview image with JSON metadata).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class OutputImage:
    """An image ComfyUI wrote, as named in `executed` or history (`/view` parameters)."""

    filename: str
    subfolder: str
    type: str
    node_id: str


@dataclass(frozen=True)
class Status:
    queue_remaining: int


@dataclass(frozen=True)
class ExecutionStart:
    prompt_id: str


@dataclass(frozen=True)
class ExecutionCached:
    prompt_id: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Executing:
    """A node started. `prompt_id` is None in the replay sent on reconnect."""

    prompt_id: str | None
    node: str


@dataclass(frozen=True)
class Finished:
    """`executing` with `node: null`: the prompt is over and its history entry exists."""

    prompt_id: str


@dataclass(frozen=True)
class Progress:
    prompt_id: str | None
    node: str | None
    value: int
    max: int


@dataclass(frozen=True)
class Executed:
    prompt_id: str
    node: str
    images: tuple[OutputImage, ...]


@dataclass(frozen=True)
class ExecutionSuccess:
    prompt_id: str


@dataclass(frozen=True)
class ExecutionError:
    prompt_id: str
    message: str


@dataclass(frozen=True)
class ExecutionInterrupted:
    prompt_id: str


@dataclass(frozen=True)
class Preview:
    """A preview image from a binary frame; `prompt_id` is known only with metadata (type 4)."""

    image: bytes
    mime: str
    prompt_id: str | None = None
    node: str | None = None


@dataclass(frozen=True)
class Ignored:
    """A frame the gateway does not use (progress_state, feature_flags, unknown types)."""

    type: str


WsEvent = (
    Status | ExecutionStart | ExecutionCached | Executing | Finished | Progress | Executed
    | ExecutionSuccess | ExecutionError | ExecutionInterrupted | Preview | Ignored
)

_PREVIEW = 1
_PREVIEW_WITH_METADATA = 4
_IMAGE_TYPES = {1: "image/jpeg", 2: "image/png"}


def _str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def parse_images(node_id: str, output: object) -> tuple[OutputImage, ...]:
    """Images in one node's output (`{"images": [{"filename", "subfolder", "type"}]}`)."""
    if not isinstance(output, Mapping):
        return ()
    images = []
    for item in output.get("images") or ():
        if isinstance(item, Mapping) and isinstance(item.get("filename"), str):
            images.append(OutputImage(
                filename=item["filename"], subfolder=str(item.get("subfolder") or ""),
                type=str(item.get("type") or "output"), node_id=node_id,
            ))
    return tuple(images)


def error_message(data: Mapping[str, Any]) -> str:
    """A one-line, actionable message from an `execution_error` payload (no traceback, no paths)."""
    node = data.get("node_id")
    node_type = data.get("node_type")
    raw = str(data.get("exception_message") or "")
    lines = [line.strip().lstrip("*").strip() for line in raw.splitlines()]
    text = next((line for line in lines if line), "") or str(data.get("exception_type") or "unknown error")
    if text.upper().startswith("ERROR:"):
        text = text[len("ERROR:"):].strip()
    where = f"node {node} ({node_type})" if node else "ComfyUI"
    return f"{where} failed: {text}"


def parse_text(raw: str) -> WsEvent:
    """Parse one text frame. Never raises: malformed frames become `Ignored`."""
    try:
        frame = json.loads(raw)
    except ValueError:
        return Ignored("invalid-json")
    if not isinstance(frame, Mapping):
        return Ignored("invalid-frame")
    kind = str(frame.get("type"))
    data = frame.get("data")
    if not isinstance(data, Mapping):
        return Ignored(kind)
    prompt_id = _str(data, "prompt_id")
    match kind:
        case "status":
            info = (data.get("status") or {}).get("exec_info") or {}
            remaining = info.get("queue_remaining") if isinstance(info, Mapping) else None
            return Status(queue_remaining=remaining if isinstance(remaining, int) else 0)
        case "executing":
            node = data.get("node")
            if node is None:
                return Finished(prompt_id) if prompt_id else Ignored(kind)
            return Executing(prompt_id=prompt_id, node=str(node))
        case "progress":
            value, maximum = data.get("value"), data.get("max")
            if isinstance(value, int | float) and isinstance(maximum, int | float):
                return Progress(prompt_id=prompt_id, node=_str(data, "node"), value=int(value), max=int(maximum))
            return Ignored(kind)
    if prompt_id is None:
        return Ignored(kind)
    match kind:
        case "execution_start":
            return ExecutionStart(prompt_id)
        case "execution_cached":
            nodes = data.get("nodes") or []
            return ExecutionCached(prompt_id, tuple(str(n) for n in nodes))
        case "executed":
            node = str(data.get("node"))
            return Executed(prompt_id, node, parse_images(node, data.get("output")))
        case "execution_success":
            return ExecutionSuccess(prompt_id)
        case "execution_error":
            return ExecutionError(prompt_id, error_message(data))
        case "execution_interrupted":
            return ExecutionInterrupted(prompt_id)
    return Ignored(kind)


def parse_binary(raw: bytes) -> WsEvent:
    """Parse one binary frame (previews). Never raises."""
    if len(raw) < 8:
        return Ignored("binary-short")
    (kind,) = struct.unpack(">I", raw[:4])
    if kind == _PREVIEW:
        (image_type,) = struct.unpack(">I", raw[4:8])
        return Preview(image=raw[8:], mime=_IMAGE_TYPES.get(image_type, "image/jpeg"))
    if kind == _PREVIEW_WITH_METADATA:
        (length,) = struct.unpack(">I", raw[4:8])
        try:
            meta = json.loads(raw[8:8 + length])
        except ValueError:
            return Ignored("binary-metadata")
        if not isinstance(meta, Mapping):
            return Ignored("binary-metadata")
        return Preview(
            image=raw[8 + length:], mime=str(meta.get("image_type") or "image/jpeg"),
            prompt_id=_str(meta, "prompt_id"), node=_str(meta, "node_id"),
        )
    return Ignored(f"binary-{kind}")


@dataclass(frozen=True)
class HistoryEntry:
    """What `/history/<id>` says about a finished prompt."""

    prompt_id: str
    succeeded: bool
    interrupted: bool
    error: str | None
    images: tuple[OutputImage, ...] = field(default_factory=tuple)


def parse_history(prompt_id: str, body: object) -> HistoryEntry | None:
    """The entry for `prompt_id` in a `/history/<id>` answer, or None if ComfyUI has none."""
    if not isinstance(body, Mapping):
        return None
    entry = body.get(prompt_id)
    if not isinstance(entry, Mapping):
        return None
    status = entry.get("status") if isinstance(entry.get("status"), Mapping) else {}
    assert isinstance(status, Mapping)
    outputs = entry.get("outputs") if isinstance(entry.get("outputs"), Mapping) else {}
    assert isinstance(outputs, Mapping)
    images = tuple(img for node, out in outputs.items() for img in parse_images(str(node), out))
    error = None
    interrupted = False
    for message in status.get("messages") or ():
        if isinstance(message, list) and len(message) == 2 and isinstance(message[1], Mapping):
            if message[0] == "execution_error":
                error = error_message(message[1])
            elif message[0] == "execution_interrupted":
                interrupted = True
    succeeded = status.get("status_str") == "success" and error is None and not interrupted
    if not succeeded and error is None:
        error = "interrupted" if interrupted else "ComfyUI reported the prompt as failed"
    return HistoryEntry(prompt_id, succeeded, interrupted, error, images)


def rejection_message(body: object) -> str:
    """A person-readable reason from a `POST /prompt` 400 answer (node, input, ComfyUI's words)."""
    if not isinstance(body, Mapping):
        return "ComfyUI rejected the prompt"
    parts = []
    node_errors = body.get("node_errors")
    if isinstance(node_errors, Mapping):
        for node_id, node_error in node_errors.items():
            if not isinstance(node_error, Mapping):
                continue
            class_type = node_error.get("class_type")
            for err in node_error.get("errors") or ():
                if not isinstance(err, Mapping):
                    continue
                extra = err.get("extra_info") if isinstance(err.get("extra_info"), Mapping) else {}
                assert isinstance(extra, Mapping)
                input_name = extra.get("input_name")
                where = f"node {node_id} ({class_type})" + (f" input '{input_name}'" if input_name else "")
                text = str(err.get("message") or "invalid")
                details = str(err.get("details") or "")
                if input_name and details.startswith(f"{input_name}: "):
                    details = details[len(input_name) + 2:]
                if details and details != input_name:
                    text = f"{text}: {details}"
                parts.append(f"{where}: {text}")
    if parts:
        return "ComfyUI rejected the prompt: " + "; ".join(parts)
    error = body.get("error")
    if isinstance(error, Mapping):
        message = str(error.get("message") or "invalid prompt")
        hint = str(error.get("details") or "")
        return f"ComfyUI rejected the prompt: {message}" + (f" ({hint})" if hint and hint != message else "")
    return "ComfyUI rejected the prompt"


def queue_ids(body: object) -> tuple[set[str], set[str]]:
    """(running, pending) prompt ids from a `/queue` answer."""
    def ids(key: str) -> set[str]:
        items = body.get(key) if isinstance(body, Mapping) else None
        return {str(item[1]) for item in items or () if isinstance(item, list) and len(item) > 1}

    return ids("queue_running"), ids("queue_pending")
