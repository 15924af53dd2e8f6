"""Feeds ComfyUI from the durable queue, applies its websocket events, finishes jobs.

The only module (with its parts in `gateway.dispatch`, one concept each) that sees store,
compiler and client together. Rules it keeps:
- A job is marked `submitted` on disk *before* it is posted, under `prompt_id` = job id, so after
  any crash its fate can be asked of ComfyUI and it is never posted twice by accident.
- At most `max_in_flight` prompts sit in ComfyUI; the rest wait in the store. The next one is
  chosen by `gateway.scheduling` (priority, then checkpoint affinity within a fairness bound).
- The chosen job is claimed from the store (`Store.claim`: by id, only if still queued), so
  several gateways sharing one database each take a job once; a claim that loses to another
  gateway chooses again. A claimed job belongs to this dispatcher (its owner is the ComfyUI
  client id) while it is in ComfyUI; a heartbeat keeps that lease, and takes over the jobs of a
  gateway whose lease ran out, settling them from ComfyUI's queue and history.
- A prompt ComfyUI has finished leaves its slot at once, while its images are still being
  collected, so the next one is posted without waiting for downloads and disk writes.
- Websocket events drive state. After every (re)connection, jobs ComfyUI may have finished
  meanwhile are settled from `/history`; jobs it no longer knows (restarted) are queued again.
- A job that runs past its deadline is interrupted in ComfyUI and failed.
- A job that hears nothing for `stale_after` seconds is settled from `/queue` and `/history`:
  a silent or mis-routed websocket delays a result, it never loses one.
- Beside other backends (`lost_after` set, see gateway.fleet), a ComfyUI unreachable for
  `lost_after` seconds is declared lost: its jobs are queued again for the others, and when it
  comes back those prompts are taken out of it before it is fed again.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from gateway.comfy.client import ComfyClient
from gateway.dispatch.comfy_events import EventHandling
from gateway.dispatch.control import Control
from gateway.dispatch.deadlines import Deadlines
from gateway.dispatch.feeding import Feeding
from gateway.dispatch.inflight import CANCELLED, Tracked
from gateway.dispatch.lease import Lease
from gateway.events import Hub
from gateway.jobs import Job, State
from gateway.models import Preset
from gateway.outputs import OutputStore, ReferenceStore
from gateway.scheduling import Fairness
from gateway.storage import Store

__all__ = ["CANCELLED", "FIRST_COME", "Backend", "BackendState", "Dispatcher"]

DURATIONS_KEPT = 50
"""Run times kept for estimates: enough for a stable median, few enough to follow a model change."""
FIRST_COME = Fairness(max_skips=0, max_wait=0.0)

BackendState = Literal["idle", "loading", "running", "errored", "unreachable"]


@dataclass(frozen=True)
class Backend:
    """What the dispatcher knows of its ComfyUI, for the status route."""

    name: str
    url: str
    max_in_flight: int
    state: BackendState
    message: str
    version: str | None
    loaded_checkpoint: str | None
    model_swaps: int
    running_job: str | None
    in_flight: int
    durations: tuple[float, ...]
    """Run times of the latest done jobs, newest first."""

    @property
    def job_seconds(self) -> float | None:
        return statistics.median(self.durations) if self.durations else None


class Dispatcher(Feeding, EventHandling, Deadlines, Lease, Control):
    def __init__(
        self, *, store: Store, client: ComfyClient, outputs: OutputStore,
        presets: Callable[[], Mapping[str, Preset]], max_in_flight: int = 2, job_timeout: float = 600.0,
        max_attempts: int = 3, retry_delay: float = 1.0, stale_after: float = 10.0,
        hub: Hub | None = None, preview_method: str | None = None, clock: Callable[[], float] = time.time,
        references: ReferenceStore | None = None, lease: float = 30.0,
        fairness: Fairness = FIRST_COME, owner: str | None = None, lost_after: float | None = None,
        name: str | None = None, on_result: Callable[[float], None] | None = None,
    ) -> None:
        """`on_result` is told, for each job done, the seconds from ComfyUI's end of its prompt
        to the job stored as done (its images downloaded and written)."""
        self.name = name or client.base_url
        self._lease = lease
        self._owner = owner or client.client_id
        self._lost_after = lost_after
        self._disconnected_since: float | None = clock()
        self._abandoned: set[str] = set()
        """Jobs queued again while this ComfyUI was lost: withdrawn from it when it comes back."""
        self._references = references
        self._store = store
        self._client = client
        self._outputs = outputs
        self._presets = presets
        self._max_in_flight = max_in_flight
        self._job_timeout = job_timeout
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay
        self._stale_after = stale_after
        self._fairness = fairness
        self._clock = clock
        self._on_result = on_result
        self._hub = hub if hub is not None else Hub()
        self._extra_data = {"preview_method": preview_method} if preview_method else None
        self._tracked: dict[str, Tracked] = {}
        self._wake = asyncio.Event()
        self._connected = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: str | None = None
        """The job ComfyUI is executing now (previews without a prompt id are its)."""
        self._disconnect_reason = "not connected yet"
        self._version: str | None = None
        self._loaded_checkpoint: str | None = None
        self._model_swaps = 0
        self._last_error: str | None = None
        self._durations: deque[float] = deque(maxlen=DURATIONS_KEPT)

    @property
    def backend(self) -> Backend:
        """A snapshot of the ComfyUI backend's state."""
        running = self._tracked.get(self._running or "")
        state: BackendState
        if not self._connected:
            state, message = "unreachable", f"ComfyUI is unreachable: {self._disconnect_reason}"
        elif running is not None and running.node is not None and self._is_loader(running):
            state, message = "loading", f"loading {running.checkpoint or 'models'}"
        elif running is not None:
            state, message = "running", f"running job {running.job_id}"
        elif self._last_error is not None:
            state, message = "errored", f"the last job failed in ComfyUI: {self._last_error}"
        else:
            state, message = "idle", "waiting for work"
        return Backend(
            name=self.name, url=self._client.base_url, max_in_flight=self._max_in_flight, state=state,
            message=message, version=self._version, loaded_checkpoint=self._loaded_checkpoint,
            model_swaps=self._model_swaps, running_job=self._running, in_flight=len(self._tracked),
            durations=tuple(reversed(self._durations)),
        )

    @property
    def in_flight(self) -> int:
        """Prompts the gateway has in ComfyUI now."""
        return len(self._tracked)

    def followed(self) -> list[str]:
        """The jobs this dispatcher has in its ComfyUI."""
        return list(self._tracked)

    def now(self) -> float:
        return self._clock()

    async def withdraw(self, job_id: str) -> None:
        """Take one prompt out of this ComfyUI, whoever submitted it."""
        await self._withdraw(job_id)

    def follows(self, job_id: str) -> bool:
        """Whether this dispatcher has the job in its ComfyUI."""
        return job_id in self._tracked

    @property
    def connected(self) -> bool:
        """Whether the websocket to ComfyUI is up."""
        return self._connected

    async def run(self, *, until_idle: bool = False) -> None:
        """Dispatch forever, or (`until_idle`) until no job is queued or in ComfyUI."""
        self._durations.extend(reversed(await self._store.recent_durations(DURATIONS_KEPT)))
        for job in await self._store.in_comfy(owner=self._owner):
            self._track_stored(job)
        for job in await self._store.heartbeat(self._owner, self._clock(), self._lease):
            self._track_stored(job)  # the connection's reconcile settles them with the rest
        events = asyncio.create_task(self._consume_events(), name="comfy-events")
        watchdog = asyncio.create_task(self._watch_deadlines(), name="deadlines")
        heartbeat = asyncio.create_task(self._keep_lease(), name="lease")
        try:
            await self._feed(until_idle)
        finally:
            for task in (events, watchdog, heartbeat, *self._tasks):
                task.cancel()
            await asyncio.gather(events, watchdog, heartbeat, *self._tasks, return_exceptions=True)
            await self._outputs.close()  # thumbnails being made

    def jobs_changed(self, changes: list[tuple[Job, State | None]]) -> None:
        """A store listener: jobs queued by any gateway sharing the database wake the feeder."""
        if any(job.state is State.QUEUED for job, _ in changes):
            self.wake()
