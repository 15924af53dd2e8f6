"""The GAZE v1 routes: presets, generate, job status."""

from __future__ import annotations

import secrets
import time
import uuid
from pathlib import Path

from aiohttp import web
from pydantic import BaseModel

from gateway.api.auth import GRANT
from gateway.api.records import COVERS_PREFIX, job_record, preset_summary
from gateway.api.state import DISPATCHER, HUB, PRESETS, REGISTRY, SETTINGS, STORE
from gateway.api.validation import parse, read_json_object
from gateway.choices import unknown_name
from gateway.compiler import plan_jobs
from gateway.errors import JobNotFound, NotFound, PresetNotFound, PriorityNotAllowed
from gateway.events import Progress
from gateway.jobs import Job
from gateway.models import GenerateRequest, GenerateResponse, Preset, PresetList, QueuedJob

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


async def generate(request: web.Request) -> web.Response:
    preset = _preset(request)
    body = parse(GenerateRequest, await read_json_object(request))
    allowed = request[GRANT].max_priority
    if body.priority > allowed:
        raise PriorityNotAllowed(f"priority: this API key may ask for at most {allowed}", maximum=allowed)
    registry = request.app[REGISTRY]
    if unknown_name(body, registry.object_info) is not None:  # maybe new on the server: ask once more
        problem = unknown_name(body, await registry.fresh_object_info())
        if problem is not None:
            raise problem
    now = time.time()
    jobs = [
        Job(id=str(uuid.uuid4()), preset=preset.slug, label=f"Preset: {preset.name}", params=params,
            created_at=now, priority=body.priority)
        for params in plan_jobs(preset, body, secrets.randbelow(RANDOM_SEED_LIMIT))
    ]
    await request.app[STORE].add_jobs(jobs, max_queued=request.app[SETTINGS].max_queued)
    request.app[DISPATCHER].wake()
    return json_response(GenerateResponse(jobs=[QueuedJob(job_id=j.id) for j in jobs]), status=202)


def _record_of(job: Job | None, job_id: str, *, queue_position: int | None = None,
               progress: Progress | None = None) -> web.Response:
    if job is None:
        raise JobNotFound(f"no job with id '{job_id}'", job_id=job_id)
    return json_response(job_record(job, queue_position=queue_position, progress=progress))


async def get_job(request: web.Request) -> web.Response:
    job_id = request.match_info["job_id"]
    store = request.app[STORE]
    job = await store.get(job_id)
    if job is None or job.gaze_status != "pending":
        return _record_of(job, job_id, progress=request.app[HUB].progress(job_id))
    position = (await store.queue_positions([job_id])).get(job_id)
    return _record_of(job, job_id, queue_position=position)


async def cancel_job(request: web.Request) -> web.Response:
    """Cancel a job (idempotent): waiting ones leave the queue, running ones are interrupted."""
    job_id = request.match_info["job_id"]
    return _record_of(await request.app[DISPATCHER].cancel(job_id), job_id)


async def interrupt_all(request: web.Request) -> web.Response:
    """Cancel every waiting and running job."""
    cancelled = await request.app[DISPATCHER].cancel_all()
    return web.json_response({"cancelled": cancelled})


async def cover(request: web.Request) -> web.FileResponse:
    preset = _preset(request)
    if preset.cover_file is None:
        raise NotFound(f"preset '{preset.slug}' has no cover")
    return web.FileResponse(Path(preset.cover_file))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/presets", list_presets),
        web.post("/api/v1/generate/{slug}", generate),
        web.get("/api/v1/job/{job_id}", get_job),
        web.delete("/api/v1/job/{job_id}", cancel_job),
        web.post("/api/v1/interrupt", interrupt_all),
        web.get(COVERS_PREFIX + "/{slug}", cover),
    ]
