"""A `text/event-stream` decoder, as the HTML standard's "interpreting an event stream" says (pure).

Feed it text as it arrives, in chunks of any size; it answers the events completed so far. Lines end
in CRLF, LF or CR (a CR at the end of one chunk and an LF at the start of the next are one line end);
`:` starts a comment; `data` lines join with LF; `id` persists from event to event; `retry` sets the
reconnection delay; an event without data is not dispatched; a leading BOM is dropped; an event the
stream ends in the middle of is never dispatched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str = ""
    """The last event id in effect when this event was dispatched."""


class SSEDecoder:
    """Turns a stream of text into `ServerSentEvent`s. `last_event_id` and `retry` (ms) are public."""

    def __init__(self) -> None:
        self.last_event_id = ""
        self.retry: int | None = None
        self._partial = ""
        self._started = False
        self._after_cr = False
        self._event = ""
        self._data: list[str] = []

    def feed(self, text: str) -> list[ServerSentEvent]:
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        *lines, self._partial = _LINE_END.split(self._partial + text)
        self._after_cr = bool(lines) and text.endswith("\r")
        events = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerSentEvent(event=event or "message", data="\n".join(data), id=self.last_event_id)
