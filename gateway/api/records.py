"""Jobs and presets as the API shows them."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.events import Progress
from gateway.jobs import Job, State, StoredImage
from gateway.models import ImageItem, ImageOut, JobProgress, JobRecord, JobResult, Preset, PresetSummary
from gateway.outputs import OutputStore

COVERS_PREFIX = "/static/covers"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_record(job: Job, *, queue_position: int | None = None, progress: Progress | None = None) -> JobRecord:
    images = [ImageOut(image_url=OutputStore.url(i.relative_path), relative_path=i.relative_path,
                       node_id=i.node_id) for i in job.images]
    result = None
    if job.state is State.DONE and images:
        result = JobResult(image_url=images[0].image_url, relative_path=images[0].relative_path, seed=job.seed)
    return JobRecord(
        id=job.id, label=job.label, status=job.gaze_status, error=job.error, result=result,
        preset=job.preset, params=job.params, priority=job.priority, images=images,
        created_at=iso(job.created_at) or "",
        started_at=iso(job.started_at), finished_at=iso(job.finished_at),
        queue_position=queue_position if job.gaze_status == "pending" else None,
        progress=progress_out(progress) if progress is not None and job.state is State.RUNNING else None,
    )


def progress_out(progress: Progress) -> JobProgress:
    return JobProgress(step=progress.step, total_steps=progress.total_steps, percent=progress.percent,
                       node=progress.node, node_type=progress.node_type)


def image_item(image_id: str, job: Job, image: StoredImage, created_at: float) -> ImageItem:
    return ImageItem(
        id=image_id, job_id=job.id, preset=job.preset, image_url=OutputStore.url(image.relative_path),
        thumb_url=OutputStore.thumb_url(image.thumb_path) if image.thumb_path else None,
        relative_path=image.relative_path, seed=job.seed, created_at=iso(created_at) or "",
    )


def preset_summary(preset: Preset) -> PresetSummary:
    has_cover = preset.cover_file is not None
    return PresetSummary(
        preset_id=preset.slug, slug=preset.slug, name=preset.name, has_cover=has_cover,
        cover_url=f"{COVERS_PREFIX}/{preset.slug}" if has_cover else None,
        description=preset.description, parameters=sorted(preset.bindings),
    )
