"""Result images in a folder (the uploads folder, or a volume several replicas share), served by
the gateway at `/static/uploads/` and their thumbnails at `/static/thumbs/`."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from gateway import thumbnails
from gateway.atomic import write_atomic
from gateway.outputs import RESULTS_FOLDER, StoredFile, list_files, remove_files, result_name, saved_name, thumb_name

log = logging.getLogger(__name__)

STATIC_PREFIX = "/static/uploads"
THUMBS_PREFIX = "/static/thumbs"


class LocalOutputStore:
    """An `OutputStore` on the local file system."""

    def __init__(self, root: Path, *, thumbs: Path | None = None) -> None:
        self.root = root
        self.thumbs = thumbs if thumbs is not None else root.parent / "thumbs"
        self._making: dict[str, asyncio.Task[None]] = {}
        """Thumbnails being made, by path: a request for one waits for it."""

    def url(self, relative_path: str) -> str:
        return f"{STATIC_PREFIX}/{relative_path}"

    def thumb_url(self, thumb_path: str) -> str:
        return f"{THUMBS_PREFIX}/{thumb_path}"

    def thumbnail(self, relative_path: str, data: bytes) -> str | None:
        """Start making the thumbnail in the background (the job's result does not wait for it);
        `thumbnail_ready` waits for a pending one."""
        if not thumbnails.readable(data, relative_path):
            return None
        thumb = thumb_name(relative_path)
        task = self._making[thumb] = asyncio.create_task(self._make_thumbnail(thumb, data))
        task.add_done_callback(lambda _: self._making.pop(thumb, None))
        return thumb

    async def _make_thumbnail(self, thumb: str, data: bytes) -> None:
        try:
            encoded = await asyncio.to_thread(thumbnails.thumbnail, data)
            await asyncio.to_thread(write_atomic, self.thumbs / thumb, encoded)
        except thumbnails.UNREADABLE as exc:
            log.warning("no thumbnail %s: %s", thumb, exc)

    async def thumbnail_ready(self, thumb_path: str) -> None:
        """Wait until the thumbnail at `thumb_path` is written, if it is being made now."""
        task = self._making.get(thumb_path)
        if task is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        """Finish the thumbnails being made."""
        await asyncio.gather(*self._making.values(), return_exceptions=True)

    def path(self, relative_path: str) -> Path:
        return self.root / relative_path

    async def save(self, slug: str, data: bytes, source_name: str) -> str:
        """Write one result file atomically. Raises OSError (disk full, folder not writable) with
        nothing left half-written."""
        relative = result_name(slug, source_name)
        await asyncio.to_thread(write_atomic, self.root / relative, data)
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


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        if not source.is_file():
            raise
        shutil.copyfile(source, target)
