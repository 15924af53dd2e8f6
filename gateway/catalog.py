"""What ComfyUI offers (its `/object_info`: node classes, checkpoint and sampler names), cached briefly.

Clients asking for a preset's allowed values should not each cost a ComfyUI round trip, nor wait
long for a ComfyUI that is down: an answer is kept `ttl` seconds, a failure `retry_after` seconds,
and a fetch that takes longer than `timeout` counts as a failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.errors import ComfyError

log = logging.getLogger(__name__)

ObjectInfo = dict[str, Any]


class Catalog:
    def __init__(
        self, *, fetch: Callable[[], Awaitable[ObjectInfo]], ttl: float = 30.0, timeout: float = 2.0,
        retry_after: float = 5.0, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._timeout = timeout
        self._retry_after = retry_after
        self._clock = clock
        self._value: ObjectInfo | None = None
        self._valid_until = float("-inf")
        self._lock = asyncio.Lock()

    async def object_info(self) -> ObjectInfo | None:
        """ComfyUI's `/object_info`, or None when it did not answer (recently)."""
        async with self._lock:  # concurrent callers share one fetch
            if self._clock() < self._valid_until:
                return self._value
            try:
                async with asyncio.timeout(self._timeout):
                    self._value = await self._fetch()
                self._valid_until = self._clock() + self._ttl
            except (ComfyError, TimeoutError) as exc:
                log.debug("object_info unavailable: %r", exc)
                self._value = None
                self._valid_until = self._clock() + self._retry_after
            return self._value
