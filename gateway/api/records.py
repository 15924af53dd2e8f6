"""Jobs and presets as the API shows them."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway import webhooks
from gateway.events import Progress
from gateway.jobs import Job, State, StoredImage
from gateway.models import (
    ImageItem,
    ImageOut,
    JobProgress,
    JobRecord,
    JobResult,
    Preset,
    PresetDetail,
    PresetInfo,
    PresetSummary,
)
from gateway.outputs import ResultUrls
from gateway.parameters import describe
from gateway.storage import WebhookRender

COVERS_PREFIX = "/static/covers"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_record(job: Job, *, urls: ResultUrls, queue_position: int | None = None,
               progress: Progress | None = None) -> JobRecord:
    images = [ImageOut(image_url=urls.url(i.relative_path), relative_path=i.relative_path,
                       node_id=i.node_id) for i in job.images]
    result = None
    if job.state is State.DONE and images:
        result = JobResult(image_url=images[0].image_url, relative_path=images[0].relative_path, seed=job.seed)
    return JobRecord(
        id=job.id, label=job.label, status=job.gaze_status, error=job.error, result=result,
        preset=job.preset, params=job.params, priority=job.priority, images=images,
        created_at=iso(job.created_at) or "",
        started_at=iso(job.started_at), finished_at=iso(job.finished_at),
        client_reference=job.client_reference, metadata=job.metadata,
        queue_position=queue_position if job.gaze_status == "pending" else None,
        progress=progress_out(progress) if progress is not None and job.state is State.RUNNING else None,
    )


def progress_out(progress: Progress) -> JobProgress:
    return JobProgress(step=progress.step, total_steps=progress.total_steps, percent=progress.percent,
                       node=progress.node, node_type=progress.node_type)


def image_item(image_id: str, job: Job, image: StoredImage, created_at: float, *, urls: ResultUrls) -> ImageItem:
    return ImageItem(
        id=image_id, job_id=job.id, preset=job.preset, image_url=urls.url(image.relative_path),
        thumb_url=urls.thumb_url(image.thumb_path) if image.thumb_path else None,
        relative_path=image.relative_path, seed=job.seed, created_at=iso(created_at) or "",
    )


def _preset_info(preset: Preset) -> PresetInfo:
    has_cover = preset.cover_file is not None
    return PresetInfo(
        preset_id=preset.slug, slug=preset.slug, name=preset.name, has_cover=has_cover,
        cover_url=f"{COVERS_PREFIX}/{preset.slug}" if has_cover else None, description=preset.description,
    )


def webhook_render(*, on_start: bool, urls: ResultUrls) -> WebhookRender:
    """What the store writes to the webhook outbox when a job changes state: the event and the
    job record as it is at that moment."""

    def render(job: Job, before: State) -> tuple[str, str] | None:
        event = webhooks.event_for(before, job.state, on_start=on_start)
        if event is None:
            return None
        return event, webhooks.envelope(event, time.time(), job_record(job, urls=urls).model_dump_json())

    return render


def preset_summary(preset: Preset) -> PresetSummary:
    return PresetSummary(**dict(_preset_info(preset)), parameters=sorted(preset.bindings))


def preset_detail(preset: Preset, object_info: Mapping[str, Any] | None) -> PresetDetail:
    """The summary fields, with every parameter described (allowed values when ComfyUI answered)."""
    return PresetDetail(**dict(_preset_info(preset)), parameters=describe(preset, object_info))
