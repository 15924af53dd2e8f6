"""The job state machine. Pure: `transition(job, event) -> job`, no I/O, no clock.

    queued ──Submit──> submitted ──Start──> running ──Complete──> done
      ^                    │                   │
      └────── Requeue ─────┴───────────────────┘        (any live state) ──Fail──> failed

Terminal states absorb late events, so a duplicate or stale event never changes a finished job.
The API shows GAZE's words: queued/submitted -> pending, running -> processing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

from gateway.models import ParamValue


class State(StrEnum):
    QUEUED = "queued"
    SUBMITTED = "submitted"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


TERMINAL = frozenset({State.DONE, State.FAILED})
IN_COMFY = frozenset({State.SUBMITTED, State.RUNNING})

GAZE_STATUS: dict[State, Literal["pending", "processing", "done", "failed"]] = {
    State.QUEUED: "pending",
    State.SUBMITTED: "pending",
    State.RUNNING: "processing",
    State.DONE: "done",
    State.FAILED: "failed",
}


@dataclass(frozen=True)
class StoredImage:
    """One result file, relative to the uploads folder (e.g. `presets/<slug>/gen_..png`)."""

    relative_path: str
    node_id: str | None = None
    thumb_path: str | None = None
    """The thumbnail's path relative to the thumbnails folder, if one could be made."""


@dataclass(frozen=True)
class Job:
    id: str
    preset: str
    label: str
    params: dict[str, ParamValue]
    created_at: float
    state: State = State.QUEUED
    error: str | None = None
    images: tuple[StoredImage, ...] = ()
    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    client_reference: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    webhook_url: str | None = None
    """Where this job's events are delivered (an outbox row is written with each of them)."""
    references: tuple[str, ...] = ()
    """Stored reference image names, uploaded to ComfyUI when the job is submitted."""
    priority: int = 0
    """Higher goes first (see gateway.scheduling)."""

    @property
    def seed(self) -> int | None:
        seed = self.params.get("seed")
        return seed if isinstance(seed, int) else None

    @property
    def gaze_status(self) -> Literal["pending", "processing", "done", "failed"]:
        return GAZE_STATUS[self.state]


@dataclass(frozen=True)
class Submit:
    at: float


@dataclass(frozen=True)
class Start:
    at: float


@dataclass(frozen=True)
class Requeue:
    """ComfyUI lost the job (or never got it): it waits in our queue again."""

    at: float
    reached_comfy: bool = True
    """False when the submission never reached ComfyUI: then it does not count as an attempt."""


@dataclass(frozen=True)
class Complete:
    at: float
    images: tuple[StoredImage, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Fail:
    at: float
    error: str


Event = Submit | Start | Requeue | Complete | Fail


class InvalidTransition(ValueError):
    """An event that cannot happen in the job's state (a bug in the caller, not bad input)."""


def transition(job: Job, event: Event) -> Job:
    """The job after `event`. Finished jobs are returned unchanged."""
    if job.state in TERMINAL:
        return job
    match event:
        case Submit(at=at) if job.state is State.QUEUED:
            return replace(job, state=State.SUBMITTED, submitted_at=at, attempts=job.attempts + 1)
        case Start(at=at) if job.state in IN_COMFY:
            return job if job.state is State.RUNNING else replace(job, state=State.RUNNING, started_at=at)
        case Requeue(reached_comfy=reached) if job.state in IN_COMFY:
            attempts = job.attempts if reached else max(job.attempts - 1, 0)
            return replace(job, state=State.QUEUED, submitted_at=None, started_at=None, attempts=attempts)
        case Complete(at=at, images=images) if job.state in IN_COMFY:
            if not images:
                raise InvalidTransition(f"job {job.id}: done without an image")
            return replace(job, state=State.DONE, images=images, finished_at=at,
                           started_at=job.started_at or at)
        case Fail(at=at, error=error):
            return replace(job, state=State.FAILED, error=error, finished_at=at)
    raise InvalidTransition(f"job {job.id}: {type(event).__name__} is not possible while {job.state}")
