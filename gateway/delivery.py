"""Sends webhook deliveries from the durable outbox, retrying with backoff; records every attempt.

Rows are written by the store in the same transaction as the job state they announce, so a crash
loses no delivery: after a restart, pending rows are simply due. A receiver cannot hurt the
gateway: each attempt has a total timeout, redirects are not followed, at most a few KB of the
answer are read, at most `concurrency` attempts run at once, and nothing here blocks the
dispatcher. Targets are re-checked on every attempt, each resolved address included (SSRF).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from gateway.storage import Attempt, Delivery, Store
from gateway.webhooks import UnsafeTarget, check_address, check_url, retry_delay, sign

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 4096
LEASE_MARGIN = 30.0
"""Seconds past an attempt's timeout before a claimed delivery is due again (after a crash)."""
USER_AGENT = "comfy-gateway-webhooks/1"


class CheckedResolver(AbstractResolver):
    """Resolves host names and refuses the whole name if any address is not allowed, so the
    connection goes only to addresses that were checked (no window for DNS rebinding)."""

    def __init__(self, *, allow_private: bool, inner: AbstractResolver | None = None) -> None:
        self._allow_private = allow_private
        self._inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            check_address(ipaddress.ip_address(result["host"]), allow_private=self._allow_private)
        return results

    async def close(self) -> None:
        await self._inner.close()


def connector(*, allow_private: bool) -> aiohttp.TCPConnector:
    """The connector for a webhook session: checked resolution, no DNS cache, few connections."""
    return aiohttp.TCPConnector(resolver=CheckedResolver(allow_private=allow_private), use_dns_cache=False,
                                limit=32, force_close=True)


class DeliveryWorker:
    def __init__(
        self, *, store: Store, session: aiohttp.ClientSession, secret: str, max_attempts: int = 8,
        timeout: float = 10.0, backoff: float = 5.0, allow_private: bool = False, concurrency: int = 8,
        poll: float = 0.5, clock: Callable[[], float] = time.time, rng: random.Random | None = None,
        on_attempt: Callable[[str], None] | None = None,
    ) -> None:
        """`on_attempt` hears each attempt's outcome: delivered, retrying or gave_up."""
        self._on_attempt = on_attempt
        self._store = store
        self._session = session
        self._secret = secret
        self._max_attempts = max_attempts
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._backoff = backoff
        self._allow_private = allow_private
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._poll = poll
        self._clock = clock
        self._rng = rng or random.Random()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()

    async def run(self, *, until_idle: bool = False) -> None:
        """Deliver forever, or (`until_idle`) until no delivery is pending any more."""
        try:
            while True:
                self._wake.clear()
                try:
                    delay = await self._start_due()
                except Exception:  # a database hiccup must not end deliveries for good
                    log.exception("reading the webhook outbox failed")
                    delay = self._poll
                if until_idle and delay is None and not self._in_flight:
                    return
                wait = self._poll if delay is None else min(delay, self._poll)
                if wait > 0:
                    # not wait_for: on Python 3.11 it drops a cancellation that comes as the wake
                    # does, and the stopping gateway then waits for this loop for good
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._wake.wait()
        finally:
            tasks = list(self._in_flight.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _start_due(self) -> float | None:
        """Start attempts that are due; seconds until the next one is (None: nothing pending)."""
        free = self._concurrency - len(self._in_flight)
        if free > 0:
            now = self._clock()
            lease = now + (self._timeout.total or 0) + LEASE_MARGIN
            for delivery in await self._store.claim_deliveries(now, lease, limit=free):
                task = asyncio.create_task(self._attempt(delivery), name=f"webhook-{delivery.id}")
                self._in_flight[delivery.id] = task
                task.add_done_callback(functools.partial(self._done, delivery.id))
        next_at = await self._store.next_delivery_at()
        if next_at is None:
            return None
        return max(0.0, next_at - self._clock())

    def _done(self, delivery_id: str, _: object) -> None:
        self._in_flight.pop(delivery_id, None)
        self._wake.set()

    async def _attempt(self, delivery: Delivery) -> None:
        number = delivery.attempts + 1
        at = self._clock()
        started = time.monotonic()
        status, error, give_up = await self._post(delivery)
        duration = time.monotonic() - started
        delivered = status is not None and 200 <= status < 300
        if not delivered and error is None:
            error = f"answered HTTP {status}"
        retry_at = None
        if not delivered and not give_up and number < self._max_attempts:
            retry_at = self._clock() + retry_delay(number, self._backoff, self._rng)
        if not delivered:
            log.info("webhook %s for job %s, attempt %d: %s", delivery.id, delivery.job_id, number, error,
                     extra={"job_id": delivery.job_id, "prompt_id": delivery.job_id})
        if self._on_attempt is not None:
            self._on_attempt("delivered" if delivered else "retrying" if retry_at is not None else "gave_up")
        try:
            await self._store.record_attempt(
                Attempt(delivery_id=delivery.id, attempt=number, at=at, duration=duration, status_code=status,
                        error=error),
                delivered=delivered, retry_at=retry_at,
            )
        except Exception:
            log.exception("recording webhook attempt %s failed", delivery.id)

    async def _post(self, delivery: Delivery) -> tuple[int | None, str | None, bool]:
        """One POST: (HTTP status or None, error or None, whether retrying is pointless)."""
        try:
            check_url(delivery.url, allow_private=self._allow_private)
            headers: dict[str, Any] = {
                **sign(self._secret, delivery.id, int(self._clock()), delivery.payload),
                "Content-Type": "application/json", "User-Agent": USER_AGENT,
            }
            async with self._slots, self._session.post(
                delivery.url, data=delivery.payload.encode(), headers=headers, allow_redirects=False,
                timeout=self._timeout,
            ) as resp:
                await resp.content.read(MAX_ANSWER_BYTES)
                return resp.status, None, False
        except UnsafeTarget as exc:
            return None, f"refused: {exc}", True
        except TimeoutError:
            return None, f"timed out after {self._timeout.total:g} s", False
        except (aiohttp.ClientError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500], False
        except Exception as exc:  # whatever a hostile receiver provokes, the worker lives on
            log.exception("webhook %s failed unexpectedly", delivery.id)
            return None, f"{type(exc).__name__}: {exc}"[:500], False
