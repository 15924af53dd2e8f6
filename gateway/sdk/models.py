"""Answers of the live API that the gateway's own models do not describe (yet): progress, status, gallery."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from gateway.models import PresetSummary


class Progress(BaseModel):
    step: int
    total_steps: int
    percent: float
    node: str | None = None
    node_type: str | None = None


class Image(BaseModel):
    id: str
    job_id: str
    preset: str
    image_url: str
    thumb_url: str | None = None
    relative_path: str
    seed: int | None = None
    created_at: str


class ImagePage(BaseModel):
    images: list[Image]
    total: int


class JobCounts(BaseModel):
    waiting: int
    running: int
    done_last_hour: int
    failed_last_hour: int


class Backend(BaseModel):
    url: str
    state: str
    message: str
    version: str | None = None
    loaded_checkpoint: str | None = None


class Estimates(BaseModel):
    job_seconds: float | None = None
    wait_seconds: float | None = None


class Status(BaseModel):
    jobs: JobCounts
    backend: Backend
    estimates: Estimates


class PresetDetail(PresetSummary):
    """`GET /api/v1/presets/<slug>`: the summary plus each parameter's description (kept as sent)."""

    model_config = ConfigDict(extra="allow")
