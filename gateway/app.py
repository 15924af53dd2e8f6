"""`create_app(settings)`: the one place where the gateway's objects are built and wired."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import aiohttp
from aiohttp import web

from gateway import delivery, retention
from gateway.api import deliveries, health, saved, static, v1
from gateway.api.auth import KeyRing, create_key
from gateway.api.middleware import auth_middleware, errors_middleware
from gateway.api.records import webhook_render
from gateway.api.state import DISPATCHER, KEYRING, OUTPUTS, PRESETS, REFERENCES, SETTINGS, STORE
from gateway.comfy.client import ComfyClient
from gateway.dispatcher import Dispatcher
from gateway.models import Preset
from gateway.outputs import OutputStore, ReferenceStore
from gateway.presets import load_presets
from gateway.settings import Settings
from gateway.store import Store

log = logging.getLogger("gateway")

MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings, *, presets: dict[str, Preset] | None = None) -> web.Application:
    """Build the aiohttp application. Presets are loaded from settings unless given."""
    app = web.Application(middlewares=[errors_middleware, auth_middleware], client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app[PRESETS] = load_presets(settings.presets_path) if presets is None else presets
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    app[OUTPUTS] = OutputStore(settings.uploads_dir)
    app[REFERENCES] = ReferenceStore(settings.references_dir)
    app.add_routes(v1.routes())
    app.add_routes(deliveries.routes())
    app.add_routes(saved.routes())
    app.add_routes(health.routes())
    app.add_routes(static.routes())

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        store = await Store.open(settings.database_path, webhook=webhook_render(on_start=settings.webhook_on_start))
        app[STORE] = store
        app[KEYRING] = KeyRing(store=store, extra_key=settings.api_key)
        if not settings.api_key and not await store.list_keys():
            _, key = await create_key(store, "default")
            log.warning("No API key existed, so one was created. Use it as X-API-Key; it is shown only once:\n"
                        "    API key: %s", key)
        yield
        await store.close()

    async def dispatcher_ctx(app: web.Application) -> AsyncIterator[None]:
        store = app[STORE]
        client_id = await store.meta_value("comfyui_client_id", f"comfy-gateway-{uuid.uuid4().hex}")
        async with aiohttp.ClientSession() as session:
            client = ComfyClient(base_url=settings.comfyui_url, session=session, client_id=client_id)
            def current_presets() -> dict[str, Preset]:
                return app[PRESETS]

            dispatcher = Dispatcher(
                store=store, client=client, outputs=app[OUTPUTS], presets=current_presets,
                max_in_flight=settings.max_in_flight, job_timeout=settings.job_timeout,
                max_attempts=settings.max_attempts, references=app[REFERENCES],
            )
            app[DISPATCHER] = dispatcher
            task = asyncio.create_task(dispatcher.run(), name="dispatcher")
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
        secret = settings.webhook_secret or await _stored_webhook_secret(app[STORE])
        async with aiohttp.ClientSession(connector=delivery.connector(allow_private=settings.webhook_allow_private),
                                         cookie_jar=aiohttp.DummyCookieJar()) as session:
            worker = delivery.DeliveryWorker(
                store=app[STORE], session=session, secret=secret, max_attempts=settings.webhook_max_attempts,
                timeout=settings.webhook_timeout, backoff=settings.webhook_backoff,
                allow_private=settings.webhook_allow_private,
            )
            async with _background(worker.run(), "webhooks"):
                yield

    async def retention_ctx(app: web.Application) -> AsyncIterator[None]:
        sweeper = retention.run_periodically(
            outputs=app[OUTPUTS], references=app[REFERENCES], store=app[STORE],
            retention_days=settings.retention_days, idempotency_seconds=settings.idempotency_hours * 3600,
        )
        async with _background(sweeper, "retention"):
            yield

    app.cleanup_ctx.append(store_ctx)
    app.cleanup_ctx.append(dispatcher_ctx)
    app.cleanup_ctx.append(webhooks_ctx)
    app.cleanup_ctx.append(retention_ctx)
    return app


@contextlib.asynccontextmanager
async def _background(coro: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    task = asyncio.create_task(coro, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _stored_webhook_secret(store: Store) -> str:
    """The signing secret made on first start when none is configured; logged only when made."""
    made = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    secret = await store.meta_value("webhook_secret", made)
    if secret == made:
        log.warning("No GATEWAY_WEBHOOK_SECRET is set, so a webhook signing secret was made and stored. "
                    "Receivers verify deliveries with it:\n    webhook secret: %s", secret)
    return secret
