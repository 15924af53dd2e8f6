"""The gallery: result images, newest first."""

from __future__ import annotations

from aiohttp import web

from gateway.api.records import image_item
from gateway.api.state import OUTPUTS, PRESETS, STORE
from gateway.api.v1 import json_response
from gateway.api.validation import query_int
from gateway.errors import PresetNotFound
from gateway.models import ImageList

MAX_LIMIT = 200


async def list_images(request: web.Request) -> web.Response:
    """`GET /api/v1/images?limit=50&offset=0&preset=<slug>`."""
    limit = query_int(request, "limit", default=50, minimum=1, maximum=MAX_LIMIT)
    offset = query_int(request, "offset", default=0, minimum=0, maximum=2**62)
    preset = request.query.get("preset") or None
    if preset is not None and preset not in request.app[PRESETS]:
        raise PresetNotFound(f"no preset with slug '{preset}'", slug=preset)
    rows, total = await request.app[STORE].images(limit=limit, offset=offset, preset=preset)
    items = [image_item(r.id, r.job, r.image, r.created_at, urls=request.app[OUTPUTS]) for r in rows]
    return json_response(ImageList(images=items, total=total))


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/images", list_images)]
