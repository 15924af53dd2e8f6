"""Files the gateway keeps: result images under the uploads folder (their thumbnails and public
URLs), saved results, and the reference images sent with requests.

Names are `presets/<slug>/gen_<unix seconds>_<96 random bits>.<ext>`: they never collide, and
since they are served without a key, one name says nothing about any other. Saved results are
links (or copies) under `saved/`, so removing old results never removes a saved one.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import secrets
import shutil
import time
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

from gateway.atomic import write_atomic

log = logging.getLogger(__name__)

STATIC_PREFIX = "/static/uploads"
THUMBS_PREFIX = "/static/thumbs"
THUMB_SIZE = 320
"""Thumbnails fit in a square of this many pixels."""
RESULTS_FOLDER = "presets"
SAVED_FOLDER = "saved"
_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".gif"}
_REFERENCE_NAME = re.compile(r"^gw_[0-9a-f]{40}\.(png|jpg|webp)$")


class OutputStore:
    def __init__(self, root: Path, *, thumbs: Path | None = None) -> None:
        self.root = root
        self.thumbs = thumbs if thumbs is not None else root.parent / "thumbs"
        self._making: dict[str, asyncio.Task[None]] = {}
        """Thumbnails being made, by path: a request for one waits for it."""

    @staticmethod
    def url(relative_path: str) -> str:
        return f"{STATIC_PREFIX}/{relative_path}"

    @staticmethod
    def thumb_url(thumb_path: str) -> str:
        return f"{THUMBS_PREFIX}/{thumb_path}"

    def thumbnail(self, relative_path: str, data: bytes) -> str | None:
        """Start making a result image's thumbnail (WebP) in the background; returns its path
        relative to the thumbnails folder, or None when the file is not an image Pillow can read.

        Only the image's header is read here: decoding a large PNG takes tens of milliseconds,
        which a job's result should not wait for. `thumbnail_ready` waits for a pending one.
        """
        try:
            with Image.open(io.BytesIO(data)):
                pass
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
            log.warning("no thumbnail for %s: %s", relative_path, exc)
            return None
        thumb = str(PurePosixPath(relative_path).with_suffix(".webp"))
        task = self._making[thumb] = asyncio.create_task(self._make_thumbnail(thumb, data))
        task.add_done_callback(lambda _: self._making.pop(thumb, None))
        return thumb

    async def _make_thumbnail(self, thumb: str, data: bytes) -> None:
        try:
            encoded = await asyncio.to_thread(_thumbnail, data)
            await asyncio.to_thread(write_atomic, self.thumbs / thumb, encoded)
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
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
        """Write one result file atomically; returns its path relative to the uploads folder.

        Raises OSError (disk full, folder not writable) with nothing left half-written.
        """
        ext = PurePosixPath(source_name).suffix.lower()
        if ext not in _EXTENSIONS:
            ext = ".png"
        relative = f"{RESULTS_FOLDER}/{slug}/gen_{int(time.time())}_{secrets.token_hex(12)}{ext}"
        await asyncio.to_thread(write_atomic, self.root / relative, data)
        return relative

    async def keep(self, relative_path: str) -> str:
        """Save a result for good: a hard link (a copy across file systems) under `saved/`;
        returns its relative path. Raises OSError when the result file is gone."""
        ext = PurePosixPath(relative_path).suffix.lower()
        relative = f"{SAVED_FOLDER}/{secrets.token_hex(16)}{ext if ext in _EXTENSIONS else '.png'}"
        await asyncio.to_thread(_link_or_copy, self.root / relative_path, self.root / relative)
        return relative

    async def remove(self, relative_path: str) -> None:
        await asyncio.to_thread((self.root / relative_path).unlink, missing_ok=True)


class ReferenceStore:
    """Reference images, kept under the data folder from the request until the job is submitted.

    Names are content-addressed (`gw_<sha256>.<ext>`): a request sent twice stores one file, and
    a job queued before a restart finds its images after it.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        if not _REFERENCE_NAME.match(name):
            raise ValueError(f"not a reference image name: {name!r}")
        return self.root / name

    async def save(self, name: str, data: bytes) -> None:
        """Write one image; an existing one is only touched, so that retention keeps it."""
        target = self.path(name)
        if target.exists():
            await asyncio.to_thread(os.utime, target)
        else:
            await asyncio.to_thread(write_atomic, target, data)

    async def read(self, name: str) -> bytes:
        """The image's bytes; raises OSError when it is gone."""
        return await asyncio.to_thread(self.path(name).read_bytes)


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        if not source.is_file():
            raise
        shutil.copyfile(source, target)


def _thumbnail(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as opened:
        opened.thumbnail((THUMB_SIZE, THUMB_SIZE))
        image: Image.Image = opened
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        out = io.BytesIO()
        image.save(out, "WEBP", quality=80, method=4)
    return out.getvalue()
