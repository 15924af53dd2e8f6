"""Result images on SQLite: the gallery (every done job's images) and the saved results."""

from __future__ import annotations

import time

import aiosqlite

from gateway.jobs import Job, StoredImage
from gateway.storage import JOB_COLUMNS, ImageRow, SavedRow, job_from_row
from gateway.store.base import Connected


async def add_images(db: aiosqlite.Connection, job: Job) -> None:
    """Show a done job's images in the gallery (in the caller's transaction; once, however often
    the job is saved)."""
    await db.executemany(
        "INSERT OR IGNORE INTO images (id, job_id, preset, relative_path, thumb_path, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(f"{job.id}-{i}", job.id, job.preset, image.relative_path, image.thumb_path,
          job.finished_at or time.time()) for i, image in enumerate(job.images)],
    )


class Gallery(Connected):
    async def images(self, *, limit: int, offset: int, preset: str | None = None) -> tuple[list[ImageRow], int]:
        """Result images, newest first, and how many there are in all."""
        where, args = ("WHERE i.preset = ?", (preset,)) if preset is not None else ("", ())
        row = await self._row(f"SELECT count(*) FROM images i {where}", args)
        total = int(row[0]) if row else 0
        columns = ", ".join(f"j.{c.strip()}" for c in JOB_COLUMNS.split(","))
        rows = await self._rows(
            f"SELECT i.id, i.relative_path, i.thumb_path, i.created_at, {columns} FROM images i "
            f"JOIN jobs j ON j.id = i.job_id {where} ORDER BY i.seq DESC LIMIT ? OFFSET ?",
            (*args, limit, offset))
        found = []
        for r in rows:
            job = job_from_row(r[4:])
            image = next((i for i in job.images if i.relative_path == r[1]), StoredImage(r[1], thumb_path=r[2]))
            found.append(ImageRow(id=str(r[0]), job=job, image=image, created_at=float(r[3])))
        return found, total

    async def add_saved(self, row: SavedRow) -> None:
        async with self._write() as w:
            await w.db.execute(
                "INSERT INTO saved (id, label, job_id, relative_path, created_at) VALUES (?, ?, ?, ?, ?)",
                (row.id, row.label, row.job_id, row.relative_path, row.created_at),
            )

    async def get_saved(self, saved_id: str) -> SavedRow | None:
        row = await self._row("SELECT id, label, job_id, relative_path, created_at FROM saved WHERE id=?", (saved_id,))
        return SavedRow(*row) if row else None

    async def list_saved(self, limit: int, offset: int) -> tuple[list[SavedRow], int]:
        """A page of saved results, newest first, and how many there are in all."""
        async with self._db.execute(
            "SELECT id, label, job_id, relative_path, created_at FROM saved ORDER BY seq DESC LIMIT ? OFFSET ?",
            (limit, offset),
        ) as cur:
            rows = [SavedRow(*r) for r in await cur.fetchall()]
        total = await self._row("SELECT count(*) FROM saved")
        return rows, int(total[0]) if total else 0

    async def delete_saved(self, saved_id: str) -> SavedRow | None:
        """Remove a saved result's row; returns it (None if there was none)."""
        async with self._write() as w:
            async with w.db.execute(
                "SELECT id, label, job_id, relative_path, created_at FROM saved WHERE id=?", (saved_id,)
            ) as cur:
                row = await cur.fetchone()
            if row is not None:
                await w.db.execute("DELETE FROM saved WHERE id=?", (saved_id,))
        return SavedRow(*row) if row else None
