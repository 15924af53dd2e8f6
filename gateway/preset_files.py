"""presets.yaml, workflows/ and covers/ on disk, written so that a crash never leaves them corrupt.

Every file is written to a temporary name in its folder, flushed to disk and renamed over the
old one (then the folder itself is flushed), so a reader sees the old file or the new one, never
a part. A preset's new workflow and cover are written before presets.yaml names them, and old
ones are removed only after presets.yaml no longer does: a crash in between leaves at most an
unused file. Files the gateway writes are named `<slug>.<8 hex digits>.<ext>`; only such files
are ever removed, never one written by hand.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from gateway.atomic import write_atomic

WORKFLOWS_DIR = "workflows"
COVERS_DIR = "covers"
_OURS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.[0-9a-f]{8}\.(json|png|jpg|webp)$")


def render_specs(specs: Mapping[str, Mapping[str, Any]], previous_text: str = "") -> str:
    """The YAML text of presets.yaml. The comment block at the top of the old file is kept;
    comments between entries are not."""
    header = []
    for line in previous_text.splitlines():
        if line.startswith("#") or not line.strip():
            header.append(line)
        else:
            break
    while header and not header[-1].strip():
        header.pop()
    body = yaml.safe_dump({k: dict(v) for k, v in specs.items()}, sort_keys=False, allow_unicode=True, width=100)
    return ("\n".join(header) + "\n\n" if header else "") + (body if specs else "")


def write_specs(path: Path, specs: Mapping[str, Mapping[str, Any]]) -> None:
    previous = path.read_text(encoding="utf-8") if path.exists() else ""
    write_atomic(path, render_specs(specs, previous).encode("utf-8"))


def _new_name(folder: Path, slug: str, ext: str) -> Path:
    while True:
        candidate = folder / f"{slug}.{secrets.token_hex(4)}.{ext}"
        if not candidate.exists():
            return candidate


def write_workflow(base: Path, slug: str, workflow: Mapping[str, Any]) -> str:
    """Write a workflow as given (either format); returns its path relative to `base`."""
    target = _new_name(base / WORKFLOWS_DIR, slug, "json")
    write_atomic(target, json.dumps(workflow, indent=2, ensure_ascii=False).encode("utf-8"))
    return target.relative_to(base).as_posix()


def write_cover(base: Path, slug: str, data: bytes, ext: str) -> str:
    target = _new_name(base / COVERS_DIR, slug, ext)
    write_atomic(target, data)
    return target.relative_to(base).as_posix()


def referenced(specs: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Files presets.yaml names (workflows and covers), relative to its folder."""
    return {str(spec[key]) for spec in specs.values() for key in ("workflow", "cover") if spec.get(key)}


def remove_unreferenced(base: Path, specs: Mapping[str, Mapping[str, Any]], candidates: Iterable[str]) -> None:
    """Remove files the gateway wrote that presets.yaml no longer names."""
    used = referenced(specs)
    for relative in candidates:
        path = base / relative
        if relative not in used and _OURS.match(path.name) and path.parent.name in (WORKFLOWS_DIR, COVERS_DIR):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def signature(path: Path, files: Iterable[str]) -> tuple[tuple[str, int, int], ...]:
    """What changes when presets.yaml or a file it names is edited (modification time and size)."""
    found = []
    for file in (path, *(path.parent / f for f in sorted(files))):
        try:
            stat = file.stat()
        except OSError:
            found.append((str(file), -1, -1))
        else:
            found.append((str(file), stat.st_mtime_ns, stat.st_size))
    return tuple(found)
