"""Feeding ComfyUI: choose the next job (gateway.scheduling), claim it in the store, post it."""

from __future__ import annotations

import asyncio

from gateway.bindings import reference_param
from gateway.compiler import compile_prompt
from gateway.dispatch.base import DispatcherBase
from gateway.dispatch.inflight import Tracked, about, expected_checkpoint, log
from gateway.errors import ComfyRejected, ComfyUnavailable
from gateway.jobs import Fail, Job, Requeue, State, transition
from gateway.models import ParamValue
from gateway.scheduling import choose

SCHEDULING_WINDOW = 32
"""Waiting jobs looked at when choosing the next one: the head of the queue, never all of it."""


class Feeding(DispatcherBase):
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
                          len(choice.passed), extra=about(job.id))
            return job

    def expected_checkpoint(self) -> str | None:
        """The checkpoint ComfyUI will have loaded once the prompts in flight are done."""
        return expected_checkpoint(self._tracked.values(), self._loaded_checkpoint)

    async def _submit(self, job: Job) -> None:
        """Post a claimed job (stored as submitted: durable before the POST).

        It is followed from the moment its claim returns, with no wait in between, so a
        cancellation in this process finds it followed; one through another gateway sharing the
        store is found by the lease (see `lease`).
        """
        preset = self._presets().get(job.preset)
        if preset is None:
            failed = transition(job, Fail(self._clock(), f"preset '{job.preset}' no longer exists"))
            await self._store.save(failed, expect=State.SUBMITTED)
            return
        tracked = self._tracked[job.id] = Tracked(job, job.submitted_at or self._clock(), last_heard=self._clock())
        try:
            params = await self._upload_references(job)
            await self._client.submit(compile_prompt(preset, params, job.id), prompt_id=job.id,
                                      extra_data=self._extra_data)
        except OSError as exc:
            await self._fail(job.id, f"could not read a reference image: {exc.strerror or exc}")
        except ComfyRejected as exc:
            await self._fail(job.id, exc.message)
        except ComfyUnavailable as exc:
            log.warning("submitting job %s failed: %s", job.id, exc.message, extra=about(job.id))
            if exc.details.get("sent"):
                tracked.posted = True  # maybe it arrived: settle it from ComfyUI's queue and history
                self._spawn(self._reconcile([job.id]))
            else:  # it never reached ComfyUI: not an attempt
                await self._update(job.id, Requeue(self._clock(), reached_comfy=False), finished=True)
            await asyncio.sleep(self._retry_delay)
        else:
            tracked.posted = True
            log.debug("job %s submitted", job.id, extra=about(job.id))
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
