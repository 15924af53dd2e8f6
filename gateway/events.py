"""Live events for watchers: job changes, queue positions, sampler progress, previews, new images.

In memory and in process; the store stays the truth. Publishers (the store's change listener, the
dispatcher) never wait: each subscriber has its own small buffer, and only the latest `progress`
and `preview` are kept when a reader lags. Job changes are never dropped. Messages carry objects;
each is rendered once (`Message.rendered`), whatever the number of subscribers.

Topics are job ids, plus `IMAGES` for the gallery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from gateway.jobs import TERMINAL, Job, State

log = logging.getLogger(__name__)

IMAGES = "images"
"""The gallery's topic: one `image` message per new result image."""
LOSSY = frozenset({"progress", "preview", "queue"})
"""Events where only the latest matters: a lagging reader skips to it."""
PENDING = frozenset({State.QUEUED, State.SUBMITTED})


@dataclass(frozen=True)
class Progress:
    """Where a running job is: the current node and its sampler steps."""

    step: int = 0
    total_steps: int = 0
    node: str | None = None
    node_type: str | None = None

    @property
    def percent(self) -> float:
        return round(100.0 * self.step / self.total_steps, 1) if self.total_steps else 0.0


@dataclass
class Message:
    event: str
    """job | end (payload: the job and its queue position) | queue | progress | preview | image"""
    payload: Any
    rendered: dict[str, str] = field(default_factory=dict)
    """Cache for renderers: one rendering per message, however many subscribers."""

    def render(self, key: str, render: Callable[[Message], str]) -> str:
        text = self.rendered.get(key)
        if text is None:
            text = self.rendered[key] = render(self)
        return text


class Subscription:
    """One reader's buffer on one topic."""

    def __init__(self, topic: str, *, previews: bool) -> None:
        self.topic = topic
        self.previews = previews
        self._buffer: deque[Message] = deque()
        self._ready = asyncio.Event()

    def push(self, message: Message) -> None:
        if message.event in LOSSY:
            for i in range(len(self._buffer) - 1, -1, -1):
                if self._buffer[i].event == message.event:
                    del self._buffer[i]
                    break
        self._buffer.append(message)
        self._ready.set()

    async def next(self, timeout: float) -> Message | None:
        """The next message, or None if none came within `timeout` seconds."""
        if not self._buffer:
            self._ready.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                return None
        return self._buffer.popleft()


class Hub:
    """Fan-out of live events. `queue_positions` (injected) answers 1-based places of waiting jobs."""

    def __init__(
        self, *, queue_positions: Callable[[list[str]], Awaitable[dict[str, int]]] | None = None,
        preview_interval: float = 0.5, queue_interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._topics: dict[str, set[Subscription]] = {}
        self._progress: dict[str, Progress] = {}
        self._pending: set[str] = set()
        """Watched jobs last seen waiting: their queue position is kept up to date."""
        self._positions: dict[str, int] = {}
        self._last_preview: dict[str, float] = {}
        self._queue_positions = queue_positions
        self._preview_interval = preview_interval
        self._queue_interval = queue_interval
        self._queue_moved = asyncio.Event()
        self._clock = clock

    # --- subscribing -----------------------------------------------------------------------

    @contextmanager
    def subscribe(self, topic: str, *, previews: bool = False) -> Iterator[Subscription]:
        sub = Subscription(topic, previews=previews)
        self._topics.setdefault(topic, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self._topics.get(topic)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._topics[topic]
                    self._pending.discard(topic)
                    self._positions.pop(topic, None)

    def watch_queue(self, job: Job, position: int | None) -> None:
        """A subscriber of a waiting job (now at `position`) wants its queue position followed."""
        if job.state in PENDING:
            self._pending.add(job.id)
            if position is not None:
                self._positions.setdefault(job.id, position)
            self._queue_moved.set()

    def subscribers(self, topic: str) -> int:
        return len(self._topics.get(topic, ()))

    def wants_previews(self, topic: str) -> bool:
        return any(s.previews for s in self._topics.get(topic, ()))

    # --- publishing ------------------------------------------------------------------------

    def _publish(self, topic: str, message: Message, *, previews_only: bool = False) -> None:
        for sub in self._topics.get(topic, ()):
            if sub.previews or not previews_only:
                sub.push(message)

    def job_changed(self, job: Job, previous: State | None) -> None:
        """Called by the store after a job's change is committed."""
        left_queue = previous in PENDING and job.state not in PENDING
        requeued = job.state is State.QUEUED and previous is not None
        if left_queue or requeued:  # everyone behind it moved up (or a requeued job went back in front)
            self._queue_moved.set()
        if job.state is not State.RUNNING:
            self._progress.pop(job.id, None)
        if job.state in TERMINAL:
            self._last_preview.pop(job.id, None)
        if job.id in self._topics:
            if job.state not in PENDING:
                self._pending.discard(job.id)
                self._positions.pop(job.id, None)
            # a change while waiting (e.g. handed to ComfyUI's queue) keeps the last known place
            event = "end" if job.state in TERMINAL else "job"
            self._publish(job.id, Message(event, (job, self._positions.get(job.id))))
        if job.state is State.DONE and job.images and IMAGES in self._topics:
            for index in range(len(job.images)):
                self._publish(IMAGES, Message("image", (job, index)))

    def jobs_changed(self, jobs: Iterable[tuple[Job, State | None]]) -> None:
        for job, previous in jobs:
            self.job_changed(job, previous)

    def close(self) -> None:
        """The gateway is stopping: every subscriber gets `close` and should end its stream."""
        for subs in self._topics.values():
            for sub in subs:
                sub.push(Message("close", None))

    def progress(self, job_id: str) -> Progress | None:
        return self._progress.get(job_id)

    def set_progress(self, job_id: str, progress: Progress) -> None:
        if self._progress.get(job_id) == progress:
            return
        self._progress[job_id] = progress
        self._publish(job_id, Message("progress", progress))

    def preview(self, job_id: str, image: bytes, mime: str) -> None:
        """Offer a preview image: passed on to preview subscribers, at most one per interval."""
        if not self.wants_previews(job_id):
            return
        now = self._clock()
        if now - self._last_preview.get(job_id, -self._preview_interval) < self._preview_interval:
            return
        self._last_preview[job_id] = now
        self._publish(job_id, Message("preview", (image, mime)), previews_only=True)

    # --- queue positions -------------------------------------------------------------------

    async def run(self) -> None:
        """Keep watched waiting jobs' queue positions current, at most every `queue_interval`."""
        while True:
            await self._queue_moved.wait()
            self._queue_moved.clear()
            try:
                await self.refresh_positions()
            except Exception:  # positions are a courtesy: a failure must not stop the loop
                log.exception("refreshing queue positions failed")
            await asyncio.sleep(self._queue_interval)

    async def refresh_positions(self) -> None:
        if not self._pending or self._queue_positions is None:
            return
        positions = await self._queue_positions(sorted(self._pending))
        for job_id in list(self._pending):
            position = positions.get(job_id)
            if position is not None and self._positions.get(job_id) != position:
                self._positions[job_id] = position
                self._publish(job_id, Message("queue", position))
