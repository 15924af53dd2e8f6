"""Jobs and presets as the API shows them."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from gateway import webhooks
from gateway.jobs import Job, State
from gateway.models import ImageOut, JobRecord, JobResult, Preset, PresetSummary
from gateway.outputs import OutputStore
from gateway.store import WebhookRender

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
        client_reference=job.client_reference, metadata=job.metadata,
    )


def webhook_render(*, on_start: bool) -> WebhookRender:
    """What the store writes to the webhook outbox when a job changes state: the event and the
    job record as it is at that moment."""

    def render(job: Job, before: State) -> tuple[str, str] | None:
        event = webhooks.event_for(before, job.state, on_start=on_start)
        if event is None:
            return None
        return event, webhooks.envelope(event, time.time(), job_record(job).model_dump_json())

    return render


def preset_summary(preset: Preset) -> PresetSummary:
    has_cover = preset.cover_file is not None
    return PresetSummary(
        preset_id=preset.slug, slug=preset.slug, name=preset.name, has_cover=has_cover,
        cover_url=f"{COVERS_PREFIX}/{preset.slug}" if has_cover else None,
        description=preset.description, parameters=sorted(preset.bindings),
    )
