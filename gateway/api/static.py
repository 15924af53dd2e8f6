"""Result files under `/static/uploads/`, served without a key (their names are unguessable)."""

from __future__ import annotations

from aiohttp import web

from gateway.api.state import OUTPUTS
from gateway.errors import NotFound
from gateway.outputs import STATIC_PREFIX

_IMMUTABLE = "public, max-age=31536000, immutable"


async def upload(request: web.Request) -> web.FileResponse:
    outputs = request.app[OUTPUTS]
    relative = request.match_info["path"]
    root = outputs.root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file() or path.name.startswith("."):
        raise NotFound(f"no such file: {request.path}")
    return web.FileResponse(path, headers={"Cache-Control": _IMMUTABLE})


def routes() -> list[web.RouteDef]:
    return [web.get(STATIC_PREFIX + "/{path:.+}", upload)]
