"""The text/event-stream decoder against the HTML standard's rules, one row per rule."""

from __future__ import annotations

import pytest

from gateway.sdk.sse import ServerSentEvent, SSEDecoder

E = ServerSentEvent

CASES = [
    ("one event", ["event: job\ndata: {}\n\n"], [E("job", "{}")]),
    ("no event name is message", ["data: x\n\n"], [E("message", "x")]),
    ("data lines join with LF", ["data: a\ndata: b\n\n"], [E("message", "a\nb")]),
    ("empty data line counts", ["data\ndata\n\n"], [E("message", "\n")]),
    ("only one leading space is dropped", ["data:  two\n\n"], [E("message", " two")]),
    ("no space after the colon", ["data:x\n\n"], [E("message", "x")]),
    ("a value may hold colons", ["data: a: b\n\n"], [E("message", "a: b")]),
    ("comments are ignored", [": keep-alive\n\n: hi\ndata: x\n\n"], [E("message", "x")]),
    ("no data, no event", ["event: job\n\n"], []),
    ("event name does not leak into the next event", ["event: job\n\ndata: x\n\n"], [E("message", "x")]),
    ("unknown fields are ignored", ["foo: bar\ndata: x\n\n"], [E("message", "x")]),
    ("CRLF line ends", ["event: end\r\ndata: x\r\n\r\n"], [E("end", "x")]),
    ("CR line ends", ["data: x\r\r"], [E("message", "x")]),
    ("CR and LF split over chunks are one line end", ["data: x\r", "\n\r", "\n"], [E("message", "x")]),
    ("a line split anywhere", ["da", "ta: h", "ello\n", "\n"], [E("message", "hello")]),
    ("one char at a time", list("event: q\ndata: 1\n\n"), [E("q", "1")]),
    ("leading BOM is dropped", ["\ufeffdata: x\n\n"], [E("message", "x")]),
    ("BOM later is data", ["data: \ufeffx\n\n"], [E("message", "\ufeffx")]),
    ("id persists to later events", ["id: 7\ndata: a\n\ndata: b\n\n"],
     [E("message", "a", "7"), E("message", "b", "7")]),
    ("empty id resets it", ["id: 7\ndata: a\n\nid\ndata: b\n\n"], [E("message", "a", "7"), E("message", "b", "")]),
    ("id with NUL is ignored", ["id: 1\ndata: a\n\nid: 2\0\ndata: b\n\n"],
     [E("message", "a", "1"), E("message", "b", "1")]),
    ("an unfinished event is not dispatched", ["data: x\n"], []),
    ("several events in one chunk", ["data: 1\n\ndata: 2\n\n"], [E("message", "1"), E("message", "2")]),
]


@pytest.mark.parametrize(("chunks", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decoder(chunks: list[str], expected: list[ServerSentEvent]) -> None:
    decoder = SSEDecoder()
    assert [event for chunk in chunks for event in decoder.feed(chunk)] == expected


@pytest.mark.parametrize(("line", "retry"), [
    ("retry: 2500", 2500), ("retry: 0", 0), ("retry: 1.5", None), ("retry: -1", None), ("retry: ", None),
    ("retry: ２", None),
])
def test_retry_takes_ascii_digits_only(line: str, retry: int | None) -> None:
    decoder = SSEDecoder()
    assert decoder.feed(f"{line}\n\n") == []
    assert decoder.retry == retry


def test_last_event_id_is_kept_for_reconnects() -> None:
    decoder = SSEDecoder()
    decoder.feed("id: 41\ndata: x\n\nid: 42\n")
    assert decoder.last_event_id == "42"
