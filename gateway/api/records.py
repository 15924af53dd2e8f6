"""Jobs and presets as the API shows them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.jobs import Job, State
from gateway.models import ImageOut, JobRecord, JobResult, Preset, PresetDetail, PresetInfo, PresetSummary
from gateway.outputs import OutputStore
from gateway.parameters import describe

COVERS_PREFIX = "/static/covers"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_record(job: Job) -> JobRecord:
    images = [ImageOut(image_url=OutputStore.url(i.relative_path), relative_path=i.relative_path,
                       node_id=i.node_id) for i in job.images]
    result = None
    if job.state is State.DONE and images:
        result = JobResult(image_url=images[0].image_url, relative_path=images[0].relative_path, seed=job.seed)
    return JobRecord(
        id=job.id, label=job.label, status=job.gaze_status, error=job.error, result=result,
        preset=job.preset, params=job.params, images=images, created_at=iso(job.created_at) or "",
        started_at=iso(job.started_at), finished_at=iso(job.finished_at),
    )


def _preset_info(preset: Preset) -> PresetInfo:
    has_cover = preset.cover_file is not None
    return PresetInfo(
        preset_id=preset.slug, slug=preset.slug, name=preset.name, has_cover=has_cover,
        cover_url=f"{COVERS_PREFIX}/{preset.slug}" if has_cover else None, description=preset.description,
    )


def preset_summary(preset: Preset) -> PresetSummary:
    return PresetSummary(**dict(_preset_info(preset)), parameters=sorted(preset.bindings))


def preset_detail(preset: Preset, object_info: Mapping[str, Any] | None) -> PresetDetail:
    """The summary fields, with every parameter described (allowed values when ComfyUI answered)."""
    return PresetDetail(**dict(_preset_info(preset)), parameters=describe(preset, object_info))
