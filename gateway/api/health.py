"""Liveness and readiness for orchestrators; no key needed."""

from __future__ import annotations

import sqlite3

from aiohttp import web

from gateway.api.state import FLEET, STORE, SUPERVISOR
from gateway.errors import ComfyUnavailable, StoreUnavailable


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the store can be written and the websocket to ComfyUI is connected.

    When the gateway runs ComfyUI itself, the answer also says what that process is doing."""
    try:
        await request.app[STORE].check_writable()
    except (OSError, sqlite3.Error) as exc:
        raise StoreUnavailable(f"the database cannot be written: {exc}") from exc
    supervisor = request.app.get(SUPERVISOR)
    if not request.app[FLEET].connected:
        if supervisor is not None:
            status = supervisor.status
            raise ComfyUnavailable(f"the managed ComfyUI is {status.state}: {status.message}",
                                   comfyui=status.model_dump())
        raise ComfyUnavailable("not connected to ComfyUI (is it running at the configured URL?)")
    body: dict[str, object] = {"status": "ready"}
    if supervisor is not None:
        body["comfyui"] = supervisor.status.model_dump()
    return web.json_response(body)


def routes() -> list[web.RouteDef]:
    return [web.get("/healthz", healthz), web.get("/readyz", readyz)]
