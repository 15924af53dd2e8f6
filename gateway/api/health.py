"""Liveness and readiness for orchestrators; no key needed."""

from __future__ import annotations

import sqlite3

from aiohttp import web

from gateway.api.state import DISPATCHER, STORE
from gateway.errors import ComfyUnavailable, StoreUnavailable


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the store can be written and the websocket to ComfyUI is connected."""
    try:
        await request.app[STORE].check_writable()
    except (OSError, sqlite3.Error) as exc:
        raise StoreUnavailable(f"the database cannot be written: {exc}") from exc
    if not request.app[DISPATCHER].connected:
        raise ComfyUnavailable("not connected to ComfyUI (is it running at the configured URL?)")
    return web.json_response({"status": "ready"})


def routes() -> list[web.RouteDef]:
    return [web.get("/healthz", healthz), web.get("/readyz", readyz)]
