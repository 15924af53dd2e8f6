"""`create_app(settings)`: the one place where the gateway's objects are built and wired."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from gateway.api import gallery, health, live, metrics, preset_admin, static, status, v1
from gateway.api.auth import KeyRing, create_key
from gateway.api.metrics import metrics_middleware
from gateway.api.middleware import auth_middleware, errors_middleware
from gateway.api.state import DISPATCHER, HUB, KEYRING, METRICS, OUTPUTS, PRESETS, REGISTRY, SETTINGS, STORE, SUPERVISOR
from gateway.comfy.client import ComfyClient
from gateway.dispatcher import Dispatcher
from gateway.errors import ConfigError
from gateway.events import Hub
from gateway.metrics import Metrics
from gateway.models import Preset
from gateway.outputs import OutputStore
from gateway.preset_registry import PresetRegistry
from gateway.scheduling import Fairness
from gateway.settings import Settings
from gateway.store import Store
from gateway.supervisor import Supervisor, check_install, comfyui_command, comfyui_folders

log = logging.getLogger("gateway")

MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings, *, presets: dict[str, Preset] | None = None) -> web.Application:
    """Build the aiohttp application. Presets are loaded from settings (and follow changes to the
    files) unless given."""
    app = web.Application(middlewares=[metrics_middleware, errors_middleware, auth_middleware],
                          client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    registry = PresetRegistry(presets_path=settings.presets_path, cache_path=settings.object_info_cache)
    if presets is None:
        registry.load()
    else:
        registry.presets.update(presets)
    app[REGISTRY] = registry
    app[PRESETS] = registry.presets
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    app[OUTPUTS] = OutputStore(settings.uploads_dir, thumbs=settings.thumbs_dir)
    for module in (v1, preset_admin, live, gallery, status, health, metrics, static):
        app.add_routes(module.routes())

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        store = await Store.open(settings.database_path)
        app[STORE] = store
        hub = app[HUB] = Hub(queue_positions=store.queue_positions)
        store.listen(hub.jobs_changed)
        store.listen(app[METRICS].jobs_changed)
        positions = asyncio.create_task(hub.run(), name="queue-positions")
        app[KEYRING] = KeyRing(store=store, extra_key=settings.api_key, max_priority=settings.max_priority)
        if not settings.api_key and not await store.list_keys():
            _, key = await create_key(store, "default")
            log.warning("No API key existed, so one was created. Use it as X-API-Key; it is shown only once:\n"
                        "    API key: %s", key)
        yield
        positions.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await positions
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
                max_attempts=settings.max_attempts, hub=app[HUB],
                preview_method=None if settings.preview_method == "none" else settings.preview_method,
                fairness=Fairness(max_skips=settings.affinity_max_skips, max_wait=settings.affinity_max_wait),
            )
            app[DISPATCHER] = dispatcher
            task = asyncio.create_task(dispatcher.run(), name="dispatcher")
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close_streams(app: web.Application) -> None:
        if HUB in app:
            app[HUB].close()  # event streams end now, not at the shutdown timeout

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
    if settings.comfyui_managed:
        app.cleanup_ctx.append(_managed_comfyui_ctx(settings))
    app.cleanup_ctx.append(presets_ctx)
    app.cleanup_ctx.append(dispatcher_ctx)
    app.on_shutdown.append(close_streams)
    return app


def _managed_comfyui_ctx(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    """Run ComfyUI as the gateway's child (GATEWAY_COMFYUI_MANAGED=1), up before the dispatcher."""
    check_install(settings.comfyui_dir, settings.comfyui_python)
    if settings.comfyui_url != settings.managed_comfyui_url:
        raise ConfigError(f"the managed ComfyUI answers at {settings.managed_comfyui_url}, "
                          f"not at GATEWAY_COMFYUI_URL={settings.comfyui_url}")
    data_dir = settings.comfyui_data_dir

    async def comfyui_ctx(app: web.Application) -> AsyncIterator[None]:
        for folder in comfyui_folders(data_dir).values():
            folder.mkdir(parents=True, exist_ok=True)
        supervisor = Supervisor(
            command=comfyui_command(python=settings.comfyui_python, port=settings.comfyui_port,
                                    data_dir=data_dir, extra_args=settings.comfyui_args or ()),
            cwd=settings.comfyui_dir, health_url=f"{settings.managed_comfyui_url}/system_stats",
            log_path=data_dir / "comfyui.log",
        )
        app[SUPERVISOR] = supervisor
        supervisor.start()
        log.info("running ComfyUI from %s on %s; its output goes to %s",
                 settings.comfyui_dir, settings.managed_comfyui_url, supervisor.log_path)
        yield
        await supervisor.stop()

    return comfyui_ctx
