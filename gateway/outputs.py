"""Files the gateway keeps: the `OutputStore` protocol for result images (their thumbnails, public
URLs and saved copies), the names its implementations share, and the reference images sent with
requests.

Result names are `presets/<slug>/gen_<unix seconds>_<96 random bits>.<ext>`: they never collide,
and since they are served without a key, one name says nothing about any other. Saved results are
copies (or links) under `saved/`, so removing old results never removes a saved one.

Two implementations: `outputs_local.LocalOutputStore` (a folder, served by the gateway itself) and
`outputs_s3.S3OutputStore` (an S3-compatible bucket, served from there); `gateway.app` picks one.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import NamedTuple, Protocol

from gateway.atomic import write_atomic

RESULTS_FOLDER = "presets"
SAVED_FOLDER = "saved"
IMMUTABLE = "public, max-age=31536000, immutable"
"""Cache-Control of result files and thumbnails: a name is never used for other bytes."""
CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
                 ".gif": "image/gif"}
_REFERENCE_NAME = re.compile(r"^gw_[0-9a-f]{40}\.(png|jpg|webp)$")


class StoredFile(NamedTuple):
    location: str
    """Where the file is, as its store names it for removal and for people (a path, an s3:// URL)."""
    modified: float
    size: int


class ResultUrls(Protocol):
    """Public URLs of result files and thumbnails, as job records and the gallery show them."""

    def url(self, relative_path: str) -> str: ...

    def thumb_url(self, thumb_path: str) -> str: ...


class OutputStore(ResultUrls, Protocol):
    """Where result images go. Names passed in and out are relative to the store (`presets/...`,
    `saved/...`); thumbnails have their own names (`presets/....webp`)."""

    async def save(self, slug: str, data: bytes, source_name: str) -> str:
        """Store one result file whole; returns its relative path. Raises OSError with nothing
        stored when it cannot be written."""
        ...

    def thumbnail(self, relative_path: str, data: bytes) -> str | None:
        """The name of the thumbnail of the result just saved at `relative_path` (`data`): one that
        will be served, whether it is made now or on its first request; None when the result is
        not an image."""
        ...

    async def close(self) -> None:
        """Finish work still going on (thumbnails being made); the store stays usable."""
        ...

    async def keep(self, relative_path: str) -> str:
        """Save a result for good under `saved/`; returns the copy's relative path. Raises
        FileNotFoundError when the result is gone (removed by retention)."""
        ...

    async def remove(self, relative_path: str) -> None:
        """Remove one file (a saved copy); a missing one is no error."""
        ...

    async def results(self) -> list[StoredFile]:
        """Every unsaved result file and result thumbnail, for retention."""
        ...

    async def delete(self, locations: Sequence[str]) -> None:
        """Remove files `results` listed, by location."""
        ...


def result_name(slug: str, source_name: str, now: float | None = None) -> str:
    """A new result file's relative path; keeps the source's extension when it is an image's."""
    stamp = int(time.time() if now is None else now)
    return f"{RESULTS_FOLDER}/{slug}/gen_{stamp}_{secrets.token_hex(12)}{_extension(source_name)}"


def saved_name(relative_path: str) -> str:
    """A new relative path under `saved/` for a copy of the result at `relative_path`."""
    return f"{SAVED_FOLDER}/{secrets.token_hex(16)}{_extension(relative_path)}"


def thumb_name(relative_path: str) -> str:
    """The thumbnail's name for the result at `relative_path`."""
    return str(PurePosixPath(relative_path).with_suffix(".webp"))


def content_type(name: str) -> str:
    return CONTENT_TYPES[_extension(name)]


def _extension(name: str) -> str:
    ext = PurePosixPath(name).suffix.lower()
    return ext if ext in CONTENT_TYPES else ".png"


def list_files(root: Path) -> list[StoredFile]:
    """Every regular file under `root` (none when it does not exist); blocking."""
    found = []
    if root.is_dir():
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                stat = path.stat()
                found.append(StoredFile(str(path), stat.st_mtime, stat.st_size))
    return found


def remove_files(locations: Sequence[str]) -> None:
    """Remove the files at these paths; blocking."""
    for location in locations:
        Path(location).unlink(missing_ok=True)


class ReferenceStore:
    """Reference images, kept under the data folder from the request until the job is submitted
    (always local: they are only the gateway's input).

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

    async def files(self) -> list[StoredFile]:
        return await asyncio.to_thread(list_files, self.root)

    async def delete(self, locations: Sequence[str]) -> None:
        await asyncio.to_thread(remove_files, locations)
