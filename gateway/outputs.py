"""Result files under the uploads folder, their thumbnails, and their public URLs.

Names are `presets/<slug>/gen_<unix seconds>_<96 random bits>.<ext>`: they never collide, and
since they are served without a key, one name says nothing about any other.
"""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import time
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

from gateway.atomic import write_atomic

log = logging.getLogger(__name__)

STATIC_PREFIX = "/static/uploads"
THUMBS_PREFIX = "/static/thumbs"
THUMB_SIZE = 320
"""Thumbnails fit in a square of this many pixels."""
_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".gif"}


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
        relative = f"presets/{slug}/gen_{int(time.time())}_{secrets.token_hex(12)}{ext}"
        await asyncio.to_thread(write_atomic, self.root / relative, data)
        return relative


def _thumbnail(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as opened:
        opened.thumbnail((THUMB_SIZE, THUMB_SIZE))
        image: Image.Image = opened
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        out = io.BytesIO()
        image.save(out, "WEBP", quality=80, method=4)
    return out.getvalue()
