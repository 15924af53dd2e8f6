"""Result files under the uploads folder, and their public URLs.

Names are `presets/<slug>/gen_<unix seconds>_<96 random bits>.<ext>`: they never collide, and
since they are served without a key, one name says nothing about any other.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from pathlib import Path, PurePosixPath

STATIC_PREFIX = "/static/uploads"
_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".gif"}


class OutputStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def url(relative_path: str) -> str:
        return f"{STATIC_PREFIX}/{relative_path}"

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
        await asyncio.to_thread(self._write, self.root / relative, data)
        return relative

    @staticmethod
    def _write(target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
