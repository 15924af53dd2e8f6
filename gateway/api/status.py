"""`GET /api/v1/status`: what the gateway and its ComfyUI are doing, and how long work takes."""

from __future__ import annotations

import time

from aiohttp import web

from gateway.api.state import DISPATCHER, STORE, SUPERVISOR
from gateway.api.v1 import json_response
from gateway.models import BackendOut, EstimatesOut, JobCountsOut, StatusOut

HOUR = 3600.0


async def status(request: web.Request) -> web.Response:
    counts = await request.app[STORE].counts(since=time.time() - HOUR)
    backend = request.app[DISPATCHER].backend
    job_seconds = backend.job_seconds
    wait = None if job_seconds is None else round((counts.waiting + counts.running) * job_seconds, 3)
    supervisor = request.app.get(SUPERVISOR)
    return json_response(StatusOut(
        jobs=JobCountsOut(waiting=counts.waiting, running=counts.running, done_last_hour=counts.done_since,
                          failed_last_hour=counts.failed_since),
        backend=BackendOut(url=backend.url, state=backend.state, message=backend.message, version=backend.version,
                           loaded_checkpoint=backend.loaded_checkpoint, model_swaps=backend.model_swaps),
        estimates=EstimatesOut(job_seconds=None if job_seconds is None else round(job_seconds, 3),
                               wait_seconds=wait),
        managed_comfyui=supervisor.status if supervisor is not None else None,
    ))


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/status", status)]
