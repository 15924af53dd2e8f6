"""Feeds ComfyUI from the durable queue, applies its websocket events, finishes jobs.

The only module that sees store, compiler and client together. Rules it keeps:
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
import logging
import statistics
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.bindings import reference_param
from gateway.comfy import protocol
from gateway.comfy.client import ComfyClient, Connected, Disconnected
from gateway.compiler import compile_prompt
from gateway.errors import ComfyRejected, ComfyUnavailable
from gateway.events import Hub, Progress
from gateway.jobs import TERMINAL, Complete, Fail, Job, Requeue, Start, State, StoredImage, transition
from gateway.models import ParamValue, Preset
from gateway.outputs import OutputStore, ReferenceStore
from gateway.scheduling import Fairness, choose
from gateway.storage import Store

log = logging.getLogger(__name__)

CANCELLED = "cancelled"
DURATIONS_KEPT = 50
"""Run times kept for estimates: enough for a stable median, few enough to follow a model change."""
SCHEDULING_WINDOW = 32
"""Waiting jobs looked at when choosing the next one: the head of the queue, never all of it."""
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


@dataclass
class _Tracked:
    """What the dispatcher knows of a job that ComfyUI has, beyond the store."""

    job_id: str
    preset: str
    submitted_at: float
    started_at: float | None = None
    posted: bool = False
    """The POST returned: ComfyUI has the prompt in its queue or history."""
    seen_start: bool = False
    """`execution_start` came on the current connection, so `executed` events are complete."""
    images: list[protocol.OutputImage] = field(default_factory=list)
    settling: bool = False
    last_heard: float = 0.0
    """When an event for this job last came (or it was last checked)."""
    checkpoint: str | None = None
    node: str | None = None
    """The node ComfyUI is executing for this job, while it runs."""


class Dispatcher:
    def __init__(
        self, *, store: Store, client: ComfyClient, outputs: OutputStore,
        presets: Callable[[], Mapping[str, Preset]], max_in_flight: int = 2, job_timeout: float = 600.0,
        max_attempts: int = 3, retry_delay: float = 1.0, stale_after: float = 10.0,
        hub: Hub | None = None, preview_method: str | None = None, clock: Callable[[], float] = time.time,
        references: ReferenceStore | None = None, lease: float = 30.0,
        fairness: Fairness = FIRST_COME, owner: str | None = None, lost_after: float | None = None,
        name: str | None = None,
    ) -> None:
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
        self._hub = hub if hub is not None else Hub()
        self._extra_data = {"preview_method": preview_method} if preview_method else None
        self._tracked: dict[str, _Tracked] = {}
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

    def _in_comfy(self) -> int:
        """Prompts ComfyUI holds (queued or running): tracked jobs not yet being collected."""
        return sum(not tracked.settling for tracked in self._tracked.values())

    def _settle(self, tracked: _Tracked, images: list[protocol.OutputImage] | None) -> None:
        """ComfyUI is done with this job: free its slot and collect the result."""
        tracked.settling = True
        self.wake()
        self._spawn(self._complete(tracked.job_id, images))

    def _is_loader(self, tracked: _Tracked) -> bool:
        preset = self._presets().get(tracked.preset)
        return preset is not None and any(ref.node_id == tracked.node for ref in preset.bindings.get("checkpoint", ()))

    def _node_type(self, tracked: _Tracked, node: str | None) -> str | None:
        preset = self._presets().get(tracked.preset)
        spec = preset.graph.get(node) if preset is not None and node is not None else None
        class_type = spec.get("class_type") if spec is not None else None
        return class_type if isinstance(class_type, str) else None

    def _loaded(self, checkpoint: str | None) -> None:
        if checkpoint is None or checkpoint == self._loaded_checkpoint:
            return
        if self._loaded_checkpoint is not None:
            self._model_swaps += 1
        self._loaded_checkpoint = checkpoint

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

    def wake(self) -> None:
        """New jobs are queued (or a slot freed): look at the queue again."""
        self._wake.set()

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
            await self._outputs.close()  # thumbnails of finished jobs

    def _track_stored(self, job: Job) -> None:
        """Follow a job the store says ComfyUI has (after a restart, or taken over)."""
        self._tracked[job.id] = _Tracked(job.id, job.preset, job.submitted_at or self._clock(),
                                         started_at=job.started_at, posted=True, last_heard=self._clock(),
                                         checkpoint=_checkpoint(job))

    def jobs_changed(self, changes: list[tuple[Job, State | None]]) -> None:
        """A store listener: jobs queued by any gateway sharing the database wake the feeder."""
        if any(job.state is State.QUEUED for job, _ in changes):
            self.wake()

    async def _keep_lease(self) -> None:
        """Renew this dispatcher's lease on its jobs; take over jobs of gateways that stopped
        renewing theirs; let go of tracked jobs another gateway finished or took."""
        while True:
            await asyncio.sleep(self._lease / 3)
            try:
                watched = [job_id for job_id, t in self._tracked.items() if t.posted and not t.settling]
                adopted = await self._store.heartbeat(self._owner, self._clock(), self._lease)
                for job in adopted:
                    log.warning("took over job %s from a gateway that stopped", job.id)
                    self._track_stored(job)
                if adopted and self._connected:
                    self._spawn(self._reconcile([job.id for job in adopted]))
                mine = {job.id for job in await self._store.in_comfy(owner=self._owner)}
                for job_id in watched:
                    if job_id not in mine and job_id in self._tracked:
                        await self._let_go(job_id)
            except Exception:  # the database may be away for a moment: try again next round
                log.exception("renewing the lease on in-flight jobs failed")

    async def _let_go(self, job_id: str) -> None:
        """Stop following a job that is no longer this dispatcher's; if it was finished elsewhere
        (cancelled through another gateway), take its prompt out of ComfyUI."""
        job = await self._store.get(job_id)
        if self._tracked.pop(job_id, None) is None:
            return
        if self._running == job_id:
            self._running = None
        self.wake()
        if job is not None and job.state in TERMINAL:
            await self._withdraw(job_id)

    # --- feeding ---------------------------------------------------------------------------

    async def _feed(self, until_idle: bool) -> None:
        while True:
            self._wake.clear()
            if self._connected and self._in_comfy() < self._max_in_flight:
                job = await self._next_job()
                if job is not None:
                    await self._submit(job)
                    continue
                if until_idle and not self._tracked:
                    return
            elif until_idle and not self._tracked and not await self._store.count_queued():
                return
            await self._wake.wait()

    async def _next_job(self) -> Job | None:
        """Claim the job to submit now: the queue's head, or a job using the checkpoint that will
        be loaded when it starts (see gateway.scheduling). Jobs it overtakes are counted in the
        same step. If another gateway claims the chosen job first, the choice is made again."""
        while True:
            window = await self._store.queue_window(SCHEDULING_WINDOW if self._fairness.max_skips else 1)
            choice = choose(window, self.expected_checkpoint(), self._clock(), self._fairness)
            if choice is None:
                return None
            job = await self._store.claim(choice.job.id, self._clock(), self._owner, passed=choice.passed)
            if job is None:
                continue  # another gateway took it (or passed a job it passes) meanwhile: the window changed
            if choice.passed:
                log.debug("job %s goes before %d waiting job(s): its checkpoint is loaded", job.id,
                          len(choice.passed), extra=_about(job.id))
            return job

    def expected_checkpoint(self) -> str | None:
        """The checkpoint ComfyUI will have loaded once the prompts in flight are done."""
        for tracked in reversed(self._tracked.values()):
            if tracked.checkpoint is not None:
                return tracked.checkpoint
        return self._loaded_checkpoint

    async def _submit(self, job: Job) -> None:
        """Post a claimed job (stored as submitted: durable before the POST)."""
        preset = self._presets().get(job.preset)
        if preset is None:
            failed = transition(job, Fail(self._clock(), f"preset '{job.preset}' no longer exists"))
            await self._store.save(failed, expect=State.SUBMITTED)
            return
        tracked = self._tracked[job.id] = _Tracked(job.id, job.preset, job.submitted_at or self._clock(),
                                                   last_heard=self._clock(), checkpoint=_checkpoint(job))
        current = await self._store.get(job.id)
        if current is None or current.state is not State.SUBMITTED:  # cancelled between claim and tracking
            self._tracked.pop(job.id, None)
            return
        try:
            params = await self._upload_references(job)
            await self._client.submit(compile_prompt(preset, params, job.id), prompt_id=job.id,
                                      extra_data=self._extra_data)
        except OSError as exc:
            await self._fail(job.id, f"could not read a reference image: {exc.strerror or exc}")
        except ComfyRejected as exc:
            await self._fail(job.id, exc.message)
        except ComfyUnavailable as exc:
            log.warning("submitting job %s failed: %s", job.id, exc.message, extra=_about(job.id))
            if exc.details.get("sent"):
                tracked.posted = True  # maybe it arrived: settle it from ComfyUI's queue and history
                self._spawn(self._reconcile([job.id]))
            else:  # it never reached ComfyUI: not an attempt
                await self._update(job.id, Requeue(self._clock(), reached_comfy=False), finished=True)
            await asyncio.sleep(self._retry_delay)
        else:
            tracked.posted = True
            log.debug("job %s submitted", job.id, extra=_about(job.id))
            if job.id not in self._tracked:  # cancelled while the POST was on its way
                await self._withdraw(job.id)

    async def _upload_references(self, job: Job) -> dict[str, ParamValue]:
        """Upload a job's reference images to ComfyUI; its parameters with the names ComfyUI gave.
        A failed upload means the prompt was not sent."""
        params = dict(job.params)
        if not job.references or self._references is None:
            return params
        for index, name in enumerate(job.references):
            data = await self._references.read(name)
            try:
                params[reference_param(index)] = await self._client.upload_image(data, name)
            except ComfyUnavailable as exc:
                raise ComfyUnavailable(exc.message, sent=False) from exc
        return params

    # --- events ----------------------------------------------------------------------------

    async def _consume_events(self) -> None:
        async for event in self._client.events():
            try:
                await self._apply(event)
            except Exception:  # one bad event must not stop tracking
                prompt_id = getattr(event, "prompt_id", None)
                log.exception("handling ComfyUI event %r failed", event,
                              extra=_about(prompt_id) if isinstance(prompt_id, str) else None)

    async def _apply(self, event: protocol.WsEvent | Connected | Disconnected) -> None:
        heard = self._tracked.get(getattr(event, "prompt_id", None) or "")
        if heard is not None:
            heard.last_heard = self._clock()
        match event:
            case Connected():
                log.info("connected to ComfyUI at %s", self._client.base_url)
                if self._abandoned:  # queued again elsewhere while this one was lost
                    for job_id in sorted(self._abandoned):
                        await self._withdraw(job_id)
                    self._abandoned.clear()
                self._connected = True
                self._disconnected_since = None
                self._running = None
                for tracked in self._tracked.values():
                    tracked.seen_start = False
                    tracked.images.clear()
                self._spawn(self._reconcile(list(self._tracked)))
                self._spawn(self._learn_version())
                self.wake()
            case Disconnected(reason=reason):
                if self._connected:
                    log.warning("lost ComfyUI at %s: %s", self._client.base_url, reason)
                    self._disconnected_since = self._clock()
                self._connected = False
                self._disconnect_reason = reason
            case protocol.ExecutionStart(prompt_id=pid) if pid in self._tracked:
                tracked = self._tracked[pid]
                tracked.seen_start = True
                tracked.images.clear()
                tracked.started_at = self._clock()
                self._running = pid
                await self._update(pid, Start(tracked.started_at))
            case protocol.Executing(prompt_id=pid, node=node) if (pid or self._running) in self._tracked:
                tracked = self._tracked[pid or self._running or ""]
                tracked.node = node
                if self._is_loader(tracked):
                    self._loaded(tracked.checkpoint)
                # steps stay at the last sampler's until another node reports some: a job's bar
                # does not fall back to zero while its image is decoded and saved
                last = self._hub.progress(tracked.job_id) or Progress()
                self._hub.set_progress(tracked.job_id, Progress(step=last.step, total_steps=last.total_steps,
                                                                node=node, node_type=self._node_type(tracked, node)))
            case protocol.Progress(prompt_id=pid, node=node, value=value, max=total) if (
                    (pid or self._running) in self._tracked):
                tracked = self._tracked[pid or self._running or ""]
                node = node or tracked.node
                self._hub.set_progress(tracked.job_id, Progress(step=value, total_steps=total, node=node,
                                                                node_type=self._node_type(tracked, node)))
            case protocol.Preview(image=image, mime=mime, prompt_id=pid) if (pid or self._running) in self._tracked:
                self._hub.preview(pid or self._running or "", image, mime)
            case protocol.Executed(prompt_id=pid, images=images) if pid in self._tracked:
                self._tracked[pid].images.extend(images)
            case protocol.ExecutionError(prompt_id=pid, message=message) if pid in self._tracked:
                self._last_error = message
                await self._fail(pid, message)
            case protocol.ExecutionInterrupted(prompt_id=pid) if pid in self._tracked:
                await self._fail(pid, "interrupted in ComfyUI")
            case protocol.Finished(prompt_id=pid) if pid in self._tracked:
                tracked = self._tracked[pid]
                if self._running == pid:
                    self._running = None
                if tracked.seen_start:
                    self._loaded(tracked.checkpoint)  # its loader ran or was cached: the model is loaded
                if not tracked.settling:
                    self._settle(tracked, list(tracked.images) if tracked.seen_start else None)

    async def _learn_version(self) -> None:
        try:
            stats = await self._client.system_stats()
        except ComfyUnavailable:
            return
        system = stats.get("system")
        version = system.get("comfyui_version") if isinstance(system, dict) else None
        self._version = version if isinstance(version, str) else None

    # --- settling --------------------------------------------------------------------------

    async def _reconcile(self, job_ids: list[str]) -> None:
        """Settle jobs whose events may have been missed, by asking ComfyUI about their ids."""
        candidates = [jid for jid in job_ids if jid in self._tracked and self._tracked[jid].posted]
        if not candidates:
            return
        try:
            running, pending = await self._client.queue()
            for job_id in candidates:
                tracked = self._tracked.get(job_id)
                if tracked is None or tracked.settling or job_id in pending:
                    continue
                if job_id in running:
                    if tracked.started_at is None:
                        tracked.started_at = self._clock()
                        await self._update(job_id, Start(tracked.started_at))
                    continue
                entry = await self._client.history(job_id)
                if job_id not in self._tracked or tracked.settling:
                    continue
                if entry is None:
                    await self._lost(job_id)
                elif entry.succeeded:
                    self._settle(tracked, list(entry.images))
                else:
                    await self._fail(job_id, entry.error or "failed in ComfyUI")
        except ComfyUnavailable as exc:
            log.info("could not settle jobs now (%s); will retry on reconnect", exc.message)

    async def _complete(self, job_id: str, images: list[protocol.OutputImage] | None) -> None:
        """Download a finished job's images, store them, and mark it done (or failed)."""
        tracked = self._tracked.get(job_id)
        if tracked is None:
            return
        try:
            if not images:
                entry = await self._client.history(job_id)
                if entry is None:
                    await self._fail(job_id, "ComfyUI finished the prompt but has no record of it")
                    return
                if not entry.succeeded:
                    await self._fail(job_id, entry.error or "failed in ComfyUI")
                    return
                images = list(entry.images)
            chosen = [i for i in images if i.type == "output"] or images
            if not chosen:
                await self._fail(job_id, "the workflow finished without producing an image")
                return
            stored = []
            for image in chosen:
                data = await self._client.view(image)
                relative = await self._outputs.save(tracked.preset, data, image.filename)
                thumb = self._outputs.thumbnail(relative, data)
                stored.append(StoredImage(relative_path=relative, node_id=image.node_id, thumb_path=thumb))
        except ComfyUnavailable as exc:
            await self._fail(job_id, f"could not download the result from ComfyUI: {exc.message}")
            return
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            await self._fail(job_id, f"could not write the result file: {exc.strerror or exc}{where}")
            return
        finished_at = self._clock()
        if tracked.started_at is not None:
            self._durations.append(finished_at - tracked.started_at)
        self._last_error = None
        await self._update(job_id, Complete(finished_at, tuple(stored)), finished=True)
        log.debug("job %s done", job_id, extra=_about(job_id))

    async def _watch_deadlines(self) -> None:
        """Fail jobs past their deadline; settle jobs that have been silent too long."""
        while True:
            tightest = min((p.timeout for p in self._presets().values() if p.timeout), default=self._job_timeout)
            tightest = min(tightest, self._job_timeout)
            await asyncio.sleep(min(1.0, tightest / 4, self._stale_after / 2))
            now = self._clock()
            stale = []
            for tracked in list(self._tracked.values()):
                if tracked.settling:
                    continue
                timeout = self._timeout_of(tracked.preset)
                if tracked.started_at is not None:
                    deadline = tracked.started_at + timeout
                else:  # waiting behind the other in-flight prompts
                    deadline = tracked.submitted_at + timeout * (self._max_in_flight + 1)
                if now > deadline:
                    await self._time_out(tracked.job_id, timeout)
                elif tracked.posted and now - tracked.last_heard > self._stale_after:
                    tracked.last_heard = now
                    stale.append(tracked.job_id)
            if stale and self._connected:
                self._spawn(self._reconcile(stale))
            await self._give_up_if_lost(now)

    async def _give_up_if_lost(self, now: float) -> None:
        """Queue the jobs of a ComfyUI unreachable for `lost_after` seconds again, for the other
        backends. Their prompt ids are remembered and withdrawn from it when it is back."""
        since = self._disconnected_since
        if self._lost_after is None or self._connected or since is None or now - since < self._lost_after:
            return
        for job_id in [jid for jid, t in self._tracked.items() if not t.settling]:
            if self._tracked[job_id].posted:
                self._abandoned.add(job_id)
            log.warning("ComfyUI at %s unreachable for %g s: job %s queued again for the other backends",
                        self._client.base_url, now - since, job_id, extra=_about(job_id))
            await self._update(job_id, Requeue(now), finished=True)

    def _timeout_of(self, slug: str) -> float:
        preset = self._presets().get(slug)
        return preset.timeout if preset is not None and preset.timeout else self._job_timeout

    async def _time_out(self, job_id: str, timeout: float) -> None:
        await self._fail(job_id, f"timed out: still not finished after {timeout:g} s, interrupted")
        await self._withdraw(job_id)

    async def _withdraw(self, job_id: str) -> None:
        """Take a prompt out of ComfyUI: from its queue if waiting, interrupted if running.
        Only this prompt: other clients' prompts are untouched."""
        try:
            await self._client.delete_queued([job_id])
            await self._client.interrupt(job_id)
        except ComfyUnavailable as exc:
            log.info("could not withdraw job %s from ComfyUI: %s", job_id, exc.message, extra=_about(job_id))

    # --- control ---------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> Job | None:
        """Cancel one job: it reads failed with error "cancelled". Finished jobs are returned as
        they are (cancelling is idempotent); None if there is no such job."""
        while True:
            job = await self._store.get(job_id)
            if job is None or job.state in TERMINAL:
                return job
            if job.state is State.QUEUED:
                cancelled = transition(job, Fail(self._clock(), CANCELLED))
                if await self._store.save(cancelled, expect=State.QUEUED):
                    return cancelled
                continue  # the dispatcher took it just now: cancel it in ComfyUI
            # a job this dispatcher does not follow was posted by another gateway sharing the store
            was_posted = job_id not in self._tracked or self._tracked[job_id].posted
            await self._fail(job_id, CANCELLED)
            if was_posted:
                await self._withdraw(job_id)
            job = await self._store.get(job_id)
            if job is None or job.state in TERMINAL:
                return job
            # it moved on (started) between reading and failing it: the cancellation goes again

    async def cancel_all(self) -> int:
        """Cancel every waiting and running job; returns how many were cancelled."""
        count = await self._store.fail_queued(CANCELLED, self._clock())
        live = [*self._tracked, *(job.id for job in await self._store.in_comfy())]  # any gateway's
        for job_id in dict.fromkeys(live):  # live jobs, so a cancelled result is ours
            job = await self.cancel(job_id)
            count += job is not None and job.error == CANCELLED
        return count

    # --- store helpers ---------------------------------------------------------------------

    async def _fail(self, job_id: str, error: str) -> None:
        log.info("job %s failed: %s", job_id, error, extra=_about(job_id))
        await self._update(job_id, Fail(self._clock(), error), finished=True)

    async def _lost(self, job_id: str) -> None:
        """ComfyUI has no trace of a job it was given (it restarted): run it again, a few times."""
        job = await self._store.get(job_id)
        if job is not None and job.attempts >= self._max_attempts:
            await self._fail(job_id, f"ComfyUI lost this job {job.attempts} times (did it crash running it?)")
            return
        log.warning("job %s is unknown to ComfyUI (restarted?): queued again", job_id, extra=_about(job_id))
        await self._update(job_id, Requeue(self._clock()), finished=True)

    async def _update(self, job_id: str, event: Start | Complete | Fail | Requeue, *,
                      finished: bool = False) -> None:
        """Apply an event to the stored job; `finished` releases its in-flight slot."""
        try:
            job = await self._store.get(job_id)
            if job is not None:  # compare-and-set: a cancellation in between wins
                await self._store.save(transition(job, event), expect=job.state)
        finally:
            if finished and self._tracked.pop(job_id, None) is not None:
                if self._running == job_id:
                    self._running = None
                self.wake()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _about(job_id: str) -> dict[str, str]:
    """`extra=` for a log record about one job (its prompt id in ComfyUI is the job id)."""
    return {"job_id": job_id, "prompt_id": job_id}


def _checkpoint(job: Job) -> str | None:
    checkpoint = job.params.get("checkpoint")
    return checkpoint if isinstance(checkpoint, str) else None
