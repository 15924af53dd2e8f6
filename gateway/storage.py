"""What the rest of the gateway may ask of the durable store, whichever database holds it.

`Store` is the interface; `gateway.store` implements it on SQLite (the embedded default, one
process) and `gateway.store_pg` on PostgreSQL (several gateway replicas sharing one queue).
The rows it returns and the job's column encoding live here, so both backends read and write
jobs the same way. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.jobs import Job, State, StoredImage
from gateway.scheduling import Candidate

JOB_COLUMNS = ("id, preset, label, state, params, error, images, created_at, submitted_at, started_at, "
               "finished_at, attempts, client_reference, metadata, webhook_url, refs, priority")
JOB_COLUMN_COUNT = len(JOB_COLUMNS.split(","))
QUEUE_ORDER = "ORDER BY priority DESC, seq"
"""The base order of the queue (the `jobs_queue` index): higher priority first, then first come."""
DELIVERY_COLUMNS = "id, job_id, event, url, payload, state, attempts, created_at, next_attempt_at"
FORGET_REPLICAS_AFTER = 7 * 24 * 3600.0
"""Seconds after its lease ran out that a replica's heartbeat row is dropped."""

WebhookRender = Callable[[Job, State], tuple[str, str] | None]
"""Given a job just saved and its state before, the event to deliver and its body, or None."""

Listener = Callable[[list[tuple[Job, State | None]]], None]
"""Told of committed job changes: each job as written, with the state it had before (None: new)."""


@dataclass(frozen=True)
class IdempotencyRow:
    scope: str
    key: str
    request_hash: str
    status: int
    body: str
    created_at: float


@dataclass(frozen=True)
class Delivery:
    """One row of the webhook outbox: an event of a job, to be POSTed to `url`."""

    id: str
    job_id: str
    event: str
    url: str
    payload: str
    state: str
    attempts: int
    created_at: float
    next_attempt_at: float | None


@dataclass(frozen=True)
class Attempt:
    delivery_id: str
    attempt: int
    at: float
    duration: float
    status_code: int | None
    error: str | None


@dataclass(frozen=True)
class SavedRow:
    id: str
    label: str
    job_id: str
    relative_path: str
    created_at: float


@dataclass(frozen=True)
class ImageRow:
    """One result image in the gallery."""

    id: str
    job: Job
    image: StoredImage
    created_at: float


@dataclass(frozen=True)
class JobCounts:
    waiting: int
    running: int
    done_since: int
    failed_since: int


@dataclass(frozen=True)
class ApiKeyRow:
    id: str
    name: str
    hash: str
    created_at: float
    revoked_at: float | None
    max_priority: int | None = None
    """Highest job priority the key may ask for; None: the gateway's setting."""


def _image_json(image: StoredImage) -> dict[str, str]:
    return {k: v for k, v in dataclasses.asdict(image).items() if v is not None}


class Row(Protocol):
    """A database row: a tuple (SQLite) or a record (PostgreSQL), read by position."""

    def __getitem__(self, index: int, /) -> Any: ...


def job_values(job: Job) -> tuple[Any, ...]:
    """A job as the values of `JOB_COLUMNS`, in order."""
    images = json.dumps([_image_json(i) for i in job.images])
    return (job.id, job.preset, job.label, job.state.value, json.dumps(job.params), job.error, images,
            job.created_at, job.submitted_at, job.started_at, job.finished_at, job.attempts,
            job.client_reference, json.dumps(job.metadata), job.webhook_url, json.dumps(list(job.references)),
            job.priority)


def job_from_row(row: Row) -> Job:
    """The job stored in a row of `JOB_COLUMNS`."""
    return Job(
        id=row[0], preset=row[1], label=row[2], state=State(row[3]), params=json.loads(row[4]),
        error=row[5], images=tuple(StoredImage(**i) for i in json.loads(row[6])),
        created_at=row[7], submitted_at=row[8], started_at=row[9], finished_at=row[10], attempts=row[11],
        client_reference=row[12], metadata=json.loads(row[13]), webhook_url=row[14],
        references=tuple(json.loads(row[15])), priority=row[16],
    )


def counts_changed(passed: Sequence[Candidate], now: Iterable[Row]) -> bool:
    """Whether a job to be passed was overtaken again since it was read (`now`: rows of id and
    overtaken count of the passed jobs still queued): the choice was made on stale counts."""
    counts = {str(r[0]): int(r[1]) for r in now}
    return any(c.id in counts and counts[c.id] != c.overtaken for c in passed)


def candidate_from_row(row: Row) -> Candidate:
    """A waiting job as the scheduler sees it, from (id, priority, checkpoint, overtaken, passed_at)."""
    return Candidate(id=str(row[0]), priority=int(row[1]), checkpoint=row[2] if isinstance(row[2], str) else None,
                     overtaken=int(row[3]), passed_at=row[4])


