"""The GAZE v1 routes: presets, generate, job status."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from pathlib import Path

from aiohttp import web
from pydantic import BaseModel

from gateway.api import idempotency, inputs
from gateway.api.auth import GRANT
from gateway.api.records import COVERS_PREFIX, job_record, preset_detail, preset_summary
from gateway.api.state import FLEET, HUB, OUTPUTS, PRESETS, REGISTRY, SETTINGS, STORE
from gateway.api.validation import parse, read_json_object
from gateway.choices import unknown_name
from gateway.compiler import plan_jobs
from gateway.errors import JobNotFound, NotFound, PresetNotFound, PriorityNotAllowed
from gateway.events import Progress
from gateway.jobs import Job
from gateway.models import CancelledCount, GenerateRequest, GenerateResponse, Preset, PresetList, QueuedJob

OBJECT_INFO_WAIT = 2.0
"""Seconds the preset detail waits for a fresh /object_info before answering with the one kept."""
RANDOM_SEED_LIMIT = 2**53
"""Random seeds stay below 2^53 so that JavaScript clients read them back exactly."""


def json_response(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status, content_type="application/json")


def _preset(request: web.Request) -> Preset:
    slug = request.match_info["slug"]
    preset = request.app[PRESETS].get(slug)
    if preset is None:
        raise PresetNotFound(f"no preset with slug '{slug}'", slug=slug)
    return preset


async def list_presets(request: web.Request) -> web.Response:
    presets = request.app[PRESETS].values()
    return json_response(PresetList(presets=[preset_summary(p) for p in presets]))


async def get_preset(request: web.Request) -> web.Response:
    """One preset with its parameters' types, defaults, ranges and (from ComfyUI) allowed values."""
    preset = _preset(request)
    registry = request.app[REGISTRY]
    try:
        async with asyncio.timeout(OBJECT_INFO_WAIT):
            object_info = await registry.fresh_object_info()
    except TimeoutError:  # a hung ComfyUI: answer with what was fetched before
        object_info = registry.object_info
    return json_response(preset_detail(preset, object_info))


async def generate(request: web.Request) -> web.Response:
    preset = _preset(request)
    key = idempotency.key_of(request)
    body = parse(GenerateRequest, await read_json_object(request, max_size=inputs.MAX_GENERATE_BODY))
    allowed = request[GRANT].max_priority
    if body.priority > allowed:
        raise PriorityNotAllowed(f"priority: this API key may ask for at most {allowed}", maximum=allowed)
    registry = request.app[REGISTRY]
    if unknown_name(body, registry.object_info) is not None:  # maybe new on the server: ask once more
        problem = unknown_name(body, await registry.fresh_object_info())
        if problem is not None:
            raise problem
    webhook_url = inputs.webhook_target(request, body)
    references = await inputs.store_references(request, preset, body)
    now = time.time()
    jobs = [
        Job(id=str(uuid.uuid4()), preset=preset.slug, label=f"Preset: {preset.name}", params=params,
            created_at=now, client_reference=body.client_reference, metadata=body.metadata,
            webhook_url=webhook_url, references=tuple(references), priority=body.priority)
        for params in plan_jobs(preset, body, secrets.randbelow(RANDOM_SEED_LIMIT), references)
    ]
    answer = GenerateResponse(jobs=[QueuedJob(job_id=j.id) for j in jobs])
    settings = request.app[SETTINGS]
    row = digest = None
    if key is not None:
        digest = idempotency.request_hash(preset.slug, body)
        row = idempotency.new_row(request, key, digest, 202, answer.model_dump_json())
    earlier = await request.app[STORE].add_jobs(jobs, max_queued=settings.max_queued, idempotency=row,
                                                forget_before=now - settings.idempotency_hours * 3600)
    if earlier is not None and digest is not None:
        return idempotency.replay(earlier, digest)
    request.app[FLEET].wake()
    return json_response(answer, status=202)


def _record_of(request: web.Request, job: Job | None, job_id: str, *, queue_position: int | None = None,
               progress: Progress | None = None) -> web.Response:
    if job is None:
        raise JobNotFound(f"no job with id '{job_id}'", job_id=job_id)
    return json_response(job_record(job, urls=request.app[OUTPUTS], queue_position=queue_position, progress=progress))


async def get_job(request: web.Request) -> web.Response:
    job_id = request.match_info["job_id"]
    store = request.app[STORE]
    job = await store.get(job_id)
    if job is None or job.gaze_status != "pending":
        return _record_of(request, job, job_id, progress=request.app[HUB].progress(job_id))
    position = (await store.queue_positions([job_id])).get(job_id)
    return _record_of(request, job, job_id, queue_position=position)


async def cancel_job(request: web.Request) -> web.Response:
    """Cancel a job (idempotent): waiting ones leave the queue, running ones are interrupted."""
    job_id = request.match_info["job_id"]
    return _record_of(request, await request.app[FLEET].cancel(job_id), job_id)


async def interrupt_all(request: web.Request) -> web.Response:
    """Cancel every waiting and running job."""
    cancelled = await request.app[FLEET].cancel_all()
    return json_response(CancelledCount(cancelled=cancelled))


async def cover(request: web.Request) -> web.FileResponse:
    preset = _preset(request)
    if preset.cover_file is None:
        raise NotFound(f"preset '{preset.slug}' has no cover")
    return web.FileResponse(Path(preset.cover_file))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/presets", list_presets),
        web.get("/api/v1/presets/{slug}", get_preset),
        web.post("/api/v1/generate/{slug}", generate),
        web.get("/api/v1/job/{job_id}", get_job),
        web.delete("/api/v1/job/{job_id}", cancel_job),
        web.post("/api/v1/interrupt", interrupt_all),
        web.get(COVERS_PREFIX + "/{slug}", cover),
    ]
