"""`GET /api/v1/status`: what the gateway and its ComfyUI are doing, and how long work takes."""

from __future__ import annotations

import time

from aiohttp import web

from gateway.api.state import FLEET, STORE, SUPERVISOR
from gateway.api.v1 import json_response
from gateway.dispatcher import Backend
from gateway.models import BackendOut, EstimatesOut, JobCountsOut, StatusOut

HOUR = 3600.0


async def status(request: web.Request) -> web.Response:
    counts = await request.app[STORE].counts(since=time.time() - HOUR)
    fleet = request.app[FLEET]
    job_seconds = fleet.job_seconds
    # the backends work side by side: the queue drains as fast as the reachable ones together
    wait = None if job_seconds is None else round(
        (counts.waiting + counts.running) * job_seconds / max(fleet.reachable, 1), 3)
    supervisor = request.app.get(SUPERVISOR)
    return json_response(StatusOut(
        jobs=JobCountsOut(waiting=counts.waiting, running=counts.running, done_last_hour=counts.done_since,
                          failed_last_hour=counts.failed_since),
        backend=_out(fleet.backend, fleet.weights[0]),
        backends=[_out(backend, weight) for backend, weight in zip(fleet.backends, fleet.weights, strict=True)],
        estimates=EstimatesOut(job_seconds=None if job_seconds is None else round(job_seconds, 3),
                               wait_seconds=wait),
        managed_comfyui=supervisor.status if supervisor is not None else None,
    ))


def _out(backend: Backend, weight: float) -> BackendOut:
    return BackendOut(name=backend.name, url=backend.url, reachable=backend.state != "unreachable",
                      state=backend.state, message=backend.message, version=backend.version,
                      loaded_checkpoint=backend.loaded_checkpoint, model_swaps=backend.model_swaps,
                      in_flight=backend.in_flight, max_in_flight=backend.max_in_flight, weight=weight)


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/status", status)]
