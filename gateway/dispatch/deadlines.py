"""Nothing hangs: jobs past their deadline are interrupted and failed, jobs silent too long are
settled from ComfyUI's queue and history, and the jobs of a ComfyUI lost for good go to the others."""

from __future__ import annotations

import asyncio

from gateway.dispatch.base import DispatcherBase
from gateway.dispatch.inflight import about, deadline, log, watch_interval
from gateway.jobs import Requeue


class Deadlines(DispatcherBase):
    async def _watch_deadlines(self) -> None:
        """Fail jobs past their deadline; settle jobs that have been silent too long."""
        while True:
            timeouts = [p.timeout for p in self._presets().values() if p.timeout]
            await asyncio.sleep(watch_interval(timeouts, self._job_timeout, self._stale_after))
            now = self._clock()
            stale = []
            for tracked in list(self._tracked.values()):
                if tracked.settling:
                    continue
                timeout = self._timeout_of(tracked.preset)
                if now > deadline(tracked, timeout, self._max_in_flight):
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
                        self._client.base_url, now - since, job_id, extra=about(job_id))
            await self._update(job_id, Requeue(now), finished=True)

    def _timeout_of(self, slug: str) -> float:
        preset = self._presets().get(slug)
        return preset.timeout if preset is not None and preset.timeout else self._job_timeout

    async def _time_out(self, job_id: str, timeout: float) -> None:
        await self._fail(job_id, f"timed out: still not finished after {timeout:g} s, interrupted")
        await self._withdraw(job_id)
