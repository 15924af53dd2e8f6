"""`GET /api/v1/job/<id>/deliveries`: a job's webhook deliveries and every attempt at them."""

from __future__ import annotations

from aiohttp import web

from gateway.api.records import iso
from gateway.api.state import STORE
from gateway.api.v1 import json_response
from gateway.errors import JobNotFound
from gateway.models import DeliveryAttempt, DeliveryList, DeliveryRecord
from gateway.store import Attempt, Delivery


def delivery_record(delivery: Delivery, attempts: list[Attempt]) -> DeliveryRecord:
    return DeliveryRecord(
        id=delivery.id, event=delivery.event, url=delivery.url,
        state=delivery.state,
        attempts=[DeliveryAttempt(attempt=a.attempt, at=iso(a.at) or "", duration_ms=round(a.duration * 1000),
                                  status_code=a.status_code, error=a.error) for a in attempts],
        created_at=iso(delivery.created_at) or "", next_attempt_at=iso(delivery.next_attempt_at),
    )


async def job_deliveries(request: web.Request) -> web.Response:
    job_id = request.match_info["job_id"]
    store = request.app[STORE]
    if await store.get(job_id) is None:
        raise JobNotFound(f"no job with id '{job_id}'", job_id=job_id)
    found = await store.deliveries_of(job_id)
    return json_response(DeliveryList(job_id=job_id, deliveries=[delivery_record(d, a) for d, a in found]))


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/job/{job_id}/deliveries", job_deliveries)]
