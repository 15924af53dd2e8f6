"""Removes old unsaved result images and reference images no job needs any more.

Saved results live under `saved/` as their own links or copies, so they are never touched here.
Job records stay; an expired result's URL then answers 404.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.outputs import RESULTS_FOLDER, OutputStore, ReferenceStore
from gateway.store import Store

log = logging.getLogger(__name__)

DAY = 86400.0
INTERVAL = 3600.0


@dataclass(frozen=True)
class Swept:
    paths: list[Path]
    bytes: int


def expired(files: Iterable[tuple[Path, float, int]], cutoff: float, keep: set[str]) -> list[tuple[Path, int]]:
    """Of `(path, mtime, size)`, those last written before `cutoff` whose name is not in `keep`."""
    return [(path, size) for path, mtime, size in files if mtime < cutoff and path.name not in keep]


def _files(root: Path) -> list[tuple[Path, float, int]]:
    found = []
    if root.is_dir():
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                stat = path.stat()
                found.append((path, stat.st_mtime, stat.st_size))
    return found


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


async def sweep(*, outputs: OutputStore, references: ReferenceStore, store: Store, older_than_days: float,
                dry_run: bool = False, now: float | None = None) -> Swept:
    """Remove (or with `dry_run`, only list) files older than `older_than_days`."""
    cutoff = (time.time() if now is None else now) - older_than_days * DAY
    results = await asyncio.to_thread(_files, outputs.root / RESULTS_FOLDER)
    refs = await asyncio.to_thread(_files, references.root)
    chosen = expired(results, cutoff, set()) + expired(refs, cutoff, await store.live_references())
    paths = [path for path, _ in chosen]
    if not dry_run:
        await asyncio.to_thread(_remove, paths)
    return Swept(paths=paths, bytes=sum(size for _, size in chosen))


async def run_periodically(*, outputs: OutputStore, references: ReferenceStore, store: Store,
                           retention_days: int, idempotency_seconds: float, interval: float = INTERVAL) -> None:
    """Every `interval`: drop expired idempotency keys and (when retention is on) old files."""
    while True:
        try:
            await store.forget_idempotency(time.time() - idempotency_seconds)
            if retention_days > 0:
                swept = await sweep(outputs=outputs, references=references, store=store,
                                    older_than_days=retention_days)
                if swept.paths:
                    log.info("retention: removed %d file(s), %d bytes", len(swept.paths), swept.bytes)
        except Exception:
            log.exception("retention sweep failed; trying again later")
        await asyncio.sleep(interval)
