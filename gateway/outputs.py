"""Files the gateway keeps: result images under the uploads folder (their thumbnails and public
URLs), saved results, and the reference images sent with requests.

Names are `presets/<slug>/gen_<unix seconds>_<96 random bits>.<ext>`: they never collide, and
since they are served without a key, one name says nothing about any other. Saved results are
links (or copies) under `saved/`, so removing old results never removes a saved one. A result's
thumbnail is made when it is first asked for, then kept on disk under the thumbnails folder.
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

from gateway.atomic import write_atomic, write_new
from gateway.refimages import sniff

log = logging.getLogger(__name__)

STATIC_PREFIX = "/static/uploads"
THUMBS_PREFIX = "/static/thumbs"
THUMB_SIZE = 320
"""Thumbnails fit in a square of this many pixels."""
THUMBS_AT_ONCE = 2
"""Thumbnails decoded at the same time: a gallery page asking for fifty new ones at once must not
take every core from ComfyUI."""
RESULTS_FOLDER = "presets"
SAVED_FOLDER = "saved"
_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".gif"}
_REFERENCE_NAME = re.compile(r"^gw_[0-9a-f]{40}\.(png|jpg|webp)$")


class OutputStore:
    def __init__(self, root: Path, *, thumbs: Path | None = None) -> None:
        self.root = root
        self.thumbs = thumbs if thumbs is not None else root.parent / "thumbs"
        self._making: dict[str, asyncio.Task[None]] = {}
        """Thumbnails being made, by path: a second request for one waits for the first."""
        self._thumb_slots = asyncio.Semaphore(THUMBS_AT_ONCE)

    @staticmethod
    def url(relative_path: str) -> str:
        return f"{STATIC_PREFIX}/{relative_path}"

    @staticmethod
    def thumb_url(thumb_path: str) -> str:
        return f"{THUMBS_PREFIX}/{thumb_path}"

    def thumbnail(self, relative_path: str, data: bytes) -> str | None:
        """Where the thumbnail (WebP) of a result image will be served: its path relative to
        the thumbnails folder; None when the file is not an image of a kind results come in.

        Nothing is decoded or written here: the thumbnail is made on its first request
        (`thumbnail_ready`), so a finished job never waits for it, and one nobody looks at costs
        nothing. Only the file's first bytes are looked at.
        """
        if not is_image(data):
            log.warning("no thumbnail for %s: not a PNG, JPEG, WebP or GIF image", relative_path)
            return None
        return thumb_path_of(relative_path)

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
        sources = [] if stem is None else [self.root / f"{stem}{ext}" for ext in _EXTENSIONS]
        source = next((path for path in sources if path.is_file()), None)
        if source is None:
            return
        try:
            encoded = _thumbnail(source.read_bytes())
            write_atomic(self.thumbs / thumb_path, encoded)
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
            log.warning("no thumbnail %s: %s", thumb_path, exc)

    async def close(self) -> None:
        """Finish the thumbnails being made."""
        await asyncio.gather(*self._making.values(), return_exceptions=True)

    def path(self, relative_path: str) -> Path:
        return self.root / relative_path

    async def save(self, slug: str, data: bytes, source_name: str) -> str:
        """Write one result file and flush it to disk; returns its path relative to the uploads
        folder. The name is new and random, so the file is never seen half-written: nothing names
        it until the caller stores the path with its job.

        Raises OSError (disk full, folder not writable) with nothing left half-written.
        """
        ext = PurePosixPath(source_name).suffix.lower()
        if ext not in _EXTENSIONS:
            ext = ".png"
        relative = f"{RESULTS_FOLDER}/{slug}/gen_{int(time.time())}_{secrets.token_hex(12)}{ext}"
        await asyncio.to_thread(write_new, self.root / relative, data)
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


def is_image(data: bytes) -> bool:
    """Whether a file's first bytes are those of a PNG, JPEG, WebP or GIF image."""
    return sniff(data) is not None or data[:6] in (b"GIF87a", b"GIF89a")


def thumb_path_of(relative_path: str) -> str:
    """A result's thumbnail path, relative to the thumbnails folder: the same name, in WebP."""
    return str(PurePosixPath(relative_path).with_suffix(".webp"))


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


def _thumbnail(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as opened:
        opened.thumbnail((THUMB_SIZE, THUMB_SIZE))
        image: Image.Image = opened
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        out = io.BytesIO()
        image.save(out, "WEBP", quality=80, method=4)
    return out.getvalue()
