"""Output retention: the sweep over real files and a real store, and `comfy-gateway cleanup`.
(The same over a bucket: tests/test_outputs_s3.py.)"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.__main__ import main
from gateway.jobs import Job
from gateway.outputs import ReferenceStore, StoredFile
from gateway.outputs_local import LocalOutputStore
from gateway.retention import DAY, expired, sweep
from gateway.storage import Store
from gateway.store import SqliteStore
from tests.helpers import ROOT

NOW = 1_800_000_000.0
OLD_REF = "gw_" + "1" * 40 + ".png"
LIVE_REF = "gw_" + "2" * 40 + ".png"


@pytest.mark.parametrize(
    ("files", "cutoff", "keep", "expected"),
    [
        ([], 10.0, set(), []),
        ([StoredFile("a", 9.0, 1), StoredFile("b", 10.0, 2), StoredFile("c", 11.0, 3)], 10.0, set(), [("a", 1)]),
        ([StoredFile("/x/a", 1.0, 1), StoredFile("/x/b", 1.0, 2)], 10.0, {"b"}, [("/x/a", 1)]),
        ([StoredFile("s3://b/p/presets/x.png", 1.0, 5)], 10.0, {"presets"}, [("s3://b/p/presets/x.png", 5)]),
    ],
)
def test_expired(files: list[StoredFile], cutoff: float, keep: set[str], expected: list[tuple[str, int]]) -> None:
    assert expired(files, cutoff, keep) == expected


def write(path: Path, age_days: float, data: bytes = b"img") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stamp = NOW - age_days * DAY
    os.utime(path, (stamp, stamp))
    return path


@pytest.fixture
async def layout(tmp_path: Path) -> AsyncIterator[tuple[LocalOutputStore, ReferenceStore, Store, dict[str, Path]]]:
    outputs, refs = LocalOutputStore(tmp_path / "uploads"), ReferenceStore(tmp_path / "references")
    store = await SqliteStore.open(tmp_path / "gateway.db")
    await store.add_jobs([Job(id="live", preset="p", label="P", params={}, created_at=1.0, references=(LIVE_REF,))])
    files = {
        "old": write(outputs.root / "presets/p/gen_old.png", 40),
        "new": write(outputs.root / "presets/p/gen_new.png", 2),
        "old_thumb": write(outputs.thumbs / "presets/p/gen_old.webp", 40),
        "new_thumb": write(outputs.thumbs / "presets/p/gen_new.webp", 2),
        "saved": write(outputs.root / "saved/kept.png", 400),
        "old_ref": write(refs.root / OLD_REF, 40),
        "live_ref": write(refs.root / LIVE_REF, 40),
    }
    yield outputs, refs, store, files
    await store.close()


async def test_sweep_removes_old_unsaved_files_only(layout: tuple[LocalOutputStore, ReferenceStore, Store,
                                                                  dict[str, Path]]) -> None:
    outputs, refs, store, files = layout
    dry = await sweep(outputs=outputs, references=refs, store=store, older_than_days=30, dry_run=True, now=NOW)
    assert sorted(dry.locations) == sorted(str(files[k]) for k in ("old", "old_thumb", "old_ref"))
    assert dry.bytes == 9
    assert all(p.exists() for p in files.values())
    done = await sweep(outputs=outputs, references=refs, store=store, older_than_days=30, now=NOW)
    assert done.locations == dry.locations
    assert {k for k, p in files.items() if p.exists()} == {"new", "new_thumb", "saved", "live_ref"}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GATEWAY_PRESETS", str(ROOT / "presets.yaml"))
    monkeypatch.delenv("GATEWAY_RETENTION_DAYS", raising=False)
    return tmp_path / "data"


def test_cleanup_command(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(env / "uploads/presets/p/gen_old.png", 10)
    os.utime(old, (time.time() - 10 * DAY, time.time() - 10 * DAY))
    fresh = write(env / "uploads/presets/p/gen_new.png", 0)
    os.utime(fresh, None)
    assert main(["cleanup", "--older-than", "7", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would remove {old}" in out and "would remove 1 file(s), 3 bytes, older than 7 day(s)" in out
    assert old.exists()
    assert main(["cleanup", "--older-than", "7"]) == 0
    assert "removed 1 file(s)" in capsys.readouterr().out
    assert not old.exists() and fresh.exists()


def test_cleanup_needs_an_age(env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["cleanup"]) == 2
    assert "--older-than" in capsys.readouterr().err
    monkeypatch.setenv("GATEWAY_RETENTION_DAYS", "3")
    assert main(["cleanup", "--dry-run"]) == 0
    assert "older than 3 day(s)" in capsys.readouterr().out
