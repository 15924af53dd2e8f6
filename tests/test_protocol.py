"""Parsing of ComfyUI's frames and answers, checked on frames recorded from a real server."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from gateway.comfy import protocol as p
from tests.helpers import DATA, load_json

MODELFREE = load_json(DATA / "transcript-modelfree.json")["sections"]
SD15 = load_json(DATA / "transcript-sd15.json")

EXPECTED_TYPE = {
    "status": p.Status, "execution_start": p.ExecutionStart, "execution_cached": p.ExecutionCached,
    "executed": p.Executed, "execution_success": p.ExecutionSuccess, "execution_error": p.ExecutionError,
    "execution_interrupted": p.ExecutionInterrupted, "progress": p.Progress, "progress_state": p.Ignored,
    "feature_flags": p.Ignored,
}


def recorded_text_frames() -> list[dict[str, Any]]:
    frames = []
    for section in MODELFREE.values():
        frames += [m for m in section.get("messages", []) if m.get("frame") == "text"]
    for run in SD15["runs"].values():
        frames += [m for m in run.get("messages", []) if m.get("frame") == "text"]
    return frames


@pytest.mark.parametrize("frame", recorded_text_frames())
def test_every_recorded_text_frame_parses_to_its_type(frame: dict[str, Any]) -> None:
    event = p.parse_text(json.dumps({"type": frame["type"], "data": frame["data"]}))
    if frame["type"] == "executing":
        if frame["data"].get("node") is None:
            assert event == p.Finished(frame["data"]["prompt_id"])
        else:
            assert isinstance(event, p.Executing)
            assert event.node == frame["data"]["node"]
    else:
        assert isinstance(event, EXPECTED_TYPE[frame["type"]])


def test_executed_images_and_start() -> None:
    msgs = MODELFREE["basic_run"]["messages"]
    executed = next(p.parse_text(json.dumps(m)) for m in msgs if m["type"] == "executed")
    assert isinstance(executed, p.Executed)
    assert executed.images == (p.OutputImage("gw_modelfree_00001_.png", "", "output", "2"),)


def test_execution_error_becomes_one_readable_line() -> None:
    msg = next(m for m in MODELFREE["execution_error"]["messages"] if m["type"] == "execution_error")
    event = p.parse_text(json.dumps(msg))
    assert event == p.ExecutionError(
        msg["data"]["prompt_id"], "node 2 (SaveImage) failed: Saving image outside the output folder is not allowed.")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("not json", p.Ignored("invalid-json")),
        ("[1]", p.Ignored("invalid-frame")),
        ('{"type": "executing", "data": {"node": null}}', p.Ignored("executing")),
        ('{"type": "executing", "data": {"node": "3", "display_node": "3"}}', p.Executing(None, "3")),
        ('{"type": "progress", "data": {"value": 2, "max": 4, "prompt_id": "x", "node": "3"}}',
         p.Progress("x", "3", 2, 4)),
        ('{"type": "crystools.monitor", "data": {}}', p.Ignored("crystools.monitor")),
        ('{"type": "executed", "data": {"node": "9"}}', p.Ignored("executed")),
    ],
)
def test_text_edge_cases(raw: str, expected: p.WsEvent) -> None:
    assert p.parse_text(raw) == expected


def test_binary_previews() -> None:
    jpeg = b"\xff\xd8\xff\xe0rest"
    assert p.parse_binary(struct.pack(">II", 1, 1) + jpeg) == p.Preview(jpeg, "image/jpeg")
    meta = json.dumps({"node_id": "3", "prompt_id": "x", "image_type": "image/jpeg"}).encode()
    framed = struct.pack(">II", 4, len(meta)) + meta + jpeg
    assert p.parse_binary(framed) == p.Preview(jpeg, "image/jpeg", prompt_id="x", node="3")
    assert p.parse_binary(b"\x00\x00") == p.Ignored("binary-short")
    assert p.parse_binary(struct.pack(">II", 4, 99) + b"{") == p.Ignored("binary-metadata")


def test_history_success_error_interrupt_and_unknown() -> None:
    basic = MODELFREE["basic_run"]["history"]["json"]
    pid = next(iter(basic))
    entry = p.parse_history(pid, basic)
    assert entry is not None and entry.succeeded and entry.error is None
    assert [i.filename for i in entry.images] == ["gw_modelfree_00001_.png"]

    failed = MODELFREE["execution_error"]["history"]["json"]
    pid = next(iter(failed))
    entry = p.parse_history(pid, failed)
    assert entry is not None and not entry.succeeded
    assert entry.error == "node 2 (SaveImage) failed: Saving image outside the output folder is not allowed."

    interrupted = MODELFREE["queue_interrupt_history"]["GET /history/<interrupted id>"]["json"]
    pid = next(iter(interrupted))
    entry = p.parse_history(pid, interrupted)
    assert entry is not None and entry.interrupted and entry.error == "interrupted"

    unknown = MODELFREE["queue_interrupt_history"]["GET /history/<nonexistent id>"]["json"]
    assert p.parse_history("nope", unknown) is None


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("nonexistent_class", "ComfyUI rejected the prompt: Cannot execute because node NoSuchNode does not exist."),
        ("bad_combo_value",
         "node 1 (CheckpointLoaderSimple) input 'ckpt_name': Value not in list: 'nope.safetensors' not in []"),
        ("missing_required_input", "node 2 (SaveImage) input 'images': Required input is missing"),
        ("value_out_of_range", "node 1 (EmptyImage) input 'width'"),
        ("no_output_node", "ComfyUI rejected the prompt: Prompt has no outputs"),
    ],
)
def test_rejection_messages_from_recorded_answers(case: str, expected: str) -> None:
    body = MODELFREE["validation_errors"][case]["response"]["json"]
    assert expected in p.rejection_message(body)


def test_queue_ids() -> None:
    busy = MODELFREE["queue_interrupt_history"]["GET /queue busy"]["json"]
    running, pending = p.queue_ids(busy)
    assert len(running) == 1 and len(pending) >= 1
    assert p.queue_ids({}) == (set(), set())
