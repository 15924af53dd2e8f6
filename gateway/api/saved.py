"""Saved results: keep a done job's image under a label, beyond output retention."""

from __future__ import annotations

import time
import uuid

from aiohttp import web

from gateway.api.state import OUTPUTS, STORE
from gateway.api.v1 import json_response
from gateway.api.validation import parse, query_int, read_json_object
from gateway.errors import JobNotDone, JobNotFound, SavedNotFound
from gateway.jobs import State
from gateway.models import SavedList, SavedRecord, SaveRequest
from gateway.outputs import ResultUrls
from gateway.storage import SavedRow

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def saved_record(row: SavedRow, urls: ResultUrls) -> SavedRecord:
    return SavedRecord(id=row.id, label=row.label, image_url=urls.url(row.relative_path), job_id=row.job_id,
                       created=int(row.created_at))


async def save(request: web.Request) -> web.Response:
    body = parse(SaveRequest, await read_json_object(request))
    job = await request.app[STORE].get(body.job_id)
    if job is None:
        raise JobNotFound(f"no job with id '{body.job_id}'", job_id=body.job_id)
    if job.state is not State.DONE or not job.images:
        raise JobNotDone(f"job '{job.id}' is {job.gaze_status}; only a done job's image can be saved",
                         job_id=job.id, status=job.gaze_status)
    try:
        relative = await request.app[OUTPUTS].keep(job.images[0].relative_path)
    except FileNotFoundError:
        raise JobNotDone(f"job '{job.id}' has no image file any more (removed by retention)", job_id=job.id,
                         status=job.gaze_status) from None
    row = SavedRow(id=str(uuid.uuid4()), label=body.label, job_id=job.id, relative_path=relative,
                   created_at=time.time())
    await request.app[STORE].add_saved(row)
    return json_response(saved_record(row, request.app[OUTPUTS]), status=201)


async def list_saved(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
    offset = query_int(request, "offset", default=0, minimum=0, maximum=2**62)
    rows, total = await request.app[STORE].list_saved(limit, offset)
    saved = [saved_record(r, request.app[OUTPUTS]) for r in rows]
    return json_response(SavedList(saved=saved, total=total, limit=limit, offset=offset))


async def get_saved(request: web.Request) -> web.Response:
    saved_id = request.match_info["saved_id"]
    row = await request.app[STORE].get_saved(saved_id)
    if row is None:
        raise SavedNotFound(f"no saved result with id '{saved_id}'", saved_id=saved_id)
    return json_response(saved_record(row, request.app[OUTPUTS]))


async def delete_saved(request: web.Request) -> web.Response:
    saved_id = request.match_info["saved_id"]
    row = await request.app[STORE].delete_saved(saved_id)
    if row is None:
        raise SavedNotFound(f"no saved result with id '{saved_id}'", saved_id=saved_id)
    await request.app[OUTPUTS].remove(row.relative_path)
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/saved", save),
        web.get("/api/v1/saved", list_saved),
        web.get("/api/v1/saved/{saved_id}", get_saved),
        web.delete("/api/v1/saved/{saved_id}", delete_saved),
    ]
