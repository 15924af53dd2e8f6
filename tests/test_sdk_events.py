"""A job's event stream as typed events (pure): parsing, reconnect decisions, what a progress line says."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.models import JobProgress, JobRecord
from gateway.sdk.errors import ClientError, StreamLost
from gateway.sdk.events import (
    JobEnd,
    JobEvent,
    JobStream,
    JobUpdate,
    OtherEvent,
    PreviewImage,
    ProgressUpdate,
    QueueUpdate,
    parse_job_event,
)
from gateway.sdk.sse import ServerSentEvent
from gateway.sdk.view import JobLine


def record(status: str = "pending", **changes: Any) -> dict[str, Any]:
    return {"id": "j1", "label": "Preset: X", "status": status, "error": None, "result": None, "preset": "x",
            "params": {"seed": 5}, "images": [], "created_at": "2026-01-01T00:00:00.000Z", "started_at": None,
            "finished_at": None, **changes}


PROGRESS = {"step": 5, "total_steps": 20, "percent": 25.0, "node": "3", "node_type": "KSampler"}


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("job", record(), JobUpdate(JobRecord.model_validate(record()))),
    ("end", record("done"), JobEnd(JobRecord.model_validate(record("done")))),
    ("queue", {"queue_position": 3}, QueueUpdate(3)),
    ("progress", PROGRESS, ProgressUpdate(JobProgress.model_validate(PROGRESS))),
    ("preview", {"image": "data:image/jpeg;base64,/9j/"}, PreviewImage("data:image/jpeg;base64,/9j/")),
    ("gallery", {"x": 1}, OtherEvent("gallery", '{"x": 1}')),
])
def test_parse_job_event(name: str, data: Any, expected: JobEvent) -> None:
    assert parse_job_event(ServerSentEvent(name, json.dumps(data))) == expected


@pytest.mark.parametrize(("name", "data"), [
    ("job", "{not json"), ("job", '{"id": "j1"}'), ("queue", "{}"), ("queue", '{"queue_position": "x"}'),
    ("progress", '{"step": 1}'), ("preview", "[]"),
])
def test_a_malformed_known_event_is_a_client_error(name: str, data: str) -> None:
    with pytest.raises(ClientError, match=f"malformed '{name}' event"):
        parse_job_event(ServerSentEvent(name, data))


def test_preview_content_is_the_decoded_image() -> None:
    assert PreviewImage("data:image/jpeg;base64,/9j/4A==").content() == b"\xff\xd8\xff\xe0"


def sse(name: str, data: Any, event_id: str = "") -> str:
    return (f"id: {event_id}\n" if event_id else "") + f"event: {name}\ndata: {json.dumps(data)}\n\n"


def test_stream_ends_at_end_and_ignores_what_follows() -> None:
    stream = JobStream("j1")
    events = stream.feed(sse("job", record()) + ": keep-alive\n\n" + sse("queue", {"queue_position": 1}))
    assert [type(e) for e in events] == [JobUpdate, QueueUpdate] and not stream.finished
    events = stream.feed(sse("end", record("done")) + sse("queue", {"queue_position": 9}))
    assert [type(e) for e in events] == [JobEnd] and stream.finished


def test_stream_path_escapes_the_id_and_asks_for_previews() -> None:
    stream = JobStream("../x y", previews=True)
    assert stream.path == "/api/v1/job/..%2Fx%20y/events"
    assert stream.params == {"previews": 1}
    assert JobStream("j").params == {}


def test_reconnects_send_the_last_event_id_and_wait_as_told() -> None:
    stream = JobStream("j1")
    assert stream.headers() == {"Accept": "text/event-stream"}
    assert stream.closed() == JobStream.DEFAULT_DELAY
    stream.feed("retry: 250\n" + sse("job", record(), event_id="4"))
    assert stream.headers()["Last-Event-ID"] == "4"
    assert stream.closed() == 0.25


def test_a_stream_that_keeps_closing_without_events_is_lost() -> None:
    stream = JobStream("j1", max_reconnects=2)
    stream.closed()
    stream.feed(sse("job", record()))  # delivered something: the count starts again
    stream.closed()
    stream.closed()
    with pytest.raises(StreamLost):
        stream.closed()


def progress(step: int, total: int, node_type: str | None = "KSampler") -> ProgressUpdate:
    return ProgressUpdate(JobProgress(step=step, total_steps=total, percent=0.0, node="3", node_type=node_type))


@pytest.mark.parametrize(("events", "state", "step", "total"), [
    ([], "queued", 0, 0),
    ([JobUpdate(JobRecord.model_validate(record()))], "waiting", 0, 0),
    ([QueueUpdate(3)], "waiting, #3 in queue", 0, 0),
    ([JobUpdate(JobRecord.model_validate(record(queue_position=2)))], "waiting, #2 in queue", 0, 0),
    ([QueueUpdate(2), JobUpdate(JobRecord.model_validate(record()))], "waiting, #2 in queue", 0, 0),
    ([JobUpdate(JobRecord.model_validate(record("processing", progress=PROGRESS)))], "step 5/20 KSampler", 5, 20),
    ([JobUpdate(JobRecord.model_validate(record("processing")))], "processing", 0, 0),
    ([progress(5, 20)], "step 5/20 KSampler", 5, 20),
    ([progress(0, 0, None)], "processing", 0, 0),
    ([progress(0, 0, "VAEDecode")], "processing VAEDecode", 0, 0),
    ([progress(5, 20), JobEnd(JobRecord.model_validate(record("done")))], "done", 20, 20),
    ([JobEnd(JobRecord.model_validate(record("done")))], "done", 1, 1),
    ([JobEnd(JobRecord.model_validate(record("failed", error="cancelled"))), QueueUpdate(2)], "failed: cancelled",
     0, 0),
    ([JobEnd(JobRecord.model_validate(record("failed"))), progress(1, 2)], "failed: no reason given", 0, 0),
])
def test_job_line(events: list[JobEvent], state: str, step: int, total: int) -> None:
    line = JobLine("#1")
    for event in events:
        line.apply(event)
    assert (line.state, line.step, line.total_steps) == (state, step, total)


@pytest.mark.parametrize(("state", "summary"), [
    ("step 5/20 KSampler", "processing"), ("processing VAEDecode", "processing"), ("waiting, #2 in queue",
    "waiting, #2 in queue"), ("failed: cancelled", "failed: cancelled"), ("done", "done"),
])
def test_a_log_line_leaves_out_nodes_and_steps(state: str, summary: str) -> None:
    assert JobLine("#1", state=state).summary == summary
