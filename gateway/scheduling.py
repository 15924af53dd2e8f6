"""Which waiting job goes to ComfyUI next. Pure: `choose(candidates, loaded, now, bound) -> Choice`.

The base order is priority (higher first), then first come. Checkpoint affinity may take a later
job of the same priority that uses the checkpoint ComfyUI has loaded (switching costs seconds on a
GPU), passing the jobs in front of it, within a fairness bound:

- a job passed `max_skips` times is passed no more (it waits at most that many places extra);
- a job first passed `max_wait` seconds ago is passed no more.

A job that may no longer be passed stops the search: nothing behind it can overtake it. With
`max_skips == 0` affinity is off and the order is the base order exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    """A waiting job, as much as choosing needs of it."""

    id: str
    priority: int
    checkpoint: str | None
    overtaken: int = 0
    """Times jobs behind it were chosen before it."""
    passed_at: float | None = None
    """When it was first overtaken (None: never)."""


@dataclass(frozen=True)
class Fairness:
    max_skips: int
    """Most places a job may be overtaken by; 0 turns affinity off."""
    max_wait: float
    """Seconds after its first overtaking that a job may still be overtaken."""


@dataclass(frozen=True)
class Choice:
    job: Candidate
    passed: tuple[Candidate, ...]
    """The jobs in front of `job` in base order, now overtaken once more."""


def may_pass(candidate: Candidate, now: float, bound: Fairness) -> bool:
    """Whether a job behind `candidate` may still be chosen before it."""
    if candidate.overtaken >= bound.max_skips:
        return False
    return candidate.passed_at is None or now - candidate.passed_at < bound.max_wait


def choose(candidates: Sequence[Candidate], loaded: str | None, now: float, bound: Fairness) -> Choice | None:
    """The next job among `candidates` (the head of the queue, in base order); None if empty.

    `loaded` is the checkpoint ComfyUI will have loaded when the job starts: the one of the last
    job in flight, else the one it loaded last.
    """
    if not candidates:
        return None
    head = candidates[0]
    if loaded is None or bound.max_skips <= 0:
        return Choice(head, ())
    for index, candidate in enumerate(candidates):
        if candidate.priority < head.priority:
            break  # priority comes before affinity
        if candidate.checkpoint == loaded:
            return Choice(candidate, tuple(candidates[:index]))
        if not may_pass(candidate, now, bound):
            break
    return Choice(head, ())
