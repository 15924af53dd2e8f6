"""A job's event stream as typed events, across reconnects (pure).

`GET /api/v1/job/<id>/events` sends `job` (the record, first and at each status change), `queue`,
`progress`, `preview` (opt-in) and finally `end` (the final record). Event names this client does not
know arrive as `OtherEvent`, so a newer gateway does not break it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gateway.models import JobProgress, JobRecord, PreviewOut, QueuePositionOut
from gateway.sdk.calls import API, segment
from gateway.sdk.errors import ClientError, StreamLost
from gateway.sdk.sse import ServerSentEvent, SSEDecoder


@dataclass(frozen=True)
class JobUpdate:
    """The job's record: the first event of every stream, then again at each status change."""

    job: JobRecord


@dataclass(frozen=True)
class QueueUpdate:
    queue_position: int


@dataclass(frozen=True)
class ProgressUpdate:
    progress: JobProgress


@dataclass(frozen=True)
class PreviewImage:
    image: str
    """A data URL, e.g. `data:image/jpeg;base64,...`."""

    def content(self) -> bytes:
        return base64.b64decode(self.image.partition(",")[2])


@dataclass(frozen=True)
class JobEnd:
    """The final record (status done or failed); the stream ends after it."""

    job: JobRecord


@dataclass(frozen=True)
class OtherEvent:
    event: str
    data: str


JobEvent = JobUpdate | QueueUpdate | ProgressUpdate | PreviewImage | JobEnd | OtherEvent

_KNOWN = {"job", "end", "queue", "progress", "preview"}


def parse_job_event(sse: ServerSentEvent) -> JobEvent:
    """The typed event of one server-sent event; `ClientError` when a known event's data is malformed."""
    try:
        data: Any = json.loads(sse.data) if sse.event in _KNOWN else None
        if sse.event == "job":
            return JobUpdate(JobRecord.model_validate(data))
        if sse.event == "end":
            return JobEnd(JobRecord.model_validate(data))
        if sse.event == "queue":
            return QueueUpdate(QueuePositionOut.model_validate(data).queue_position)
        if sse.event == "progress":
            return ProgressUpdate(JobProgress.model_validate(data))
        if sse.event == "preview":
            return PreviewImage(PreviewOut.model_validate(data).image)
    except (ValueError, ValidationError) as exc:
        raise ClientError(f"malformed '{sse.event}' event from the gateway: {exc}") from exc
    return OtherEvent(sse.event, sse.data)


class JobStream:
    """Where one job's stream is read from, what it delivered, and whether to connect again.

    A stream that closes before `end` is opened again (the gateway sends the current record first);
    after `max_reconnects` connections in a row that delivered nothing, `StreamLost`.
    """

    DEFAULT_DELAY = 1.0

    def __init__(self, job_id: str, *, previews: bool = False, max_reconnects: int = 3) -> None:
        self.path = f"{API}/job/{segment(job_id)}/events"
        self.params: dict[str, str | int] = {"previews": 1} if previews else {}
        self.finished = False
        self._decoder = SSEDecoder()
        self._max_reconnects = max_reconnects
        self._fruitless = 0

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self._decoder.last_event_id:
            headers["Last-Event-ID"] = self._decoder.last_event_id
        return headers

    def feed(self, text: str) -> list[JobEvent]:
        """The events completed by this text; none after `end`."""
        events: list[JobEvent] = []
        for sse in self._decoder.feed(text):
            if self.finished:
                break
            event = parse_job_event(sse)
            events.append(event)
            self._fruitless = 0
            self.finished = isinstance(event, JobEnd)
        return events

    def closed(self) -> float:
        """The stream closed before `end`: seconds to wait before connecting again, or `StreamLost`."""
        self._fruitless += 1
        if self._fruitless > self._max_reconnects:
            raise StreamLost(f"the event stream of {self.path} kept closing before the job ended")
        retry = self._decoder.retry
        return self.DEFAULT_DELAY if retry is None else retry / 1000
