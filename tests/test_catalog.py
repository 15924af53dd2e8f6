"""ComfyUI's /object_info, cached: one fetch for many callers, failures remembered briefly."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.catalog import Catalog
from gateway.errors import ComfyUnavailable


class Source:
    def __init__(self) -> None:
        self.calls = 0
        self.fail = False
        self.delay = 0.0

    async def fetch(self) -> dict[str, Any]:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ComfyUnavailable("down")
        return {"call": self.calls}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_an_answer_is_kept_for_ttl_seconds() -> None:
    source, clock = Source(), Clock()
    catalog = Catalog(fetch=source.fetch, ttl=30, clock=clock)
    assert await catalog.object_info() == {"call": 1}
    clock.now = 29.9
    assert await catalog.object_info() == {"call": 1}
    clock.now = 30.1
    assert await catalog.object_info() == {"call": 2}


async def test_concurrent_callers_share_one_fetch() -> None:
    source = Source()
    source.delay = 0.05
    catalog = Catalog(fetch=source.fetch)
    results = await asyncio.gather(*(catalog.object_info() for _ in range(20)))
    assert results == [{"call": 1}] * 20
    assert source.calls == 1


async def test_a_failure_is_none_and_remembered_for_retry_after() -> None:
    source, clock = Source(), Clock()
    source.fail = True
    catalog = Catalog(fetch=source.fetch, retry_after=5, clock=clock)
    assert await catalog.object_info() is None
    assert await catalog.object_info() is None
    assert source.calls == 1
    source.fail = False
    clock.now = 5.1
    assert await catalog.object_info() == {"call": 2}


async def test_a_slow_comfyui_counts_as_down() -> None:
    source = Source()
    source.delay = 10
    catalog = Catalog(fetch=source.fetch, timeout=0.01)
    assert await catalog.object_info() is None
