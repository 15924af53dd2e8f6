"""`create_app(settings)`: the one place where the gateway's objects are built and wired."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import aiohttp
from aiohttp import web

from gateway import backends, delivery, retention
from gateway.api import deliveries, gallery, health, live, metrics, pages, preset_admin, saved, static, status, v1
from gateway.api.auth import KeyRing, create_key
from gateway.api.metrics import metrics_middleware
from gateway.api.middleware import auth_middleware, errors_middleware
from gateway.api.records import webhook_render
from gateway.api.state import (
    DISPATCHER,
    FLEET,
    HUB,
    KEYRING,
    METRICS,
    OUTPUTS,
    PRESETS,
    REFERENCES,
    REGISTRY,
    RESULT_FILES,
    SETTINGS,
    STORE,
    SUPERVISOR,
)
from gateway.comfy.client import ComfyClient
from gateway.dispatcher import Dispatcher
from gateway.errors import ConfigError
from gateway.events import Hub
from gateway.fleet import Fleet
from gateway.metrics import Metrics
from gateway.models import Preset
from gateway.outputs import OutputStore, ReferenceStore
from gateway.outputs_local import LocalOutputStore
from gateway.outputs_s3 import S3OutputStore, connect
from gateway.preset_registry import PresetRegistry, from_backends
from gateway.scheduling import Fairness
from gateway.settings import Settings
from gateway.storage import Store, WebhookRender
from gateway.store import SqliteStore
from gateway.store_pg import PostgresStore
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
    specs = backends.configured(urls=settings.comfyui_urls, file=settings.backends_file,
                                max_in_flight=settings.max_in_flight)
    registry = PresetRegistry(presets_path=settings.presets_path, cache_path=settings.object_info_cache)
    if presets is None:
        registry.load()
    else:
        registry.presets.update(presets)
    app[REGISTRY] = registry
    app[PRESETS] = registry.presets
    closing = contextlib.ExitStack()
    outputs = app[OUTPUTS] = closing.enter_context(open_outputs(settings))
    app[REFERENCES] = ReferenceStore(settings.references_dir)
    for module in (v1, preset_admin, deliveries, saved, live, gallery, status, health, metrics, pages):
        app.add_routes(module.routes())
    if isinstance(outputs, LocalOutputStore):  # else image URLs point at the bucket
        app[RESULT_FILES] = outputs
        app.add_routes(static.routes())

    async def outputs_ctx(app: web.Application) -> AsyncIterator[None]:
        with closing:
            yield
            await outputs.close()

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        store = await open_store(settings, webhook=webhook_render(on_start=settings.webhook_on_start,
                                                                      urls=outputs))
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
        client_id = await _client_id(settings, store)
        several = len(specs) > 1
        async with aiohttp.ClientSession() as session:
            def current_presets() -> dict[str, Preset]:
                return app[PRESETS]

            dispatchers = [
                Dispatcher(
                    store=store, client=ComfyClient(base_url=spec.url, session=session,
                                                    client_id=_backend_id(client_id, spec.url, several=several)),
                    outputs=app[OUTPUTS], presets=current_presets, name=spec.name,
                    max_in_flight=spec.max_in_flight, job_timeout=settings.job_timeout,
                    max_attempts=settings.max_attempts, hub=app[HUB], references=app[REFERENCES],
                    preview_method=None if settings.preview_method == "none" else settings.preview_method,
                    lease=settings.replica_lease,
                    fairness=Fairness(max_skips=settings.affinity_max_skips, max_wait=settings.affinity_max_wait),
                    lost_after=settings.backend_lost_after if several else None,
                    on_result=app[METRICS].result_seconds.observe,
                )
                for spec in specs
            ]
            fleet = app[FLEET] = Fleet(store=store, dispatchers=dispatchers, weights=[s.weight for s in specs])
            app[DISPATCHER] = dispatchers[0]
            store.listen(fleet.jobs_changed)
            task = asyncio.create_task(fleet.run(), name="dispatchers")
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close_streams(app: web.Application) -> None:
        if HUB in app:
            app[HUB].close()  # event streams end now, not at the shutdown timeout

    async def presets_ctx(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            registry.fetch_object_info = from_backends([
                ComfyClient(base_url=spec.url, session=session, client_id="comfy-gateway-presets").object_info
                for spec in specs])
            tasks = [asyncio.create_task(registry.keep_object_info(), name="object-info")]
            if presets is None:
                tasks.append(asyncio.create_task(registry.watch(), name="presets-watch"))
            yield
            for task in tasks:
                task.cancel()
            for task in tasks:
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
                on_attempt=lambda outcome: app[METRICS].webhook_deliveries.labels(outcome=outcome).inc(),
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

    app.cleanup_ctx.append(outputs_ctx)
    app.cleanup_ctx.append(store_ctx)
    if settings.comfyui_managed:
        app.cleanup_ctx.append(_managed_comfyui_ctx(settings))
    app.cleanup_ctx.append(presets_ctx)
    app.cleanup_ctx.append(dispatcher_ctx)
    app.cleanup_ctx.append(webhooks_ctx)
    app.cleanup_ctx.append(retention_ctx)
    app.on_shutdown.append(close_streams)
    return app


@contextlib.contextmanager
def open_outputs(settings: Settings) -> Iterator[OutputStore]:
    """The configured result store: an S3-compatible bucket with GATEWAY_S3_BUCKET (its client closed
    at the end), else the uploads folder."""
    if settings.s3_bucket is None or settings.s3_public_base is None:
        settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        yield LocalOutputStore(settings.uploads_dir, thumbs=settings.thumbs_dir)
        return
    client = connect(endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
                     access_key_id=settings.s3_access_key_id, secret_access_key=settings.s3_secret_access_key)
    with contextlib.closing(client):
        yield S3OutputStore(client=client, bucket=settings.s3_bucket, prefix=settings.s3_prefix or "",
                            public_url=settings.s3_public_base)


async def open_store(settings: Settings, *, webhook: WebhookRender | None = None) -> Store:
    """The configured store: PostgreSQL with GATEWAY_DATABASE_URL, else SQLite in the data folder."""
    if settings.database_url:
        return await PostgresStore.open(settings.database_url, webhook=webhook)
    return await SqliteStore.open(settings.database_path, webhook=webhook)


async def _client_id(settings: Settings, store: Store) -> str:
    """The name of this gateway's ComfyUI websocket, which also owns the jobs it submits. Alone on
    SQLite it is kept across restarts; each replica sharing PostgreSQL has its own, new per start
    (a restarted replica's jobs are taken over when its old lease runs out)."""
    if settings.database_url:
        return f"comfy-gateway-{socket.gethostname()}-{uuid.uuid4().hex[:12]}"
    return await store.meta_value("comfyui_client_id", f"comfy-gateway-{uuid.uuid4().hex}")


def _backend_id(client_id: str, url: str, *, several: bool) -> str:
    """The websocket name and job owner for one backend: the gateway's own with one backend, and
    one per backend URL with several, so each backend's jobs are settled by asking that backend."""
    return f"{client_id}-{hashlib.sha256(url.encode()).hexdigest()[:8]}" if several else client_id


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
