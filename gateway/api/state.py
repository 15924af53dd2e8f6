"""Typed keys under which `gateway.app` puts the objects handlers use."""

from __future__ import annotations

from aiohttp import web

from gateway.api.auth import KeyRing
from gateway.dispatcher import Dispatcher
from gateway.events import Hub
from gateway.fleet import Fleet
from gateway.metrics import Metrics
from gateway.models import Preset
from gateway.outputs import OutputStore, ReferenceStore
from gateway.outputs_local import LocalOutputStore
from gateway.preset_registry import PresetRegistry
from gateway.settings import Settings
from gateway.storage import Store
from gateway.supervisor import Supervisor

STORE = web.AppKey("store", Store)
PRESETS = web.AppKey("presets", dict[str, Preset])
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
"""The first ComfyUI backend's dispatcher (the only one unless several are set)."""
FLEET = web.AppKey("fleet", Fleet)
"""Every backend's dispatcher: what handlers ask and tell."""
OUTPUTS = web.AppKey("outputs", OutputStore)
"""Where result images go: a folder, or an S3-compatible bucket."""
RESULT_FILES = web.AppKey("result_files", LocalOutputStore)
"""The same store when it is a folder the gateway serves itself (absent with a bucket)."""
KEYRING = web.AppKey("keyring", KeyRing)
SETTINGS = web.AppKey("settings", Settings)
HUB = web.AppKey("hub", Hub)
SUPERVISOR = web.AppKey("supervisor", Supervisor)
"""Present only when the gateway runs ComfyUI itself (GATEWAY_COMFYUI_MANAGED=1)."""
REGISTRY = web.AppKey("registry", PresetRegistry)
METRICS = web.AppKey("metrics", Metrics)
REFERENCES = web.AppKey("references", ReferenceStore)
