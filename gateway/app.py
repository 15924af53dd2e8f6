"""`create_app(settings)`: the one place where the gateway's objects are built and wired."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from gateway.api import health, preset_admin, static, v1
from gateway.api.auth import KeyRing, create_key
from gateway.api.middleware import auth_middleware, errors_middleware
from gateway.api.state import DISPATCHER, KEYRING, OUTPUTS, PRESETS, REGISTRY, SETTINGS, STORE
from gateway.comfy.client import ComfyClient
from gateway.dispatcher import Dispatcher
from gateway.models import Preset
from gateway.outputs import OutputStore
from gateway.preset_registry import PresetRegistry
from gateway.settings import Settings
from gateway.store import Store

log = logging.getLogger("gateway")

MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings, *, presets: dict[str, Preset] | None = None) -> web.Application:
    """Build the aiohttp application. Presets are loaded from settings (and follow changes to the
    files) unless given."""
    app = web.Application(middlewares=[errors_middleware, auth_middleware], client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    registry = PresetRegistry(presets_path=settings.presets_path, cache_path=settings.object_info_cache)
    if presets is None:
        registry.load()
    else:
        registry.presets.update(presets)
    app[REGISTRY] = registry
    app[PRESETS] = registry.presets
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    app[OUTPUTS] = OutputStore(settings.uploads_dir)
    app.add_routes(v1.routes())
    app.add_routes(preset_admin.routes())
    app.add_routes(health.routes())
    app.add_routes(static.routes())

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        store = await Store.open(settings.database_path)
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
                max_attempts=settings.max_attempts,
            )
            app[DISPATCHER] = dispatcher
            task = asyncio.create_task(dispatcher.run(), name="dispatcher")
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def presets_ctx(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            client = ComfyClient(base_url=settings.comfyui_url, session=session, client_id="comfy-gateway-presets")
            registry.fetch_object_info = client.object_info
            tasks = [asyncio.create_task(registry.keep_object_info(), name="object-info")]
            if presets is None:
                tasks.append(asyncio.create_task(registry.watch(), name="presets-watch"))
            yield
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app.cleanup_ctx.append(store_ctx)
    app.cleanup_ctx.append(presets_ctx)
    app.cleanup_ctx.append(dispatcher_ctx)
    return app
