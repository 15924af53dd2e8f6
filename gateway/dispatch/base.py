"""The state every part of the dispatcher shares, the store writes they make, and settling: what
happens to a prompt ComfyUI is done with (or may have finished while nobody listened)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from gateway.comfy import protocol
from gateway.comfy.client import ComfyClient
from gateway.dispatch.inflight import Tracked, about, log, results_to_keep
from gateway.dispatch.results import store_results
from gateway.errors import ComfyUnavailable
from gateway.events import Hub
from gateway.jobs import Complete, Fail, Job, Requeue, Start, transition
from gateway.models import Preset
from gateway.outputs import OutputStore, ReferenceStore
from gateway.scheduling import Fairness
from gateway.storage import Store


class DispatcherBase:
    """Set up by `gateway.dispatcher.Dispatcher.__init__`."""

    _store: Store
    _client: ComfyClient
    _outputs: OutputStore
    _references: ReferenceStore | None
    _presets: Callable[[], Mapping[str, Preset]]
    _hub: Hub
    _clock: Callable[[], float]
    _owner: str
    _lease: float
    _lost_after: float | None
    _max_in_flight: int
    _job_timeout: float
    _max_attempts: int
    _retry_delay: float
    _stale_after: float
    _fairness: Fairness
    _extra_data: dict[str, Any] | None
    _tracked: dict[str, Tracked]
    _wake: asyncio.Event
    _tasks: set[asyncio.Task[None]]
    _connected: bool
    _disconnected_since: float | None
    _disconnect_reason: str
    _abandoned: set[str]
    _running: str | None
    _version: str | None
    _loaded_checkpoint: str | None
    _model_swaps: int
    _last_error: str | None
    _durations: deque[float]
    _on_result: Callable[[float], None] | None

    def wake(self) -> None:
        """New jobs are queued (or a slot freed): look at the queue again."""
        self._wake.set()

    def _in_comfy(self) -> int:
        """Prompts ComfyUI holds (queued or running): tracked jobs not yet being collected."""
        return sum(not tracked.settling for tracked in self._tracked.values())

    def _track_stored(self, job: Job) -> None:
        """Follow a job the store says ComfyUI has (after a restart, or taken over)."""
        self._tracked[job.id] = Tracked(job, job.submitted_at or self._clock(), started_at=job.started_at,
                                        posted=True, last_heard=self._clock())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- settling --------------------------------------------------------------------------

    def _settle(self, tracked: Tracked, images: list[protocol.OutputImage] | None) -> None:
        """ComfyUI is done with this job: free its slot and collect the result."""
        tracked.settling = True
        self.wake()
        self._spawn(self._complete(tracked.job_id, images))

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
            if not images:  # the events of its run were missed: its history has them
                entry = await self._client.history(job_id)
                if entry is None:
                    await self._fail(job_id, "ComfyUI finished the prompt but has no record of it")
                    return
                if not entry.succeeded:
                    await self._fail(job_id, entry.error or "failed in ComfyUI")
                    return
                images = list(entry.images)
            chosen = results_to_keep(images)
            if not chosen:
                await self._fail(job_id, "the workflow finished without producing an image")
                return
            stored = await store_results(self._client, self._outputs, tracked.preset, chosen)
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
        await self._update(job_id, Complete(finished_at, stored), finished=True)
        if self._on_result is not None and tracked.ended_at is not None:
            self._on_result(max(self._clock() - tracked.ended_at, 0.0))
        log.debug("job %s done", job_id, extra=about(job_id))

    # --- ComfyUI and the store ----------------------------------------------------------------

    async def _withdraw(self, job_id: str) -> None:
        """Take a prompt out of ComfyUI: from its queue if waiting, interrupted if running.
        Only this prompt: other clients' prompts are untouched."""
        try:
            await self._client.delete_queued([job_id])
            await self._client.interrupt(job_id)
        except ComfyUnavailable as exc:
            log.info("could not withdraw job %s from ComfyUI: %s", job_id, exc.message, extra=about(job_id))

    async def _fail(self, job_id: str, error: str) -> None:
        log.info("job %s failed: %s", job_id, error, extra=about(job_id))
        await self._update(job_id, Fail(self._clock(), error), finished=True)

    async def _lost(self, job_id: str) -> None:
        """ComfyUI has no trace of a job it was given (it restarted): run it again, a few times."""
        job = await self._store.get(job_id)
        if job is not None and job.attempts >= self._max_attempts:
            await self._fail(job_id, f"ComfyUI lost this job {job.attempts} times (did it crash running it?)")
            return
        log.warning("job %s is unknown to ComfyUI (restarted?): queued again", job_id, extra=about(job_id))
        await self._update(job_id, Requeue(self._clock()), finished=True)

    async def _update(self, job_id: str, event: Start | Complete | Fail | Requeue, *,
                      finished: bool = False) -> None:
        """Apply an event to the stored job; `finished` releases its in-flight slot.

        A tracked job is written from the copy kept with it, compare-and-set on its state; only
        when that loses (the job was cancelled or changed meanwhile) is it read again, and the
        event applied to what is stored: a cancellation in between wins.
        """
        try:
            tracked = self._tracked.get(job_id)
            if tracked is not None:
                changed = transition(tracked.job, event)
                if changed is tracked.job or await self._store.save(changed, expect=tracked.job.state):
                    tracked.job = changed
                    return
            job = await self._store.get(job_id)
            if job is not None:
                changed = transition(job, event)
                if await self._store.save(changed, expect=job.state) and tracked is not None:
                    tracked.job = changed
        finally:
            if finished and self._tracked.pop(job_id, None) is not None:
                if self._running == job_id:
                    self._running = None
                self.wake()
