"""The layering of ../ARCHITECTURE.md, checked on the imports themselves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGE = ROOT / "gateway"

LAYERS = {
    "gateway.errors": 1, "gateway.models": 1,
    "gateway.settings": 2, "gateway.bindings": 2, "gateway.presets": 2, "gateway.compiler": 2,
    "gateway.jobs": 2, "gateway.comfy.protocol": 2, "gateway.keys": 2, "gateway.backoff": 2,
    "gateway.editor": 2, "gateway.editor_graph": 2, "gateway.editor_widgets": 2, "gateway.atomic": 2,
    "gateway.loras": 2, "gateway.choices": 2,
    "gateway.parameters": 2, "gateway.webhooks": 2, "gateway.refimages": 2, "gateway.storage": 2,
    "gateway.scheduling": 2, "gateway.logs": 2, "gateway.thumbnails": 2, "gateway.backends": 2,
    "gateway.dispatch.inflight": 2, "gateway.metrics": 3,
    "gateway.comfy.client": 3, "gateway.store": 3, "gateway.store_pg": 3,
    # the parts of store_pg, each over the ones before it
    "gateway.store_pg_schema": 2.6, "gateway.store_pg_notify": 2.6, "gateway.store_pg_records": 2.7,
    "gateway.store_pg_queue": 2.8, "gateway.outputs": 3, "gateway.events": 3,
    "gateway.supervisor": 3, "gateway.preset_files": 3,
    "gateway.outputs_local": 3.5, "gateway.outputs_s3": 3.5,  # the two implementations of outputs.OutputStore
    # the dispatcher's parts: results, then the shared base, then one part per concept over it
    "gateway.dispatch.results": 3.5, "gateway.dispatch.base": 3.6, "gateway.dispatch.feeding": 3.8,
    "gateway.dispatch.comfy_events": 3.8, "gateway.dispatch.deadlines": 3.8, "gateway.dispatch.lease": 3.8,
    "gateway.dispatch.control": 3.8,
    "gateway.dispatcher": 4, "gateway.check": 4, "gateway.preset_registry": 4, "gateway.delivery": 4,
    "gateway.retention": 4, "gateway.fleet": 4.5,  # over one dispatcher per ComfyUI backend
    "gateway.app": 6, "gateway.__main__": 7,
}
PURE = {"gateway.errors", "gateway.models", "gateway.bindings", "gateway.compiler", "gateway.jobs",
        "gateway.comfy.protocol", "gateway.keys", "gateway.backoff", "gateway.editor", "gateway.editor_graph",
        "gateway.editor_widgets", "gateway.loras",
        "gateway.choices", "gateway.parameters", "gateway.webhooks", "gateway.refimages", "gateway.storage",
        "gateway.scheduling", "gateway.thumbnails", "gateway.dispatch.inflight"}
IO_LIBRARIES = {"aiohttp", "aiosqlite", "asyncpg", "httpx", "websockets", "sqlite3", "asyncio", "os"}
SDK = "gateway.sdk"
"""The client: its own layer beside the service. It may use only the shared error and model
definitions of ours, and only the command line may use it."""
SDK_MAY_IMPORT = {"gateway.errors", "gateway.models"}
SDK_PURE = {"gateway.sdk.errors", "gateway.sdk.sse", "gateway.sdk.calls", "gateway.sdk.events"}
PACKAGES = ("gateway.api", SDK, "gateway.store")
"""Packages whose modules may import each other; each module has its package's layer."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def layer(name: str) -> float:
    if within(name, SDK):
        return 6
    if within(name, "gateway.store"):
        return LAYERS["gateway.store"]
    return 5 if within(name, "gateway.api") else LAYERS[name]


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in LAYERS}
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def test_every_module_has_a_layer() -> None:
    for path in MODULES:
        layer(module_name(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_only_go_down(path: Path) -> None:
    me = module_name(path)
    for imported in imports(path):
        if not imported.startswith("gateway.") or imported in ("gateway.api", "gateway.comfy"):
            continue
        if any(within(me, p) and within(imported, p) for p in PACKAGES):
            continue
        assert layer(imported) < layer(me) or (layer(imported) == layer(me) == 2 and imported in PURE), (
            f"{me} (layer {layer(me)}) imports {imported} (layer {layer(imported)})")


@pytest.mark.parametrize("path", [p for p in MODULES if module_name(p) in PURE], ids=lambda p: module_name(p))
def test_pure_modules_do_no_io(path: Path) -> None:
    roots = {name.split(".")[0] for name in imports(path)}
    assert not roots & IO_LIBRARIES


SDK_MODULES = [p for p in MODULES if module_name(p).startswith(SDK)]


@pytest.mark.parametrize("path", SDK_MODULES, ids=lambda p: module_name(p))
def test_the_sdk_uses_only_errors_and_models_of_the_service(path: Path) -> None:
    for imported in imports(path):
        assert imported.split(".")[0] != "aiohttp", f"{module_name(path)} imports {imported}"
        if imported.startswith("gateway.") and not imported.startswith(SDK):
            assert imported in SDK_MAY_IMPORT, f"{module_name(path)} imports {imported}"


@pytest.mark.parametrize("path", [p for p in SDK_MODULES if module_name(p) in SDK_PURE], ids=lambda p: module_name(p))
def test_the_sdks_request_layer_does_no_io(path: Path) -> None:
    roots = {name.split(".")[0] for name in imports(path)}
    assert not roots & (IO_LIBRARIES | {"rich"})


def test_only_the_command_line_uses_the_sdk() -> None:
    for path in MODULES:
        me = module_name(path)
        if not me.startswith(SDK) and me != "gateway.__main__":
            assert not any(name.startswith(SDK) for name in imports(path)), me


def test_only_the_api_speaks_http_errors() -> None:
    for path in MODULES:
        if not module_name(path).startswith("gateway.api"):
            assert "web.HTTP" not in path.read_text(), module_name(path)


def test_timeouts_use_asyncio_timeout_not_wait_for() -> None:
    """On Python 3.11 `asyncio.wait_for` can swallow a cancellation that arrives as its awaitable
    finishes, so a task being stopped runs on (and a shutdown waits forever)."""
    for path in MODULES:
        calls = [node for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Attribute) and node.attr == "wait_for"]
        assert not calls, f"{module_name(path)} line {calls[0].lineno}" if calls else ""
