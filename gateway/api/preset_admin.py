"""Create, duplicate, change and delete presets (the files behind them change too)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aiohttp import web

from gateway.api.records import preset_summary
from gateway.api.state import REGISTRY
from gateway.api.v1 import json_response
from gateway.api.validation import parse, read_json_object
from gateway.errors import InvalidParameter
from gateway.models import PresetChange, PresetCopy, PresetCreate, PresetDeleted

_MAX_COVER_BYTES = 1024 * 1024
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpg"))


def decode_cover(text: str) -> tuple[bytes, str]:
    """A cover image sent as base64 (or a data: URL): its bytes and file extension."""
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameter("cover", "cover: must be base64 of a PNG, JPEG or WebP image") from None
    if len(data) > _MAX_COVER_BYTES:
        raise InvalidParameter("cover", f"cover: must be at most {_MAX_COVER_BYTES} bytes")
    for magic, ext in _SIGNATURES:
        if data.startswith(magic):
            return data, ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return data, "webp"
    raise InvalidParameter("cover", "cover: must be a PNG, JPEG or WebP image")


def _fields(body: PresetChange) -> dict[str, Any]:
    given = body.model_dump(include=body.model_fields_set - {"slug", "workflow", "cover"})
    if "name" in given and given["name"] is None:
        raise InvalidParameter("name", "name: must not be null")
    return given


async def create_preset(request: web.Request) -> web.Response:
    body = parse(PresetCreate, await read_json_object(request))
    cover = decode_cover(body.cover) if body.cover else None
    preset = await request.app[REGISTRY].create(body.slug, _fields(body), body.workflow, cover)
    return json_response(preset_summary(preset), status=201)


async def duplicate_preset(request: web.Request) -> web.Response:
    body = parse(PresetCopy, await read_json_object(request))
    preset = await request.app[REGISTRY].duplicate(request.match_info["slug"], body.slug, body.name)
    return json_response(preset_summary(preset), status=201)


async def change_preset(request: web.Request) -> web.Response:
    body = parse(PresetChange, await read_json_object(request))
    if "workflow" in body.model_fields_set and body.workflow is None:
        raise InvalidParameter("workflow", "workflow: must not be null")
    cover = decode_cover(body.cover) if body.cover else None
    remove_cover = "cover" in body.model_fields_set and not body.cover
    preset = await request.app[REGISTRY].update(request.match_info["slug"], _fields(body), body.workflow, cover,
                                                remove_cover=remove_cover)
    return json_response(preset_summary(preset))


async def delete_preset(request: web.Request) -> web.Response:
    slug = request.match_info["slug"]
    await request.app[REGISTRY].delete(slug)
    return json_response(PresetDeleted(deleted=slug))


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/presets", create_preset),
        web.post("/api/v1/presets/{slug}/duplicate", duplicate_preset),
        web.patch("/api/v1/presets/{slug}", change_preset),
        web.delete("/api/v1/presets/{slug}", delete_preset),
    ]
