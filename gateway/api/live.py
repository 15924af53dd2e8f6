"""Server-Sent Events: one job's changes, progress and previews; new images for the gallery.

A stream starts with the current state, so a late subscriber misses nothing that matters; comment
lines keep idle connections open through proxies. Each message is rendered once for all streams.
"""

from __future__ import annotations

import base64
import functools
import json
import logging

from aiohttp import web

from gateway.api.records import image_item, job_record, progress_out
from gateway.api.state import HUB, OUTPUTS, STORE
from gateway.api.validation import query_flag
from gateway.errors import JobNotFound
from gateway.events import IMAGES, Message, Subscription
from gateway.jobs import TERMINAL
from gateway.outputs import ResultUrls

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
"""Idle streams get a comment this often: proxies close connections silent for longer."""


def _render(message: Message, *, urls: ResultUrls) -> str:
    """The `event:` and `data:` lines of one message (the `id:` line is per stream)."""
    match message.event:
        case "job" | "end":
            job, position = message.payload
            data = job_record(job, urls=urls, queue_position=position).model_dump_json()
        case "queue":
            data = json.dumps({"queue_position": message.payload})
        case "progress":
            data = progress_out(message.payload).model_dump_json()
        case "preview":
            image, mime = message.payload
            data = json.dumps({"image": f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"})
        case "image":
            job, index = message.payload
            data = image_item(f"{job.id}-{index}", job, job.images[index], job.finished_at or 0.0,
                              urls=urls).model_dump_json()
        case _:  # pragma: no cover - every published event is rendered above
            raise ValueError(f"unknown event {message.event}")
    return f"event: {message.event}\ndata: {data}\n\n"


class _Stream:
    def __init__(self, response: web.StreamResponse) -> None:
        self._response = response
        self._id = 0

    async def send(self, frame: str) -> None:
        self._id += 1
        await self._response.write(f"id: {self._id}\n{frame}".encode())

    async def comment(self, text: str) -> None:
        await self._response.write(f": {text}\n\n".encode())


async def _open(request: web.Request) -> tuple[web.StreamResponse, _Stream]:
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
    })
    await response.prepare(request)
    return response, _Stream(response)


async def _pump(stream: _Stream, sub: Subscription, urls: ResultUrls) -> None:
    """Forward messages until `end` (sent) or `close`; keep-alive comments while idle.

    Once the stream has started no error answer can be sent: a failure ends the stream, which
    EventSource clients reconnect to, getting the current state first.
    """
    try:
        while True:
            message = await sub.next(KEEPALIVE_SECONDS)
            if message is None:
                await stream.comment("keep-alive")
                continue
            if message.event == "close":
                return
            await stream.send(message.render("sse", functools.partial(_render, urls=urls)))
            if message.event == "end":
                return
    except ConnectionError:  # the client went away
        return
    except Exception:
        log.exception("event stream of %s failed", sub.topic)


async def job_events(request: web.Request) -> web.StreamResponse:
    """`GET /api/v1/job/<id>/events[?previews=1]`: the job's record, then its changes, to the end."""
    job_id = request.match_info["job_id"]
    previews = query_flag(request, "previews")
    hub, store = request.app[HUB], request.app[STORE]
    with hub.subscribe(job_id, previews=previews) as sub:  # before reading: no change falls in between
        job = await store.get(job_id)
        if job is None:
            raise JobNotFound(f"no job with id '{job_id}'", job_id=job_id)
        position = None
        if job.gaze_status == "pending":  # the only time a job has a place in the queue
            position = (await store.queue_positions([job_id])).get(job_id)
        record = job_record(job, urls=request.app[OUTPUTS], queue_position=position, progress=hub.progress(job_id))
        response, stream = await _open(request)
        await stream.send(f"event: job\ndata: {record.model_dump_json()}\n\n")
        if job.state in TERMINAL:
            await stream.send(f"event: end\ndata: {record.model_dump_json()}\n\n")
            return response
        hub.watch_queue(job, position)
        await _pump(stream, sub, request.app[OUTPUTS])
    return response


async def image_events(request: web.Request) -> web.StreamResponse:
    """`GET /api/v1/images/events`: each new result image, as it is stored."""
    with request.app[HUB].subscribe(IMAGES) as sub:
        response, stream = await _open(request)
        await stream.comment("new images follow")
        await _pump(stream, sub, request.app[OUTPUTS])
    return response


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/job/{job_id}/events", job_events),
        web.get("/api/v1/images/events", image_events),
    ]

