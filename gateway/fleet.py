"""Several ComfyUI backends fed from one queue: one `Dispatcher` per backend, sharing the store.

How work is shared out:
- Each backend's dispatcher claims jobs for its own free slots (at most `max_in_flight` each) and
  only while its websocket is connected: an unreachable backend takes nothing. `Store.claim`
  makes every job go to exactly one of them, as it does across gateway replicas.
- Each chooses with `gateway.scheduling.choose` and the checkpoint *its* ComfyUI will have
  loaded, so a job using a checkpoint one backend has loaded tends to go to that backend, while
  a free backend with nothing matching takes the head of the queue: all are kept busy.
- A job in a backend belongs to that backend's dispatcher (its owner in the store) and is only
  ever settled by asking that backend. A backend that drops away keeps its jobs for
  `lost_after` seconds (a restart or a short network blip costs nothing: its jobs are settled
  from its history when it is back); after that they are queued again for the others, and their
  prompts are taken out of it when it returns, before it is fed again.

- Weights decide who looks first: when jobs are queued, the fleet wakes the backends in
  `gateway.backends.wake_order` (a backend that will have one of the new jobs' checkpoints
  loaded, then the highest weight, then configured order). A woken backend with a free slot
  claims at once, so of several free backends the first woken takes the job.

The fleet answers the API's questions (status, metrics, cancel) for all backends together.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Sequence

from gateway.backends import DEFAULT_WEIGHT, Offer, wake_order
from gateway.dispatcher import CANCELLED, Backend, Dispatcher
from gateway.jobs import IN_COMFY, Job, State
from gateway.storage import Store


class Fleet:
    def __init__(self, *, store: Store, dispatchers: Sequence[Dispatcher],
                 weights: Sequence[float] | None = None) -> None:
        if not dispatchers:
            raise ValueError("a fleet needs at least one dispatcher")
        if weights is not None and len(weights) != len(dispatchers):
            raise ValueError("a fleet needs one weight per dispatcher")
        self._store = store
        self.dispatchers = tuple(dispatchers)
        self.weights = tuple(weights) if weights is not None else (DEFAULT_WEIGHT,) * len(dispatchers)

    @property
    def backends(self) -> list[Backend]:
        """A snapshot of every backend, in configuration order."""
        return [d.backend for d in self.dispatchers]

    @property
    def backend(self) -> Backend:
        """The first backend (the only one in a single-backend setup)."""
        return self.dispatchers[0].backend

    @property
    def connected(self) -> bool:
        """Whether at least one backend is reachable."""
        return any(d.connected for d in self.dispatchers)

    @property
    def reachable(self) -> int:
        return sum(d.connected for d in self.dispatchers)

    @property
    def in_flight(self) -> int:
        return sum(d.in_flight for d in self.dispatchers)

    @property
    def job_seconds(self) -> float | None:
        """Median run time of the latest done jobs on any backend."""
        durations = [s for d in self.dispatchers for s in d.backend.durations]
        return statistics.median(durations) if durations else None

    def wake(self, wanted: set[str] | None = None) -> None:
        """Wake every backend's feeder, in `wake_order` for jobs using the checkpoints `wanted`."""
        offers = [Offer(weight, d.expected_checkpoint())
                  for d, weight in zip(self.dispatchers, self.weights, strict=True)]
        for index in wake_order(offers, wanted or set()):
            self.dispatchers[index].wake()

    def jobs_changed(self, changes: list[tuple[Job, State | None]]) -> None:
        """A store listener: queued jobs wake every backend's feeder, the best placed first."""
        queued = [job for job, _ in changes if job.state is State.QUEUED]
        if queued:
            self.wake({c for job in queued if isinstance(c := job.params.get("checkpoint"), str)})

    async def run(self, *, until_idle: bool = False) -> None:
        """Run every dispatcher; with `until_idle`, until all are idle."""
        await asyncio.gather(*(d.run(until_idle=until_idle) for d in self.dispatchers))

    async def cancel(self, job_id: str) -> Job | None:
        """Cancel one job through the backend that has it. A job in ComfyUI that no dispatcher
        here follows (another replica's) is withdrawn from every backend: only that prompt."""
        for dispatcher in self.dispatchers:
            if dispatcher.follows(job_id):
                return await dispatcher.cancel(job_id)
        before = await self._store.get(job_id)
        job = await self.dispatchers[0].cancel(job_id)
        if before is not None and before.state in IN_COMFY and job is not None and job.error == CANCELLED:
            for other in self.dispatchers[1:]:
                await other.withdraw(job_id)
        return job

    async def cancel_all(self) -> int:
        """Cancel every waiting and running job on every backend; returns how many."""
        if len(self.dispatchers) == 1:
            return await self.dispatchers[0].cancel_all()
        count = await self._store.fail_queued(CANCELLED, self.dispatchers[0].now())
        live = [job_id for d in self.dispatchers for job_id in d.followed()]
        live += [job.id for job in await self._store.in_comfy()]
        for job_id in dict.fromkeys(live):
            job = await self.cancel(job_id)
            count += job is not None and job.error == CANCELLED
        return count
