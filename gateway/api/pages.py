"""Pages for people, served without a key: the web page at `/`, the API docs at `/docs`, and the
OpenAPI document they read. Files come from the package (`gateway/web/`) and, for Swagger UI, from
the `swagger-ui-bundle` package: nothing is loaded from elsewhere, so both work offline.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from gateway.api.openapi import OPENAPI_PATH, document
from gateway.api.state import SETTINGS
from gateway.errors import NotFound

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
SWAGGER_DIR = Path(str(swagger_ui_path))
SWAGGER_FILES = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})

_REVALIDATE = {"Cache-Control": "no-cache"}
"""Our own files change with the gateway: browsers check (ETag / Last-Modified) before reusing them."""


def page_headers(images_url: str | None) -> dict[str, str]:
    """The web page's headers; its images come from the gateway, or from `images_url`'s origin
    (results in a bucket)."""
    sources = "'self' data: blob:"
    if images_url:
        parts = urlsplit(images_url)
        sources += f" {parts.scheme}://{parts.netloc}"
    return {
        **_REVALIDATE,
        "Content-Security-Policy": f"default-src 'self'; img-src {sources}; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
    }


def _file(directory: Path, name: str, headers: dict[str, str]) -> web.FileResponse:
    path = directory / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise NotFound(f"no such file: {name}")
    return web.FileResponse(path, headers=headers)


async def index(request: web.Request) -> web.FileResponse:
    return _file(WEB_DIR, "index.html", page_headers(request.app[SETTINGS].s3_public_base))


async def docs(request: web.Request) -> web.FileResponse:
    return _file(WEB_DIR, "docs.html", _REVALIDATE)


async def web_asset(request: web.Request) -> web.FileResponse:
    return _file(WEB_DIR, request.match_info["name"], _REVALIDATE)


async def swagger_asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in SWAGGER_FILES:
        raise NotFound(f"no such file: {name}")
    return _file(SWAGGER_DIR, name, {"Cache-Control": "public, max-age=86400"})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document())


def routes() -> list[web.RouteDef]:
    return [
        web.get("/", index),
        web.get("/docs", docs),
        web.get("/web/{name}", web_asset),
        web.get("/docs/assets/{name}", swagger_asset),
        web.get(OPENAPI_PATH, openapi_json),
    ]
