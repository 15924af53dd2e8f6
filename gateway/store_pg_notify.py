"""Job changes told across replicas: `NOTIFY` when a change commits, one `LISTEN` connection each.

- `announce` queues a notification (job id, new and former state, the announcing store) in the
  writing transaction, so it is delivered when, and only if, the change commits.
- `ChangeFeed` keeps a connection that `LISTEN`s, re-reads the jobs it hears of and tells the
  store's listeners. A job read in a newer state than its notification said is told with that
  state's own notification, so changes are told in order, ending with the newest.
- The connection can drop (PostgreSQL restarted, a network cut, the backend terminated). The feed
  notices it at once when the socket closes, or within `check_every` seconds by a `SELECT 1`,
  then connects again with backoff. Notifications sent meanwhile are lost, so after reconnecting
  it re-reads the jobs that are live now or finished since shortly before the drop, and tells
  each one whose state differs from the one last told (new ones with no former state). A
  change may then be told twice, never missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import asyncpg

from gateway.backoff import Backoff
from gateway.jobs import TERMINAL, Job, State
from gateway.storage import Listener

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection = PoolConnectionProxy[asyncpg.Record]

log = logging.getLogger(__name__)

CHANNEL = "gateway_jobs"
"""The NOTIFY channel of job changes."""
APPLICATION_NAME = "comfy-gateway-notifications"
"""How the LISTEN connection shows in `pg_stat_activity`."""
MARGIN = 60.0
"""Seconds before the last sign of life of a dropped connection from which finished jobs are
re-read: covers notifications in flight at the drop and clocks of replicas that differ a little."""

ReadJobs = Callable[[list[str]], Awaitable[list[Job]]]
ReadSince = Callable[[float], Awaitable[list[Job]]]
"""Jobs live now, or finished at or after the given time."""


async def announce(db: Connection, changes: Sequence[tuple[Job, State | None]], origin: str) -> None:
    """Notify the other replicas of changes; delivered when the transaction commits."""
    payloads = [json.dumps({"id": job.id, "state": job.state.value, "before": before and before.value,
                            "origin": origin}) for job, before in changes]
    if payloads:
        await db.execute("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", CHANNEL, payloads)


class ChangeFeed:
    """The LISTEN side: hears other replicas' changes and tells `tell` of them, re-read."""

    def __init__(self, *, url: str, origin: str, read_jobs: ReadJobs, read_since: ReadSince, tell: Listener,
                 check_every: float = 5.0, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._url = url
        self._origin = origin
        self._read_jobs = read_jobs
        self._read_since = read_since
        self._tell = tell
        self._check_every = check_every
        self._backoff = backoff or Backoff(first=0.2, cap=10.0)
        self._clock = clock
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None
        self._healthy_at = clock()
        """When the connection last showed it was alive."""
        self._heard: dict[str, tuple[State, State | None]] = {}
        """Jobs other processes changed, not yet re-read: the newest state, the earliest before."""
        self._carried: dict[str, State | None] = {}
        """Former states of jobs re-read in a newer state than notified, kept for the newer notification."""
        self._told: dict[str, State] = {}
        """The state last told of each live job."""
        self._ended: dict[str, float] = {}
        """Jobs last told in a final state, with when: not told again after a reconnection."""
        self._resync_since: float | None = None
        self._reader: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def start(self) -> None:
        """Connect (errors are raised: the store does not open without it) and keep listening."""
        self._conn = await self._connect()
        self.remember([(job, None) for job in await self._read_since(self._clock())])
        self._keeper = asyncio.create_task(self._keep_listening(), name="job-notifications-listen")

    async def close(self) -> None:
        for task in (self._keeper, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._conn is not None:
            with contextlib.suppress(Exception):  # the server may be gone already
                await self._conn.close(timeout=2)
            self._conn = None

    def remember(self, changes: Sequence[tuple[Job, State | None]]) -> None:
        """Note what the listeners were told (by the store directly, or by this feed)."""
        now = self._clock()
        for job, _ in changes:
            if job.state in TERMINAL:
                self._told.pop(job.id, None)
                self._ended[job.id] = now
            else:
                self._told[job.id] = job.state
                self._ended.pop(job.id, None)
        if self.connected and len(self._ended) > 1000:  # forget what no re-read goes back to
            horizon = self._healthy_at - 2 * MARGIN
            self._ended = {job_id: at for job_id, at in self._ended.items() if at >= horizon}

    async def _connect(self) -> asyncpg.Connection[asyncpg.Record]:
        conn: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(
            self._url, server_settings={"application_name": APPLICATION_NAME})
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        self._healthy_at = self._clock()
        return conn

    async def _keep_listening(self) -> None:
        """Watch the connection; when it drops, connect again with backoff and re-read."""
        failures = 0
        while True:
            if self._conn is not None:
                await self._watch(self._conn)
                self._conn.terminate()
                self._conn = None
                log.warning("the PostgreSQL connection for job notifications dropped; connecting again")
            lost_at = self._healthy_at
            try:
                self._conn = await self._connect()
            except Exception as exc:
                failures += 1
                delay = self._backoff.delay(failures)
                log.warning("listening for job notifications failed (%s); trying again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            log.info("listening for job notifications again; re-reading jobs changed meanwhile")
            self._resync_since = lost_at - MARGIN if self._resync_since is None else self._resync_since
            self._start_reader()

    async def _watch(self, conn: asyncpg.Connection[asyncpg.Record]) -> None:
        """Return once the connection is closed or stops answering."""
        closed = asyncio.Event()
        conn.add_termination_listener(lambda _conn: closed.set())
        while not conn.is_closed():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._check_every):
                    await closed.wait()
                return
            try:
                async with asyncio.timeout(self._check_every):
                    await conn.execute("SELECT 1")
            except Exception:
                return
            self._healthy_at = self._clock()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            note = json.loads(str(payload))
            job_id, state = str(note["id"]), State(note["state"])
            before = State(note["before"]) if note["before"] else None
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed job notification: %r", payload)
            return
        if note.get("origin") == self._origin:
            return
        self._healthy_at = self._clock()
        if job_id in self._carried:
            before = self._carried.pop(job_id)
        earlier = self._heard.get(job_id)
        self._heard[job_id] = (state, earlier[1] if earlier else before)
        self._start_reader()

    def _start_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(), name="job-notifications")

    async def _read(self) -> None:
        """Re-read what was missed, then the jobs heard of, until nothing is left."""
        while self._resync_since is not None or self._heard:
            if self._resync_since is not None:
                try:
                    await self._resync(self._resync_since)
                except Exception:
                    log.exception("re-reading jobs after reconnecting failed; trying again")
                    await asyncio.sleep(self._backoff.first)
                    continue
                self._resync_since = None
            if self._heard:
                await self._read_heard()

    async def _resync(self, since: float) -> None:
        changes: list[tuple[Job, State | None]] = []
        for job in await self._read_since(since):
            last = self._told.get(job.id)
            if job.id in self._heard or job.state is last or (job.state in TERMINAL and job.id in self._ended):
                continue  # told already, or about to be
            changes.append((job, last))
        if changes:
            self._tell(changes)

    async def _read_heard(self) -> None:
        heard, self._heard = self._heard, {}
        try:
            jobs = await self._read_jobs(list(heard))
        except Exception:
            log.exception("reading jobs changed by another gateway failed")
            return
        changes = []
        for job in jobs:
            state, before = heard[job.id]
            if job.state is state:
                changes.append((job, before))
            elif job.id in self._heard:  # the newer notification came meanwhile
                self._heard[job.id] = (self._heard[job.id][0], before)
            else:
                self._carried[job.id] = before
        if changes:
            self._tell(changes)
