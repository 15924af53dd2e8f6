"""The two middlewares: one renders every error in one JSON shape, one checks API keys."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.api.auth import authenticate
from gateway.api.openapi import public_paths
from gateway.api.state import KEYRING
from gateway.errors import GatewayError

log = logging.getLogger(__name__)

_PUBLIC = public_paths()

_HTTP_CODES = {
    400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
}


def error_response(status: int, code: str, message: str, **extra: object) -> web.Response:
    body = {"error": {"code": code, "message": message, **extra}}
    return web.json_response(body, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as `{"error": {"code", "message", ...}}` with its class's status."""
    try:
        response = await handler(request)
    except GatewayError as exc:
        return web.json_response(exc.to_body(), status=exc.status, headers=exc.headers())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason
        if exc.status == 404:
            message = f"no such route: {request.method} {request.path}"
        elif exc.status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        elif exc.status == 413:
            message = f"the request body is larger than the limit of {request.app._client_max_size} bytes"
        response = error_response(exc.status, code, message)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error; the gateway's log has the details")
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every `/api/` route needs a key, but the API's own description; pages, static files and
    health checks need none.
    """
    if request.path.startswith("/api/") and request.path not in _PUBLIC:
        await authenticate(request, request.app[KEYRING])
    return await handler(request)