class Store(Protocol):
    """The durable store. Every write is one transaction; listeners hear of committed job changes.

    Jobs that ComfyUI has (submitted or running) belong to one owner: the gateway process that
    submitted them, named by its ComfyUI websocket client id. Owners prove they are alive with
    `heartbeat`; the jobs of an owner whose lease ran out are handed to a live one.
    """

    def listen(self, listener: Listener) -> None:
        """Call `listener` after every committed change of jobs (made by this process or, where
        the database is shared, by another one), never inside a transaction."""

    async def close(self) -> None: ...

    # --- jobs -------------------------------------------------------------------------------

    async def add_jobs(self, jobs: Sequence[Job], *, max_queued: int | None = None,
                       idempotency: IdempotencyRow | None = None, forget_before: float = 0.0,
                       ) -> IdempotencyRow | None:
        """Insert new jobs in one transaction: all of them are stored, or none.

        With `max_queued`, raises QueueFull instead when the queue would then hold more.
        With `idempotency`, the row is stored with the jobs; but if a row for its scope and key
        created at or after `forget_before` exists, nothing is inserted and that row is returned.
        """

    async def save(self, job: Job, *, expect: State | None = None) -> bool:
        """Write a job's changed state (after a transition). With `expect`, only if the stored
        job is still in that state (compare-and-set); returns whether it was written."""

    async def queue_window(self, limit: int) -> list[Candidate]:
        """The first `limit` waiting jobs in base order (`QUEUE_ORDER`), as much as the scheduler
        needs of them."""

    async def mark_passed(self, job_ids: Sequence[str], at: float) -> None:
        """Record that waiting jobs were overtaken once more (first at `at`), so the fairness
        bound holds across restarts."""

    async def claim(self, job_id: str, at: float, owner: str, *, passed: Sequence[Candidate] = ()) -> Job | None:
        """Take the job `job_id` if it is still queued: it is marked submitted (`jobs.Submit` at
        `at`) and owned by `owner`, and the waiting jobs it overtook (`passed`, as the window
        showed them) are counted once more, in one step; however many processes claim at once,
        each job is taken once. None, and nothing written: it is not queued any more (taken by
        another claimer, or cancelled), or a job in `passed` was overtaken again meanwhile (so
        the fairness bound is checked on current counts); the caller chooses again."""

    async def heartbeat(self, owner: str, now: float, lease: float) -> list[Job]:
        """Record that `owner` is alive until `now + lease`; hand it the jobs in ComfyUI whose
        owner's lease ran out (or that have none). Returns the jobs it took over."""

    async def in_comfy(self, owner: str | None = None) -> list[Job]:
        """Jobs the store believes ComfyUI has (submitted or running), oldest first; with `owner`,
        only that owner's."""

    async def fail_queued(self, error: str, at: float) -> int:
        """Fail every job waiting in the queue at once (the bulk form of `jobs.Fail`)."""

    async def check_writable(self) -> None:
        """Raise if the database cannot be written."""

    async def get(self, job_id: str) -> Job | None: ...

    async def next_queued(self) -> Job | None:
        """The first job of the gateway's queue in base order (priority, then first come)."""

    async def count_queued(self) -> int: ...

    async def live_counts(self) -> dict[State, int]:
        """Jobs in each live state (queued, submitted, running)."""

    async def queue_positions(self, job_ids: Sequence[str]) -> dict[str, int]:
        """1-based places of waiting jobs: those in ComfyUI's queue first (in order of
        submission), then the gateway's queue in base order; jobs that are not waiting are left out."""

    async def counts(self, since: float) -> JobCounts:
        """Jobs waiting and running now, and done and failed since `since`."""

    async def recent_durations(self, limit: int) -> list[float]:
        """Run times (start to finish) of the latest done jobs, newest first."""

    async def images(self, *, limit: int, offset: int, preset: str | None = None) -> tuple[list[ImageRow], int]:
        """Result images, newest first, and how many there are in all."""

    async def meta_value(self, key: str, default: str) -> str:
        """A value stored once and kept: the first caller's `default` wins for good."""

    async def live_references(self) -> set[str]:
        """Reference image names that jobs not yet finished still need."""

    # --- API keys ---------------------------------------------------------------------------

    async def add_key(self, row: ApiKeyRow) -> None: ...

    async def list_keys(self) -> list[ApiKeyRow]: ...

    async def revoke_key(self, id_or_name: str, at: float) -> int:
        """Revoke keys by id or name; returns how many were revoked."""

    async def active_keys(self) -> dict[str, int | None]:
        """Digests of the keys not revoked, each with its maximum priority (None: the default)."""

    # --- idempotency ------------------------------------------------------------------------

    async def forget_idempotency(self, before: float) -> int:
        """Drop idempotency rows created before `before`; returns how many."""

    # --- webhook outbox ---------------------------------------------------------------------

    async def claim_deliveries(self, now: float, lease_until: float, limit: int = 100) -> list[Delivery]:
        """Pending deliveries due at `now`, oldest first, each moved to `lease_until` in the same
        transaction: no later call (of any process) returns them while they are being sent, and
        if the process dies meanwhile they are due again when the lease ends."""

    async def next_delivery_at(self) -> float | None:
        """When the earliest pending delivery is due (None: none is pending)."""

    async def record_attempt(self, attempt: Attempt, *, delivered: bool, retry_at: float | None) -> None:
        """Log one attempt and move its delivery on: delivered, due again at `retry_at`, or given up."""

    async def deliveries_of(self, job_id: str) -> list[tuple[Delivery, list[Attempt]]]:
        """A job's deliveries, oldest first, each with its attempts."""

    # --- saved results ----------------------------------------------------------------------

    async def add_saved(self, row: SavedRow) -> None: ...

    async def get_saved(self, saved_id: str) -> SavedRow | None: ...

    async def list_saved(self, limit: int, offset: int) -> tuple[list[SavedRow], int]:
        """A page of saved results, newest first, and how many there are in all."""

    async def delete_saved(self, saved_id: str) -> SavedRow | None:
        """Remove a saved result's row; returns it (None if there was none)."""
