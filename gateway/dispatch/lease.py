"""The lease on in-flight jobs, for gateways sharing one store: renewed while this dispatcher
runs; the jobs of a gateway that stopped renewing are taken over and settled from ComfyUI."""

from __future__ import annotations

import asyncio

from gateway.dispatch.base import DispatcherBase
from gateway.dispatch.inflight import log
from gateway.jobs import TERMINAL


class Lease(DispatcherBase):
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
