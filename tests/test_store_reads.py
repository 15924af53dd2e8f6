"""Reads of one job by its id go to the SQLite store's read-only connection, at once on the
caller's thread; they see committed data only, and fall back to the main connection's thread."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.jobs import Job
from gateway.store import SqliteStore


def new_job(job_id: str) -> Job:
    return Job(id=job_id, preset="p", label="Preset: P", params={"seed": 1}, created_at=1.0)


class Busy:
    """A read-only connection that SQLite keeps busy (a checkpoint taking its lock)."""

    def execute(self, *_: Any) -> Any:
        raise sqlite3.OperationalError("database is locked")


@pytest.mark.parametrize("folder", ["plain", "with space #and ?marks"])
async def test_a_job_is_read_by_the_read_only_connection_without_the_main_one(tmp_path: Path, folder: str,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store = await SqliteStore.open(tmp_path / folder / "gateway.db")
    try:
        await store.add_jobs([new_job("a")])

        async def refused(*_: Any) -> Any:
            raise AssertionError("the main connection's thread was asked")

        monkeypatch.setattr(store._db, "execute_fetchall", refused)
        job = await store.get("a")
        assert job is not None and job.id == "a"
        assert await store.get("missing") is None
    finally:
        monkeypatch.undo()
        await store.close()


async def test_a_read_that_cannot_run_at_once_goes_to_the_main_connection(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "gateway.db")
    try:
        await store.add_jobs([new_job("a")])
        store._reader = Busy()  # type: ignore[assignment]
        job = await store.get("a")
        assert job is not None and job.id == "a"
    finally:
        store._reader = None
        await store.close()


async def test_the_read_only_connection_sees_only_committed_jobs_and_cannot_write(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "gateway.db")
    try:
        assert store._reader is not None
        await store._db.execute("BEGIN IMMEDIATE")
        await store._db.execute("INSERT INTO jobs (id, preset, label, params, created_at, state) "
                                "VALUES ('open', 'p', 'L', '{}', 1.0, 'queued')")
        assert await store.get("open") is None  # written, not committed
        await store._db.execute("COMMIT")
        assert (job := await store.get("open")) is not None and job.id == "open"
        with pytest.raises(sqlite3.OperationalError):
            store._reader.execute("DELETE FROM jobs")
    finally:
        await store.close()
