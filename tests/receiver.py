"""A real local webhook receiver for tests: checks every signature, answers as told."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class Receiver:
    """Verifies every delivery's signature; answers with the next status of `answers` (then 200)."""

    answers: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    hits: dict[str, int] = field(default_factory=dict)
    hang: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def hook(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        payload = Webhook(SECRET).verify(body, dict(request.headers))  # raises if not signed by SECRET
        self.received.append({"headers": dict(request.headers), "body": body, "payload": payload})
        return web.Response(status=self.answers.pop(0) if self.answers else 200)

    async def redirect(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect("/hook")

    async def slow(self, request: web.Request) -> web.StreamResponse:
        await self.hang.wait()
        return web.Response()

    async def huge(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            for _ in range(320):  # 20 MB, far more than the worker reads
                await response.write(chunk)
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass
        return response

    def app(self) -> web.Application:
        app = web.Application()

        async def count(request: web.Request, handler: Any) -> web.StreamResponse:
            self.hits[request.path] = self.hits.get(request.path, 0) + 1
            response: web.StreamResponse = await handler(request)
            return response

        app.middlewares.append(web.middleware(count))
        app.add_routes([web.post("/hook", self.hook), web.post("/redirect", self.redirect),
                        web.post("/slow", self.slow), web.post("/huge", self.huge)])
        return app


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    server = TestServer(rec.app(), host="127.0.0.1")
    await server.start_server()
    rec.url = str(server.make_url("")).rstrip("/")
    try:
        yield rec
    finally:
        rec.hang.set()
        await server.close()
