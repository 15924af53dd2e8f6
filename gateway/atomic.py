"""Write a file so that readers, and a crash, see the old content or the new, never a part."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(target: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, flush to disk, rename over `target`, then
    flush the folder. Raises OSError (disk full, folder not writable) with nothing half-written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(target.parent)


def write_new(target: Path, data: bytes) -> None:
    """Create `target`, which must not exist, and flush it and its folder entry to disk.

    For a file nobody can know the name of until the caller publishes it (a result's random name
    stored with its job): no reader can see it being written, so the temporary name and the rename
    of `write_atomic` are not needed, and the folder's flush finds the new entry already in the
    journal commit of the file's own flush. Raises OSError (FileExistsError when the name is
    taken, disk full) after removing what was written.
    """
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:  # the folder's first file: the new folders are flushed too
        created = []
        for folder in target.parents:
            if folder.exists():
                break
            created.append(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        for folder in created:
            _sync_folder(folder.parent)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    _sync_folder(target.parent)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
