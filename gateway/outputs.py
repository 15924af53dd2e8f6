"""Result files under the uploads folder, and their public URLs.

Names are `presets/<slug>/gen_<unix seconds>_<96 random bits>.<ext>`: they never collide, and
since they are served without a key, one name says nothing about any other.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path, PurePosixPath

from gateway.atomic import write_atomic

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
        await asyncio.to_thread(write_atomic, self.root / relative, data)
        return relative
