"""Result images in a folder (the uploads folder, or a volume several replicas share), served by
the gateway at `/static/uploads/` and their thumbnails at `/static/thumbs/`. A thumbnail is made
when it is first asked for, then kept on disk."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from gateway import thumbnails
from gateway.atomic import write_atomic, write_new
from gateway.outputs import (
    CONTENT_TYPES,
    RESULTS_FOLDER,
    StoredFile,
    list_files,
    remove_files,
    result_name,
    saved_name,
    thumb_name,
)

log = logging.getLogger(__name__)

STATIC_PREFIX = "/static/uploads"
THUMBS_PREFIX = "/static/thumbs"
THUMBS_AT_ONCE = 2
"""Thumbnails decoded at the same time: a gallery page asking for fifty new ones at once must not
take every core from ComfyUI."""


class LocalOutputStore:
    """An `OutputStore` on the local file system."""

    def __init__(self, root: Path, *, thumbs: Path | None = None) -> None:
        self.root = root
        self.thumbs = thumbs if thumbs is not None else root.parent / "thumbs"
        self._making: dict[str, asyncio.Task[None]] = {}
        """Thumbnails being made, by path: a second request for one waits for the first."""
        self._thumb_slots = asyncio.Semaphore(THUMBS_AT_ONCE)

    def url(self, relative_path: str) -> str:
        return f"{STATIC_PREFIX}/{relative_path}"

    def thumb_url(self, thumb_path: str) -> str:
        return f"{THUMBS_PREFIX}/{thumb_path}"

    def thumbnail(self, relative_path: str, data: bytes) -> str | None:
        """Nothing is decoded or written here: the thumbnail is made on its first request
        (`thumbnail_ready`), so a finished job never waits for it, and one nobody looks at costs
        nothing. Only the file's first bytes are looked at."""
        if not thumbnails.is_image(data):
            log.warning("no thumbnail for %s: not a PNG, JPEG, WebP or GIF image", relative_path)
            return None
        return thumb_name(relative_path)

    async def thumbnail_ready(self, thumb_path: str) -> None:
        """Make the thumbnail at `thumb_path` from its result image, unless it is on disk already.

        Requests for one thumbnail at once share the work. When there is no such result (or it
        cannot be decoded) nothing is written, and the thumbnail stays absent.
        """
        if _thumb_source_stem(thumb_path) is None or (self.thumbs / thumb_path).is_file():
            return
        task = self._making.get(thumb_path)
        if task is None:
            task = self._making[thumb_path] = asyncio.create_task(self._make_thumbnail(thumb_path))
            task.add_done_callback(lambda _: self._making.pop(thumb_path, None))
        await asyncio.shield(task)

    async def _make_thumbnail(self, thumb_path: str) -> None:
        async with self._thumb_slots:
            await asyncio.to_thread(self._make_thumbnail_now, thumb_path)

    def _make_thumbnail_now(self, thumb_path: str) -> None:
        stem = _thumb_source_stem(thumb_path)
        sources = [] if stem is None else [self.root / f"{stem}{ext}" for ext in CONTENT_TYPES]
        source = next((path for path in sources if path.is_file()), None)
        if source is None:
            return
        try:
            write_atomic(self.thumbs / thumb_path, thumbnails.thumbnail(source.read_bytes()))
        except thumbnails.UNREADABLE as exc:
            log.warning("no thumbnail %s: %s", thumb_path, exc)

    async def close(self) -> None:
        """Finish the thumbnails being made."""
        await asyncio.gather(*self._making.values(), return_exceptions=True)

    def path(self, relative_path: str) -> Path:
        return self.root / relative_path

    async def save(self, slug: str, data: bytes, source_name: str) -> str:
        """Write one result file and flush it to disk. The name is new and random, so the file is
        never seen half-written: nothing names it until the caller stores the path with its job.
        Raises OSError (disk full, folder not writable) with nothing left half-written."""
        relative = result_name(slug, source_name)
        await asyncio.to_thread(write_new, self.root / relative, data)
        return relative

    async def keep(self, relative_path: str) -> str:
        """A hard link (a copy across file systems) under `saved/`."""
        relative = saved_name(relative_path)
        await asyncio.to_thread(_link_or_copy, self.root / relative_path, self.root / relative)
        return relative

    async def remove(self, relative_path: str) -> None:
        await asyncio.to_thread((self.root / relative_path).unlink, missing_ok=True)

    async def results(self) -> list[StoredFile]:
        def listing() -> list[StoredFile]:
            return list_files(self.root / RESULTS_FOLDER) + list_files(self.thumbs / RESULTS_FOLDER)

        return await asyncio.to_thread(listing)

    async def delete(self, locations: Sequence[str]) -> None:
        await asyncio.to_thread(remove_files, locations)


def _thumb_source_stem(thumb_path: str) -> str | None:
    """The result path, without its extension, that a thumbnail path is made from; None for a
    path that names no result (outside the results folder, hidden, `..`, not WebP)."""
    path = PurePosixPath(thumb_path)
    parts = path.parts
    if path.suffix != ".webp" or len(parts) < 2 or parts[0] != RESULTS_FOLDER:
        return None
    if any(part.startswith(".") or part in ("", "..") for part in parts):
        return None
    return str(path.with_suffix(""))


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        if not source.is_file():
            raise
        shutil.copyfile(source, target)
