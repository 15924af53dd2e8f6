"""Removes old unsaved result images (and their thumbnails) and reference images no job needs any more.

Saved results live under `saved/` as their own copies or links, so they are never touched here.
Job records stay; an expired result's URL then answers 404.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from gateway.outputs import OutputStore, ReferenceStore, StoredFile
from gateway.storage import Store

log = logging.getLogger(__name__)

DAY = 86400.0
INTERVAL = 3600.0


@dataclass(frozen=True)
class Swept:
    locations: list[str]
    """What was removed (or with `dry_run`, would be): paths, or s3:// URLs of objects."""
    bytes: int


def expired(files: Iterable[StoredFile], cutoff: float, keep: set[str]) -> list[tuple[str, int]]:
    """Of `(location, mtime, size)`, those last written before `cutoff` whose name is not in `keep`."""
    return [(location, size) for location, mtime, size in files
            if mtime < cutoff and PurePosixPath(location).name not in keep]


async def sweep(*, outputs: OutputStore, references: ReferenceStore, store: Store, older_than_days: float,
                dry_run: bool = False, now: float | None = None) -> Swept:
    """Remove (or with `dry_run`, only list) files older than `older_than_days`."""
    cutoff = (time.time() if now is None else now) - older_than_days * DAY
    results = expired(await outputs.results(), cutoff, set())
    refs = expired(await references.files(), cutoff, await store.live_references())
    if not dry_run:
        await outputs.delete([location for location, _ in results])
        await references.delete([location for location, _ in refs])
    chosen = results + refs
    return Swept(locations=[location for location, _ in chosen], bytes=sum(size for _, size in chosen))


async def run_periodically(*, outputs: OutputStore, references: ReferenceStore, store: Store,
                           retention_days: int, idempotency_seconds: float, interval: float = INTERVAL) -> None:
    """Every `interval`: drop expired idempotency keys and (when retention is on) old files."""
    while True:
        try:
            await store.forget_idempotency(time.time() - idempotency_seconds)
            if retention_days > 0:
                swept = await sweep(outputs=outputs, references=references, store=store,
                                    older_than_days=retention_days)
                if swept.locations:
                    log.info("retention: removed %d file(s), %d bytes", len(swept.locations), swept.bytes)
        except Exception:
            log.exception("retention sweep failed; trying again later")
        await asyncio.sleep(interval)
