"""The live set of presets: loaded at startup, changed through the API, reloaded on hand edits.

`presets` is one dict that the rest of the gateway reads; every change replaces its contents in
a single step of the event loop, so a reader sees the old set or the new one. A change through
the API is validated like the startup load (the whole new set is built from the files), written
with `preset_files` (atomic), then swapped in. A hand edit of presets.yaml (or of a file it names)
is seen by `watch()` and reloaded; a broken edit is logged and the old set kept.

Editor-format workflows are converted with ComfyUI's `/object_info`. The last one fetched is kept
in `cache_path` (`<data dir>/object_info.json`), so such presets load at startup even before
ComfyUI answers; without any, they are reported in `unconverted` until one is fetched. With
several backends it is asked of all of them and merged (`from_backends`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway import preset_files
from gateway.atomic import write_atomic
from gateway.choices import merge_object_info
from gateway.editor import ConversionError, is_editor_format
from gateway.errors import ComfyUnavailable, ConfigError, InvalidParameter, PresetExists, PresetNotFound
from gateway.models import Preset
from gateway.presets import LoadedPresets, parse_graph, presets_from_specs, read_specs

log = logging.getLogger(__name__)

FetchObjectInfo = Callable[[], Awaitable[dict[str, Any]]]


def from_backends(fetchers: Sequence[FetchObjectInfo]) -> FetchObjectInfo:
    """One /object_info for several ComfyUI backends, asked together: the node types of the first
    that answers (in configured order), every list of choices the union over all that answer
    (`merge_object_info`). Raises ComfyUnavailable when none answers."""
    if len(fetchers) == 1:
        return fetchers[0]

    async def fetch() -> dict[str, Any]:
        answers = await asyncio.gather(*(f() for f in fetchers), return_exceptions=True)
        infos = [a for a in answers if isinstance(a, dict)]
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, ComfyUnavailable):
                raise answer
        if not infos:
            raise ComfyUnavailable("no ComfyUI backend answered GET /object_info")
        return merge_object_info(infos)

    return fetch
_FIELDS = {"name", "description", "defaults", "params", "timeout"}


class PresetRegistry:
    def __init__(
        self, *, presets_path: Path, cache_path: Path, fetch_object_info: FetchObjectInfo | None = None,
        refresh_after: float = 10.0, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = presets_path
        self.cache_path = cache_path
        self.presets: dict[str, Preset] = {}
        self.unconverted: dict[str, str] = {}
        self.object_info: dict[str, Any] | None = self._read_cache()
        self.fetch_object_info = fetch_object_info
        """How to ask ComfyUI for /object_info; set once a client exists."""
        self._refresh_after = refresh_after
        self._clock = clock
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self._signature: object = None
        self._named: tuple[object, set[str]] = (None, set())
        """The files presets.yaml names, with the modification time and size it had when read."""

    # -- loading -------------------------------------------------------------------------------

    def _read_cache(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.cache_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data else None

    def _read(self) -> LoadedPresets:
        return presets_from_specs(read_specs(self.path), self.path.parent, object_info=self.object_info)

    def _swap(self, loaded: LoadedPresets) -> None:
        for slug, reason in loaded.unconverted.items():
            if self.unconverted.get(slug) != reason:
                log.warning("preset %r is not available: %s", slug, reason)
        self.unconverted = dict(loaded.unconverted)
        self.presets.clear()
        self.presets.update(loaded.presets)
        self._signature = self._current_signature()

    def _current_signature(self) -> object:
        """Modification times and sizes of presets.yaml and the files it names. presets.yaml is
        parsed again only when it changed: this runs every second."""
        own = preset_files.signature(self.path, ())
        if own != self._named[0]:
            try:
                files = preset_files.referenced(read_specs(self.path))
            except ConfigError:
                files = set()
            self._named = (own, files)
        return preset_files.signature(self.path, self._named[1])

    def load(self) -> None:
        """The startup load: raises ConfigError when presets.yaml or a workflow is wrong."""
        self._swap(self._read())

    def reload(self) -> bool:
        """Load again from disk; on any problem keep the current set and log why."""
        try:
            loaded = self._read()
        except ConfigError as exc:
            self._signature = self._current_signature()
            log.error("presets not reloaded, the previous set stays in use: %s", exc.message)
            return False
        self._swap(loaded)
        log.info("presets reloaded: %d available", len(self.presets))
        return True

    async def watch(self, interval: float = 1.0) -> None:
        """Reload whenever presets.yaml or a file it names changes (checked every `interval`)."""
        while True:
            await asyncio.sleep(interval)
            await self.check_for_changes()

    async def check_for_changes(self) -> bool:
        """Reload if the files changed since the last load; True when a reload was attempted."""
        async with self._lock:
            if self._current_signature() == self._signature:
                return False
            self.reload()
            return True

    # -- ComfyUI's /object_info ----------------------------------------------------------------

    async def refresh_object_info(self) -> dict[str, Any]:
        """Fetch /object_info, keep it (memory and cache file), and load presets that needed it.

        Raises ComfyUnavailable when ComfyUI does not answer.
        """
        if self.fetch_object_info is None:
            raise ComfyUnavailable("no ComfyUI to ask for /object_info")
        info = await self.fetch_object_info()
        self._fetched_at = self._clock()
        if info != self.object_info:
            self.object_info = info
            await asyncio.to_thread(write_atomic, self.cache_path,
                                    json.dumps(info, separators=(",", ":")).encode("utf-8"))
            if self.unconverted:
                self.reload()
        return info

    async def fresh_object_info(self) -> dict[str, Any] | None:
        """/object_info fetched within the last few seconds if ComfyUI answers, else the one kept."""
        if self._fetched_at is not None and self._clock() - self._fetched_at < self._refresh_after:
            return self.object_info
        try:
            return await self.refresh_object_info()
        except ComfyUnavailable:
            return self.object_info

    async def keep_object_info(self, *, first_delay: float = 1.0, max_delay: float = 60.0) -> None:
        """Fetch /object_info at startup, retrying with backoff until ComfyUI answers once."""
        delay = first_delay
        while True:
            try:
                await self.refresh_object_info()
                return
            except ComfyUnavailable as exc:
                log.debug("/object_info not fetched yet: %s", exc.message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)

    # -- changes through the API ---------------------------------------------------------------

    async def create(self, slug: str, fields: Mapping[str, Any], workflow: Mapping[str, Any],
                     cover: tuple[bytes, str] | None) -> Preset:
        async with self._lock:
            specs = read_specs(self.path)
            if slug in specs:
                raise PresetExists(f"a preset with slug '{slug}' exists", field="slug", slug=slug)
            spec = {k: v for k, v in fields.items() if k in _FIELDS and v is not None}
            return await self._apply(specs, slug, spec, workflow, cover)

    async def duplicate(self, slug: str, new_slug: str, name: str | None) -> Preset:
        async with self._lock:
            specs = read_specs(self.path)
            self._known(specs, slug)
            if new_slug in specs:
                raise PresetExists(f"a preset with slug '{new_slug}' exists", field="slug", slug=new_slug)
            spec = dict(specs[slug])
            spec["name"] = name or f"{spec.get('name', slug)} (copy)"
            return await self._apply(specs, new_slug, spec, None, None)

    async def update(self, slug: str, fields: Mapping[str, Any], workflow: Mapping[str, Any] | None,
                     cover: tuple[bytes, str] | None, remove_cover: bool = False) -> Preset:
        async with self._lock:
            specs = read_specs(self.path)
            self._known(specs, slug)
            spec = dict(specs[slug])
            for key, value in fields.items():
                if key not in _FIELDS:
                    continue
                if value is None:
                    spec.pop(key, None)
                else:
                    spec[key] = value
            if remove_cover:
                spec.pop("cover", None)
            return await self._apply(specs, slug, spec, workflow, cover)

    async def delete(self, slug: str) -> None:
        async with self._lock:
            specs = read_specs(self.path)
            self._known(specs, slug)
            old = specs.pop(slug)
            loaded = presets_from_specs(specs, self.path.parent, object_info=self.object_info)
            await asyncio.to_thread(self._write, specs, [old.get("workflow"), old.get("cover")])
            self._swap(loaded)

    def _known(self, specs: Mapping[str, Any], slug: str) -> None:
        if slug not in specs:
            raise PresetNotFound(f"no preset with slug '{slug}'", slug=slug)

    async def _apply(self, specs: dict[str, dict[str, Any]], slug: str, spec: dict[str, Any],
                     workflow: Mapping[str, Any] | None, cover: tuple[bytes, str] | None) -> Preset:
        """Write new files, check the whole new set as the startup load would, then commit it."""
        base = self.path.parent
        old = specs.get(slug, {})
        new_files: list[str] = []
        try:
            if workflow is not None:
                await self._check_workflow(slug, workflow)
                spec["workflow"] = await asyncio.to_thread(preset_files.write_workflow, base, slug, workflow)
                new_files.append(spec["workflow"])
            if cover is not None:
                spec["cover"] = await asyncio.to_thread(preset_files.write_cover, base, slug, *cover)
                new_files.append(spec["cover"])
            specs[slug] = spec
            try:
                loaded = presets_from_specs(specs, base, object_info=self.object_info)
            except ConfigError as exc:
                raise InvalidParameter(str(exc.details.get("field", "workflow")), exc.message) from None
            if slug in loaded.unconverted:
                raise InvalidParameter("workflow", loaded.unconverted[slug])
        except BaseException:
            await asyncio.to_thread(preset_files.remove_unreferenced, base, {}, new_files)
            raise
        await asyncio.to_thread(self._write, specs, [old.get("workflow"), old.get("cover")])
        self._swap(loaded)
        return loaded.presets[slug]

    async def _check_workflow(self, slug: str, workflow: Mapping[str, Any]) -> None:
        """Refuse a workflow that is neither format, or an editor one that cannot be converted."""
        info = await self.fresh_object_info() if is_editor_format(workflow) else None
        if is_editor_format(workflow) and info is None:
            raise ComfyUnavailable("converting an editor-format workflow needs ComfyUI's /object_info, and "
                                   "ComfyUI does not answer; try again later or send the API format")
        try:
            parse_graph(workflow, "workflow", info)
        except ConversionError as exc:
            problems = [dataclasses.asdict(p) for p in exc.problems]
            raise InvalidParameter("workflow", exc.message, problems=problems) from None
        except ConfigError as exc:
            raise InvalidParameter("workflow", exc.message) from None

    def _write(self, specs: Mapping[str, Mapping[str, Any]], replaced: list[Any]) -> None:
        preset_files.write_specs(self.path, specs)
        preset_files.remove_unreferenced(self.path.parent, specs, [str(f) for f in replaced if f])
