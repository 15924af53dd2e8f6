"""What the dispatcher knows of a job ComfyUI has, beyond the store, and the pure rules it uses.
No I/O."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gateway.comfy import protocol
from gateway.jobs import Job

log = logging.getLogger("gateway.dispatcher")
"""One logger for every part of the dispatcher: operators filter on one name."""

CANCELLED = "cancelled"


@dataclass
class Tracked:
    """A job the dispatcher has in ComfyUI (or is about to post)."""

    job: Job
    """The job as this dispatcher last wrote it: the next state change is written from it,
    compare-and-set on its state, without reading it again."""
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
    node: str | None = None
    """The node ComfyUI is executing for this job, while it runs."""
    ended_at: float | None = None
    """When ComfyUI's end of the prompt (`executing: null`) came."""

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def preset(self) -> str:
        return self.job.preset

    @property
    def checkpoint(self) -> str | None:
        return checkpoint_of(self.job)


def checkpoint_of(job: Job) -> str | None:
    checkpoint = job.params.get("checkpoint")
    return checkpoint if isinstance(checkpoint, str) else None


def about(job_id: str) -> dict[str, str]:
    """`extra=` for a log record about one job (its prompt id in ComfyUI is the job id)."""
    return {"job_id": job_id, "prompt_id": job_id}


def expected_checkpoint(in_flight: Iterable[Tracked], loaded: str | None) -> str | None:
    """The checkpoint ComfyUI will have loaded once the prompts in flight (oldest first) are done."""
    for tracked in reversed(list(in_flight)):
        if tracked.checkpoint is not None:
            return tracked.checkpoint
    return loaded


def results_to_keep(images: Sequence[protocol.OutputImage]) -> list[protocol.OutputImage]:
    """The images a job's result is made of: its saved outputs, or (a workflow that only
    previews) whatever it showed."""
    return [i for i in images if i.type == "output"] or list(images)


def deadline(tracked: Tracked, timeout: float, max_in_flight: int) -> float:
    """When a job has run too long: `timeout` after its start, or, while it waits behind the
    other prompts in flight, after as many timeouts as could run before and with it."""
    if tracked.started_at is not None:
        return tracked.started_at + timeout
    return tracked.submitted_at + timeout * (max_in_flight + 1)


def watch_interval(timeouts: Iterable[float], job_timeout: float, stale_after: float) -> float:
    """How often deadlines are checked: often enough for the tightest timeout and for
    `stale_after`, at least once a second."""
    tightest = min((t for t in timeouts if t), default=job_timeout)
    return min(1.0, min(tightest, job_timeout) / 4, stale_after / 2)
