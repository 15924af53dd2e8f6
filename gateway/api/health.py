"""Liveness and readiness for orchestrators; no key needed."""

from __future__ import annotations

from aiohttp import web

from gateway.api.state import DISPATCHER
from gateway.errors import ComfyUnavailable


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the websocket to ComfyUI is connected."""
    dispatcher = request.app[DISPATCHER]
    if not dispatcher.connected:
        raise ComfyUnavailable("not connected to ComfyUI yet")
    return web.json_response({"status": "ready"})


def routes() -> list[web.RouteDef]:
    return [web.get("/healthz", healthz), web.get("/readyz", readyz)]
