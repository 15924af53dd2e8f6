"""Cancelling: a waiting job costs nothing to cancel; a job in ComfyUI is taken out of it."""

from __future__ import annotations

from gateway.dispatch.base import DispatcherBase
from gateway.dispatch.inflight import CANCELLED
from gateway.jobs import TERMINAL, Fail, Job, State, transition


class Control(DispatcherBase):
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
