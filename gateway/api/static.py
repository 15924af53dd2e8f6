"""Result files under `/static/uploads/` and their thumbnails under `/static/thumbs/`, served
without a key (their names are unguessable). Only when results are kept in a folder: with a
bucket, image URLs point there."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gateway.api.state import RESULT_FILES
from gateway.errors import NotFound
from gateway.outputs import IMMUTABLE
from gateway.outputs_local import STATIC_PREFIX, THUMBS_PREFIX


async def upload(request: web.Request) -> web.FileResponse:
    return _serve(request, request.app[RESULT_FILES].root)


async def thumb(request: web.Request) -> web.FileResponse:
    outputs = request.app[RESULT_FILES]
    await outputs.thumbnail_ready(request.match_info["path"])  # made on its first request
    return _serve(request, outputs.thumbs)


def _serve(request: web.Request, folder: Path) -> web.FileResponse:
    """A file inside `folder`, never outside it (no `..`, no symlink out), never a hidden one."""
    relative = request.match_info["path"]
    root = folder.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file() or path.name.startswith("."):
        raise NotFound(f"no such file: {request.path}")
    return web.FileResponse(path, headers={"Cache-Control": IMMUTABLE})


def routes() -> list[web.RouteDef]:
    return [web.get(STATIC_PREFIX + "/{path:.+}", upload), web.get(THUMBS_PREFIX + "/{path:.+}", thumb)]
