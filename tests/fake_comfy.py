"""An in-process fake ComfyUI that speaks the protocol recorded from a real ComfyUI 0.8.0.

It reproduces what was observed on a real ComfyUI 0.8.0 (recorded in ``tests/data/transcript-*.json``):
routes, status codes, JSON shapes, websocket message order and routing, validation errors, the
output-node cache, SaveImage file numbering, previews and interrupts. It runs no model: node
classes come from ``tests/data/object_info.json`` (a slice of a real server's ``/object_info``),
nodes "execute" by emitting the messages a real one would, and output nodes write solid-colour PNGs
into an in-memory file store (``FakeComfyUI.files``).

Test switches (``reject_next``, ``fail_next``, ``stall``, ``drop_sockets`` ...) and records
(``submissions``, ``prompt_counts`` ...) are public attributes of :class:`FakeComfyUI`.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import copy
import hashlib
import json
import mimetypes
import posixpath
import random
import string
import struct
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

Json = dict[str, Any]

OBJECT_INFO: dict[str, Json] = json.loads(
    (Path(__file__).parent / "data" / "object_info.json").read_text(encoding="utf-8")
)
FEATURES: Json = {
    "supports_preview_metadata": True,
    "max_upload_size": 104857600,
    "extension": {"manager": {"supports_v4": True}},
}
SYSTEM_STATS: Json = {
    "system": {
        "os": "linux",
        "ram_total": 17179869184,
        "ram_free": 8589934592,
        "comfyui_version": "0.8.0",
        "required_frontend_version": "1.35.9",
        "installed_templates_version": "0.7.0",
        "required_templates_version": "0.7.0",
        "python_version": "3.11.7",
        "pytorch_version": "2.13.0+cpu",
        "embedded_python": False,
        "argv": ["main.py", "--cpu"],
    },
    "devices": [
        {
            "name": "cpu",
            "type": "cpu",
            "index": None,
            "vram_total": 17179869184,
            "vram_free": 8589934592,
            "torch_vram_total": 17179869184,
            "torch_vram_free": 8589934592,
        }
    ],
}
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
PREVIEW_METHODS = ("none", "auto", "latent2rgb", "taesd")
FILE_TYPES = ("output", "input", "temp")
JOB_STATUSES = ("pending", "in_progress", "completed", "failed")
FOLDERS = {"output": "/comfyui/output", "temp": "/comfyui/temp"}  # shown in error messages only
FAKE_TRACEBACK = ['  File "tests/fake_comfy.py", in a fake node\n    raise Exception(message)\n']

# An 8x8 mid-grey baseline JPEG with one-code Huffman tables (DC diff 0, then EOB): 159 bytes.
PREVIEW_JPEG = b"".join(
    [
        b"\xff\xd8",  # SOI
        b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00",  # APP0, as real previews start
        b"\xff\xdb\x00\x43\x00" + b"\x01" * 64,  # DQT 0: all ones
        b"\xff\xc0\x00\x0b\x08\x00\x08\x00\x08\x01\x01\x11\x00",  # SOF0: 8x8, one grey component
        b"\xff\xc4\x00\x14\x00\x01" + b"\x00" * 15 + b"\x00",  # DHT DC 0: code "0" = category 0
        b"\xff\xc4\x00\x14\x10\x01" + b"\x00" * 15 + b"\x00",  # DHT AC 0: code "0" = end of block
        b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00",  # SOS
        b"\x3f",  # bits 0 (DC), 0 (EOB), padded with ones
        b"\xff\xd9",  # EOI
    ]
)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _reason(kind: str, message: str, details: str, extra_info: Json | None = None) -> Json:
    """One ComfyUI error object (``error`` or an entry of ``node_errors[id].errors``)."""
    return {"type": kind, "message": message, "details": details, "extra_info": extra_info or {}}


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour 8-bit RGB PNG."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = (b"\x00" + bytes(rgb) * width) * height
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _normpath(subfolder: str) -> str:
    return "" if subfolder in ("", ".") else posixpath.normpath(subfolder)


def _escapes(subfolder: str) -> bool:
    norm = _normpath(subfolder)
    return norm.startswith("/") or norm == ".." or norm.startswith("../")


def _signatures(graph: Json) -> dict[str, str]:
    """Cache keys: a node's class and inputs, with links replaced by the upstream node's key."""
    keys: dict[str, str] = {}

    def key(node_id: str) -> str:
        if node_id not in graph:  # a link from an output that failed validation: never cached
            return f"missing {node_id}"
        if node_id not in keys:
            node = graph[node_id]
            inputs = {k: [key(v[0]), v[1]] if _is_link(v) else v for k, v in node["inputs"].items()}
            text = json.dumps([node["class_type"], inputs], sort_keys=True, default=str)
            keys[node_id] = hashlib.sha256(text.encode()).hexdigest()
        return keys[node_id]

    return {node_id: key(node_id) for node_id in graph}


def _execution_order(
    graph: Json, outputs: Sequence[str], cached: set[str], is_output: Callable[[str], bool]
) -> list[str]:
    """The order ComfyUI runs nodes in: a topological dissolve from the outputs (cached inputs are
    not needed) that prefers a ready node which is, or feeds within two links, an output node,
    and otherwise the ready node discovered first."""
    waits_for: dict[str, set[str]] = {}
    feeds: dict[str, list[str]] = collections.defaultdict(list)
    for output in outputs:
        stack = [output]
        while stack:
            node_id = stack.pop()
            if node_id in waits_for:
                continue
            waits_for[node_id] = set()
            for value in graph[node_id]["inputs"].values():
                if _is_link(value) and value[0] not in cached:
                    stack.append(value[0])
                    waits_for[node_id].add(value[0])
                    feeds[value[0]].append(node_id)

    def leads_to_output(node_id: str, links: int) -> bool:
        reached = [node_id]
        for _ in range(links):
            reached = [target for source in reached for target in feeds[source]]
        return any(is_output(n) for n in reached)

    order: list[str] = []
    while waits_for:
        ready = [node_id for node_id, deps in waits_for.items() if not deps]
        picked = next((n for links in range(3) for n in ready if leads_to_output(n, links)), ready[0])
        order.append(picked)
        del waits_for[picked]
        for target in feeds[picked]:
            waits_for[target].discard(picked)
    return order


@dataclass
class _Prompt:
    number: float
    prompt_id: str
    graph: Json
    extra_data: Json
    outputs: list[str]

    @property
    def client_id(self) -> str | None:
        return self.extra_data.get("client_id")

    def queue_item(self) -> list[Any]:
        """The ``[number, id, graph, extra_data, outputs]`` list of ``/queue`` and history."""
        return [self.number, self.prompt_id, self.graph, self.extra_data, self.outputs]


@dataclass
class _Run:
    """What one execution of a prompt accumulates for the ws stream and its history entry."""

    prompt: _Prompt
    fail: bool
    keys: dict[str, str]
    messages: list[list[Any]] = field(default_factory=list)
    progress: dict[str, Json] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    outputs: dict[str, Json] = field(default_factory=dict)
    meta: dict[str, Json] = field(default_factory=dict)
    node: str = ""
    success: bool = False


class _Interrupted(Exception):
    pass


class _NodeError(Exception):
    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type


class FakeComfyUI:
    """A ComfyUI double served by aiohttp on the running event loop.

    ``start()`` binds ``host:port`` (port 0 = a free one; later starts reuse the bound port) and
    sets ``url``. ``stop()`` drops every socket and closes the server; like a restarted ComfyUI,
    the next ``start()`` has an empty queue, history and cache and numbers prompts from 0 again,
    while ``files`` (output and input store; temp is wiped) and the records below survive.

    Switches: ``reject_next()``, ``fail_next()``, ``stall``/``release()``, ``job_delay``,
    ``step_delay``, ``swap_delay``, ``drop_sockets()``, ``silent``, ``fail_view``.
    Records: ``submissions``, ``prompt_counts``, ``executed_ids``, ``execution_starts``,
    ``interrupts``, ``deleted``, ``loaded_checkpoint``, ``model_loads``.
    """

    def __init__(
        self,
        *,
        checkpoints: Sequence[str] = ("tiny.safetensors",),
        loras: Sequence[str] = (),
        preview_method: str = "none",
        step_delay: float = 0.0,
        job_delay: float = 0.0,
        swap_delay: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.checkpoints = list(checkpoints)
        self.loras = list(loras)
        self.preview_method = preview_method
        self.host = host
        self.port = port
        self.url = ""
        self.app = web.Application()
        #: Seconds each sampler step takes (a node with a ``steps`` input).
        self.step_delay = step_delay
        #: Extra seconds a prompt spends in the first node it really executes (not when fully cached).
        self.job_delay = job_delay
        #: Seconds a loader node (one with a ``ckpt_name`` input) takes to load a checkpoint other
        #: than the one loaded last, as a real one reads the file; loading the same one again is
        #: free because the loader's output is cached.
        self.swap_delay = swap_delay
        #: While True every socket stays open but receives nothing, like a hung connection.
        self.silent = False
        #: While True ``GET /view`` answers 404 for every file.
        self.fail_view = False
        #: The file store: ``(type, subfolder, filename) -> bytes``; type is output, input or temp.
        self.files: dict[tuple[str, str, str], bytes] = {}
        #: Every accepted ``POST /prompt`` body, in arrival order.
        self.submissions: list[Json] = []
        #: Accepted submissions per prompt_id (a resubmitted id counts twice).
        self.prompt_counts: collections.Counter[str] = collections.Counter()
        #: Prompt ids in the order their execution started.
        self.executed_ids: list[str] = []
        #: ``time.monotonic()`` at each prompt's ``execution_start``.
        self.execution_starts: dict[str, float] = {}
        #: The ``prompt_id`` of every ``POST /interrupt`` (None for a global one), effective or not.
        self.interrupts: list[str | None] = []
        #: Every id named in a ``POST /queue {"delete": [...]}``, pending or not.
        self.deleted: list[str] = []
        self._stall = False
        self._reject_budget = 0
        self._fail_budget = 0
        self._fail_message = ""
        self._interrupt = asyncio.Event()
        self._wake = asyncio.Event()
        self._queued = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._worker: asyncio.Task[None] | None = None
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._client_flags: dict[str, Json] = {}
        self._connections: dict[web.WebSocketResponse, web.BaseRequest] = {}
        self._reset()

    def _reset(self) -> None:
        """Forget everything a real ComfyUI process keeps in memory."""
        self._number = 0
        self._pending: list[_Prompt] = []
        self._running: _Prompt | None = None
        self._current_node: str | None = None
        #: The checkpoint a loader node loaded last (None after a start).
        self.loaded_checkpoint: str | None = None
        #: Checkpoint loads since the last start (the first one included).
        self.model_loads = 0
        self._history: dict[str, Json] = {}
        self._cache: dict[str, Json | None] = {}
        self.files = {key: data for key, data in self.files.items() if key[0] != "temp"}

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, port: int | None = None) -> None:
        """Serve on ``host:port`` (``port`` overrides the constructor's) and set ``url``."""
        self._reset()
        self.app = self._make_app()
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port if port is None else port).start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{self.port}"
        self._worker = asyncio.create_task(self._work_loop())

    async def stop(self) -> None:
        """Cut every socket, stop executing and close the server."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        self.drop_sockets()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- switches ------------------------------------------------------------------------------

    def reject_next(self, n: int = 1) -> None:
        """The next ``n`` ``POST /prompt`` answer 400 ``prompt_outputs_failed_validation`` with a
        ``value_not_in_list`` error on ``ckpt_name`` (as when a model file vanished), send nothing
        on the websocket, and are not recorded as submissions."""
        self._reject_budget += n

    def fail_next(self, n: int = 1, message: str = "Fake failure injected by fail_next()") -> None:
        """The next ``n`` prompts to execute ignore the cache and fail at their first output node
        with ``execution_error`` (exception_type ``Exception``, exception_message ``message``)."""
        self._fail_budget += n
        self._fail_message = message

    @property
    def stall(self) -> bool:
        """While True, a prompt sends ``execution_start`` and ``executing`` for the first node it
        really executes, then hangs until ``release()`` (or ``stall = False``) lets it go on, or an
        interrupt ends it with ``execution_interrupted``."""
        return self._stall

    @stall.setter
    def stall(self, value: bool) -> None:
        self._stall = value
        if not value:
            self._wake.set()

    def release(self) -> None:
        """Stop stalling: the hanging prompt and all later ones run normally."""
        self.stall = False

    @property
    def open_sockets(self) -> int:
        """Websocket connections open now."""
        return len(self._connections)

    def drop_sockets(self) -> None:
        """Abort every websocket connection without a close frame, as a network drop does. The
        server and its queue keep running; messages sent while no socket is connected are lost."""
        self._sockets.clear()
        self._client_flags.clear()
        for request in list(self._connections.values()):
            if request.transport is not None:
                request.transport.abort()

    # -- wiring --------------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        routes = [
            web.get("/ws", self._ws),
            web.post("/prompt", self._post_prompt),
            web.get("/prompt", self._get_prompt),
            web.get("/queue", self._get_queue),
            web.post("/queue", self._post_queue),
            web.post("/interrupt", self._post_interrupt),
            web.get("/history", self._get_history),
            web.get("/history/{prompt_id}", self._get_history_item),
            web.post("/history", self._post_history),
            web.get("/view", self._view),
            web.post("/upload/image", self._upload_image),
            web.get("/object_info", self._object_info),
            web.get("/object_info/{node_class}", self._object_info_class),
            web.get("/system_stats", _constant(SYSTEM_STATS)),
            web.get("/features", _constant(FEATURES)),
            web.get("/models", _constant(list(self._models()))),
            web.get("/models/{folder}", self._models_folder),
            web.get("/api/jobs", self._get_jobs),
            web.get("/api/jobs/{job_id}", self._get_job),
            web.post("/free", self._post_free),
        ]
        # Like ComfyUI, bodies (uploads) may be as large as its advertised max_upload_size.
        app = web.Application(client_max_size=FEATURES["max_upload_size"])
        app.add_routes(routes)
        # ComfyUI serves every route under /api as well.
        app.add_routes([web.RouteDef(r.method, "/api" + r.path, r.handler, r.kwargs) for r in routes])
        return app

    def _models(self) -> dict[str, list[str]]:
        return {"checkpoints": self.checkpoints, "loras": self.loras, "vae": [], "upscale_models": []}

    def _class_info(self, class_type: str) -> Json | None:
        """A node class from object_info, with the combo lists this server would scan from disk."""
        info = OBJECT_INFO.get(class_type)
        combos = {
            "CheckpointLoaderSimple": ("ckpt_name", self.checkpoints),
            "CheckpointLoader": ("ckpt_name", self.checkpoints),
            "LoraLoader": ("lora_name", self.loras),
            "LoadImage": ("image", sorted(name for kind, sub, name in self.files if (kind, sub) == ("input", ""))),
        }
        if info is None or class_type not in combos:
            return info
        info = copy.deepcopy(info)
        name, options = combos[class_type]
        info["input"]["required"][name][0] = list(options)
        return info

    # -- websocket -----------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self._sockets[sid] = ws  # a reconnect with the same clientId replaces the old socket
        self._client_flags[sid] = {}
        self._connections[ws] = request
        try:
            await self._send("status", {"status": self._queue_info(), "sid": sid}, sid)
            running = self._running
            if running is not None and running.client_id == sid and self._current_node is not None:
                await self._send("executing", {"node": self._current_node}, sid)
            first = True
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                with contextlib.suppress(ValueError):
                    data = json.loads(msg.data)
                    if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                        self._client_flags[sid] = data.get("data", {})
                        await self._send("feature_flags", FEATURES, sid)
                    first = False
        finally:
            del self._connections[ws]
            if self._sockets.get(sid) is ws:
                del self._sockets[sid]
                del self._client_flags[sid]
        return ws

    async def _send(self, event: str, data: Json, sid: str | None) -> None:
        """A text frame to the socket ``sid``, or to every socket when ``sid`` is None."""
        await self._send_frame(json.dumps({"type": event, "data": data}), sid)

    async def _send_frame(self, frame: str | bytes, sid: str | None) -> None:
        if self.silent:
            return
        targets = list(self._sockets.values()) if sid is None else [self._sockets.get(sid)]
        for ws in targets:
            if ws is None or ws.closed:
                continue
            with contextlib.suppress(ConnectionError):
                await (ws.send_str(frame) if isinstance(frame, str) else ws.send_bytes(frame))

    def _queue_info(self) -> Json:
        return {"exec_info": {"queue_remaining": len(self._pending) + (self._running is not None)}}

    async def _send_status(self) -> None:
        await self._send("status", {"status": self._queue_info()}, None)

    # -- submitting and validating -------------------------------------------------------------

    async def _post_prompt(self, request: web.Request) -> web.Response:
        body = await request.json()  # not JSON: aiohttp's plain-text 500, as the real server gives
        if "number" in body:
            number = float(body["number"])
        else:
            number = -self._number if body.get("front") else self._number
            self._number += 1
        if "prompt" not in body:
            no_prompt = _reason("no_prompt", "No prompt provided", "No prompt provided")
            return web.json_response({"error": no_prompt, "node_errors": {}}, status=400)
        graph = body["prompt"]
        if self._reject_budget:
            self._reject_budget -= 1
            return web.json_response(self._rejection(graph), status=400)
        error, outputs, node_errors = self._validate(graph)
        if error is not None:
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        extra_data = dict(body.get("extra_data", {}))
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        for key in SENSITIVE_EXTRA_DATA_KEYS:
            extra_data.pop(key, None)
        extra_data["create_time"] = _now_ms()
        prompt = _Prompt(number, str(body.get("prompt_id") or uuid.uuid4()), graph, extra_data, outputs)
        self.submissions.append(body)
        self.prompt_counts[prompt.prompt_id] += 1
        bisect.insort(self._pending, prompt, key=lambda p: p.number)
        self._queued.set()
        await self._send_status()
        return web.json_response({"prompt_id": prompt.prompt_id, "number": number, "node_errors": node_errors})

    def _rejection(self, graph: Json) -> Json:
        with_ckpt = [n for n, node in graph.items() if "ckpt_name" in node.get("inputs", {})]
        node_id = with_ckpt[0] if with_ckpt else next(iter(graph), "1")
        node = graph.get(node_id, {})
        value = node.get("inputs", {}).get("ckpt_name", "missing.safetensors")
        config = [[], {"tooltip": "The name of the checkpoint (model) to load."}]
        reason = _reason(
            "value_not_in_list",
            "Value not in list",
            f"ckpt_name: '{value}' not in []",
            {"input_name": "ckpt_name", "input_config": config, "received_value": value},
        )
        outputs = [n for n, v in graph.items() if OBJECT_INFO.get(v.get("class_type"), {}).get("output_node")]
        return {
            "error": _reason("prompt_outputs_failed_validation", "Prompt outputs failed validation", ""),
            "node_errors": {
                node_id: {"errors": [reason], "dependent_outputs": outputs, "class_type": node.get("class_type")}
            },
        }

    def _validate(self, graph: Json) -> tuple[Json | None, list[str], Json]:
        """ComfyUI's validate_prompt: (error or None, outputs to execute, node_errors)."""
        outputs = []
        for node_id, node in graph.items():
            if "class_type" not in node:
                message = "Cannot execute because a node is missing the class_type property."
                return _reason("invalid_prompt", message, f"Node ID '#{node_id}'"), [], {}
            info = self._class_info(node["class_type"])
            if info is None:
                message = f"Cannot execute because node {node['class_type']} does not exist."
                return _reason("invalid_prompt", message, f"Node ID '#{node_id}'"), [], {}
            if info["output_node"]:
                outputs.append(node_id)
        if not outputs:
            return _reason("prompt_no_outputs", "Prompt has no outputs", ""), [], {}

        validated: dict[str, tuple[bool, list[Json]]] = {}
        good: list[str] = []
        failures: list[str] = []
        node_errors: Json = {}
        for output in outputs:
            try:
                valid, reasons = self._validate_node(graph, output, validated)
            except Exception as exc:  # e.g. a link to a node that does not exist
                extra = {"exception_type": type(exc).__name__, "traceback": FAKE_TRACEBACK}
                reasons = [_reason("exception_during_validation", "Exception when validating node", str(exc), extra)]
                valid = False
                validated[output] = (False, reasons)
            if valid:
                good.append(output)
                continue
            failures += [f"{r['message']}: {r['details']}" for r in reasons]
            for node_id, (ok, errors) in validated.items():
                if not ok and errors:
                    entry = node_errors.setdefault(
                        node_id, {"errors": errors, "dependent_outputs": [], "class_type": graph[node_id]["class_type"]}
                    )
                    entry["dependent_outputs"].append(output)
        if not good:
            error = _reason("prompt_outputs_failed_validation", "Prompt outputs failed validation", "\n".join(failures))
            return error, [], node_errors
        return None, good, node_errors

    def _validate_node(
        self, graph: Json, node_id: str, validated: dict[str, tuple[bool, list[Json]]]
    ) -> tuple[bool, list[Json]]:
        if node_id in validated:
            return validated[node_id]
        inputs = graph[node_id]["inputs"]
        info = self._class_info(graph[node_id]["class_type"])
        assert info is not None
        errors: list[Json] = []
        valid = True
        for category in ("required", "optional"):
            for name, spec in info["input"].get(category, {}).items():
                if name not in inputs:
                    if category == "required":
                        errors.append(
                            _reason("required_input_missing", "Required input is missing", name, {"input_name": name})
                        )
                    continue
                if isinstance(inputs[name], list):
                    linked_ok, error = self._check_link(graph, node_id, name, spec, validated)
                    valid = valid and linked_ok
                else:
                    error = self._check_value(graph[node_id]["class_type"], inputs, name, spec)
                if error is not None:
                    errors.append(error)
        validated[node_id] = (valid and not errors, errors)
        return validated[node_id]

    def _check_link(
        self, graph: Json, node_id: str, name: str, spec: list[Any], validated: dict[str, tuple[bool, list[Json]]]
    ) -> tuple[bool, Json | None]:
        """(upstream valid, error of this input) for a linked input."""
        link = graph[node_id]["inputs"][name]
        config = [spec[0], spec[1] if len(spec) > 1 else {}]
        source_info = self._class_info(graph[link[0]]["class_type"])  # KeyError: link to a missing node
        assert source_info is not None
        received = source_info["output"][link[1]]
        if not _types_match(received, spec[0]):
            details = f"{name}, received_type({received}) mismatch input_type({spec[0]})"
            extra = {"input_name": name, "input_config": config, "received_type": received, "linked_node": link}
            return True, _reason("return_type_mismatch", "Return type mismatch between linked nodes", details, extra)
        try:
            return self._validate_node(graph, link[0], validated)[0], None
        except Exception as exc:
            extra = {
                "input_name": name,
                "input_config": config,
                "exception_message": str(exc),
                "exception_type": type(exc).__name__,
                "traceback": FAKE_TRACEBACK,
                "linked_node": link,
            }
            reason = _reason(
                "exception_during_inner_validation", "Exception when validating inner node", str(exc), extra
            )
            validated[link[0]] = (False, [reason])
            return False, None

    def _check_value(self, class_type: str, inputs: Json, name: str, spec: list[Any]) -> Json | None:
        """Convert a literal input in place like ComfyUI does, and return its error if any."""
        input_type, extra = spec[0], spec[1] if len(spec) > 1 else {}
        config = [input_type, extra]
        value = inputs[name]
        if isinstance(value, dict) and "__value__" in value:
            value = inputs[name] = value["__value__"]
        convert: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
        if isinstance(input_type, str) and input_type in convert:
            try:
                value = inputs[name] = convert[input_type](value)
            except (TypeError, ValueError) as exc:
                extra_info = {
                    "input_name": name,
                    "input_config": config,
                    "received_value": value,
                    "exception_message": str(exc),
                }
                message = f"Failed to convert an input value to a {input_type} value"
                return _reason("invalid_input_type", message, f"{name}, {value}, {exc}", extra_info)
        if class_type == "LoadImage" and name == "image":  # LoadImage validates its file itself
            if self._annotated_file(str(value)) in self.files:
                return None
            details = f"image - Invalid image file: {value}"
            return _reason(
                "custom_validation_failed", "Custom validation failed for node", details, {"input_name": name}
            )
        extra_info = {"input_name": name, "input_config": config, "received_value": value}
        if "min" in extra and value < extra["min"]:
            return _reason(
                "value_smaller_than_min", f"Value {value} smaller than min of {extra['min']}", name, extra_info
            )
        if "max" in extra and value > extra["max"]:
            return _reason(
                "value_bigger_than_max", f"Value {value} bigger than max of {extra['max']}", name, extra_info
            )
        options = extra.get("options", []) if input_type == "COMBO" else input_type
        if isinstance(options, list) and value not in options:
            listed = f"(list of length {len(options)})" if len(options) > 20 else str(options)
            if len(options) > 20:
                extra_info["input_config"] = None
            return _reason("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {listed}", extra_info)
        return None

    @staticmethod
    def _annotated_file(name: str) -> tuple[str, str, str]:
        """``"sub/x.png [output]"`` -> ``("output", "sub", "x.png")``; the type defaults to input."""
        kind = "input"
        for candidate in FILE_TYPES:
            if name.endswith(f" [{candidate}]"):
                name, kind = name[: -len(candidate) - 3], candidate
        return kind, _normpath(posixpath.dirname(name)), posixpath.basename(name)

    # -- executing -----------------------------------------------------------------------------

    async def _work_loop(self) -> None:
        """The single executor: runs queued prompts in order, then records and announces them."""
        while True:
            while not self._pending:
                self._queued.clear()
                await self._queued.wait()
            prompt = self._running = self._pending.pop(0)
            await self._send_status()
            run = await self._execute(prompt)
            self._running = self._current_node = None
            self._history[prompt.prompt_id] = {
                "prompt": prompt.queue_item(),
                "outputs": run.outputs,
                "status": {
                    "status_str": "success" if run.success else "error",
                    "completed": run.success,
                    "messages": run.messages,
                },
                "meta": run.meta,
            }
            while len(self._history) > 10000:
                del self._history[next(iter(self._history))]
            await self._send_status()
            if prompt.client_id is not None:
                await self._send("executing", {"node": None, "prompt_id": prompt.prompt_id}, prompt.client_id)

    async def _execute(self, prompt: _Prompt) -> _Run:
        self._interrupt.clear()
        self.executed_ids.append(prompt.prompt_id)
        self.execution_starts[prompt.prompt_id] = time.monotonic()
        keys = _signatures(prompt.graph)
        run = _Run(prompt, fail=self._fail_budget > 0, keys=keys)
        if run.fail:
            self._fail_budget -= 1
        await self._message(run, "execution_start", {"prompt_id": prompt.prompt_id})
        live = set(keys.values())  # like ComfyUI's default cache, keep only what this prompt uses
        self._cache = {k: v for k, v in self._cache.items() if k in live}
        cached = [] if run.fail else [n for n in prompt.graph if keys[n] in self._cache]
        await self._message(run, "execution_cached", {"nodes": cached, "prompt_id": prompt.prompt_id})
        order = _execution_order(prompt.graph, prompt.outputs, set(cached), self._is_output(prompt.graph))
        try:
            for node_id in order:
                if node_id in cached:
                    await self._replay_cached(run, node_id, self._cache[keys[node_id]])
                else:
                    self._cache[keys[node_id]] = await self._run_node(run, node_id)
        except _Interrupted:
            where = {"prompt_id": prompt.prompt_id, "node_id": run.node, "node_type": self._class(run, run.node)}
            interrupted = where | {"executed": run.executed[::-1]}
            await self._message(run, "execution_interrupted", interrupted, broadcast=True)
        except _NodeError as exc:
            failed: Json = {
                "prompt_id": prompt.prompt_id,
                "node_id": run.node,
                "node_type": self._class(run, run.node),
                "executed": run.executed[::-1],
                "exception_message": f"{exc}\n",
                "exception_type": exc.exception_type,
                "traceback": FAKE_TRACEBACK,
                "current_inputs": self._current_inputs(run),
                "current_outputs": list(prompt.graph)[::-1],
            }
            await self._message(run, "execution_error", failed)
        else:
            run.success = True
            await self._message(run, "execution_success", {"prompt_id": prompt.prompt_id})
        return run

    @staticmethod
    def _class(run: _Run, node_id: str) -> str:
        return str(run.prompt.graph[node_id]["class_type"])

    def _is_output(self, graph: Json) -> Callable[[str], bool]:
        return lambda node_id: bool(OBJECT_INFO[graph[node_id]["class_type"]]["output_node"])

    async def _message(self, run: _Run, event: str, data: Json, broadcast: bool = False) -> None:
        """An execution_* message: kept for history, sent to the prompt's client (or to all)."""
        data = data | {"timestamp": _now_ms()}
        run.messages.append([event, data])
        if run.prompt.client_id is not None or broadcast:
            await self._send(event, data, run.prompt.client_id)

    async def _progress(self, run: _Run, node_id: str, value: float, maximum: float, state: str) -> None:
        run.progress[node_id] = {
            "value": value,
            "max": maximum,
            "state": state,
            "node_id": node_id,
            "prompt_id": run.prompt.prompt_id,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }
        await self._send(
            "progress_state", {"prompt_id": run.prompt.prompt_id, "nodes": run.progress}, run.prompt.client_id
        )

    async def _replay_cached(self, run: _Run, node_id: str, output: Json | None) -> None:
        """A cached output node sends its previous ``executed`` again; nothing is re-run."""
        assert output is not None  # only output nodes are visited while cached
        await self._record_output(run, node_id, output)
        await self._progress(run, node_id, 1, 1, "finished")

    async def _record_output(self, run: _Run, node_id: str, output: Json) -> None:
        run.outputs[node_id] = output
        run.meta[node_id] = {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id}
        if run.prompt.client_id is not None:
            data = {"node": node_id, "display_node": node_id, "output": output, "prompt_id": run.prompt.prompt_id}
            await self._send("executed", data, run.prompt.client_id)

    async def _run_node(self, run: _Run, node_id: str) -> Json | None:
        """Execute one node; returns its UI output (output nodes) for the cache."""
        prompt, client_id = run.prompt, run.prompt.client_id
        run.node = node_id
        await self._progress(run, node_id, 0.0, 1.0, "running")
        self._current_node = node_id
        if client_id is not None:
            await self._send(
                "executing", {"node": node_id, "display_node": node_id, "prompt_id": prompt.prompt_id}, client_id
            )
        if not run.executed:
            while self._stall and not self._interrupt.is_set():
                self._wake.clear()
                await self._wake.wait()
        await self._pause(0 if run.executed else self.job_delay)
        checkpoint = prompt.graph[node_id]["inputs"].get("ckpt_name")
        if isinstance(checkpoint, str) and checkpoint != self.loaded_checkpoint:
            await self._pause(self.swap_delay)
            self.loaded_checkpoint = checkpoint
            self.model_loads += 1
        done: tuple[float, float] = (1.0, 1.0)
        if isinstance(steps := prompt.graph[node_id]["inputs"].get("steps"), int):  # a sampler
            await self._sample(run, node_id, steps)
            done = (steps, steps)
        output = None
        if self._is_output(prompt.graph)(node_id):
            if run.fail:
                raise _NodeError("Exception", self._fail_message)
            output = self._save_images(run, node_id)
            await self._record_output(run, node_id, output)
        await self._progress(run, node_id, *done, "finished")
        run.executed.append(node_id)
        return output

    async def _pause(self, seconds: float) -> None:
        """Sleep up to ``seconds``; raise at once if the prompt is (or gets) interrupted."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._interrupt.wait(), seconds)
        if self._interrupt.is_set():
            raise _Interrupted

    async def _sample(self, run: _Run, node_id: str, steps: int) -> None:
        """Sampler steps: progress_state, progress and (if previews are on) a binary preview each."""
        prompt, client_id = run.prompt, run.prompt.client_id
        method = prompt.extra_data.get("preview_method")
        previews = (method if method in PREVIEW_METHODS else self.preview_method) != "none"
        with_metadata = client_id is not None and bool(
            self._client_flags.get(client_id, {}).get("supports_preview_metadata")
        )
        metadata = {
            "node_id": node_id,
            "prompt_id": prompt.prompt_id,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
            "image_type": "image/jpeg",
        }
        for step in range(1, steps + 1):
            await self._pause(self.step_delay)
            await self._progress(run, node_id, step, steps, "running")
            if previews and with_metadata:
                meta = json.dumps(metadata).encode()
                await self._send_frame(struct.pack(">II", 4, len(meta)) + meta + PREVIEW_JPEG, client_id)
            progress = {"value": step, "max": steps, "prompt_id": prompt.prompt_id, "node": node_id}
            await self._send("progress", progress, client_id)
            if previews and not with_metadata:
                await self._send_frame(struct.pack(">II", 1, 1) + PREVIEW_JPEG, client_id)

    def _save_images(self, run: _Run, node_id: str) -> Json:
        """SaveImage / PreviewImage: write PNGs named ``<prefix>_<counter:05>_.png``."""
        inputs = run.prompt.graph[node_id]["inputs"]
        if self._class(run, node_id) == "PreviewImage":
            kind, prefix = "temp", "ComfyUI_temp_" + "".join(random.choices(string.ascii_lowercase, k=5))
        else:
            kind, prefix = "output", str(inputs["filename_prefix"])
        norm = posixpath.normpath(prefix)
        subfolder, name = _normpath(posixpath.dirname(norm)), posixpath.basename(norm)
        if _escapes(subfolder):
            folder = posixpath.normpath(posixpath.join(FOLDERS[kind], subfolder))
            raise _NodeError(
                "Exception",
                "**** ERROR: Saving image outside the output folder is not allowed."
                f"\n full_output_folder: {folder}"
                f"\n         output_dir: {FOLDERS[kind]}"
                f"\n         commonpath: {posixpath.commonpath((FOLDERS[kind], folder))}",
            )
        width, height, rgb, batch = _image_spec(run, node_id)
        png = _png(width, height, rgb)
        counter = 1 + max(
            (_file_counter(file, name) for k, sub, file in self.files if (k, sub) == (kind, subfolder)), default=0
        )
        images = []
        for index in range(batch):
            filename = f"{name}_{counter + index:05}_.png"
            self.files[(kind, subfolder, filename)] = png
            images.append({"filename": filename, "subfolder": subfolder, "type": kind})
        return {"images": images}

    def _current_inputs(self, run: _Run) -> Json:
        """``current_inputs`` of an execution_error: each input as a one-element list."""
        graph, node_id = run.prompt.graph, run.node
        current = {
            name: [f"<{value[1]} output of node {value[0]}>" if _is_link(value) else value]
            for name, value in graph[node_id]["inputs"].items()
        }
        hidden = OBJECT_INFO[graph[node_id]["class_type"]]["input"].get("hidden", {})
        if "prompt" in hidden:
            current["prompt"] = [str(graph)]
        if "extra_pnginfo" in hidden:
            current["extra_pnginfo"] = [run.prompt.extra_data.get("extra_pnginfo")]
        return current

    # -- queue, interrupt, history -------------------------------------------------------------

    async def _get_prompt(self, _: web.Request) -> web.Response:
        return web.json_response(self._queue_info())

    async def _get_queue(self, _: web.Request) -> web.Response:
        running = [self._running.queue_item()] if self._running is not None else []
        return web.json_response({"queue_running": running, "queue_pending": [p.queue_item() for p in self._pending]})

    async def _post_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self._pending.clear()
            await self._send_status()
        for prompt_id in body.get("delete", []):
            self.deleted.append(prompt_id)
            match = next((p for p in self._pending if p.prompt_id == prompt_id), None)
            if match is not None:
                self._pending.remove(match)
                await self._send_status()
        return web.Response()

    async def _post_interrupt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        prompt_id = body.get("prompt_id")
        self.interrupts.append(prompt_id)
        if not prompt_id or (self._running is not None and self._running.prompt_id == prompt_id):
            self._interrupt.set()
            self._wake.set()
        return web.Response()

    async def _get_history(self, request: web.Request) -> web.Response:
        max_items = int(request.query["max_items"]) if "max_items" in request.query else None
        offset = int(request.query.get("offset", -1))
        items = list(self._history.items())
        if offset < 0 and max_items is not None:
            offset = len(items) - max_items
        selected = items[max(offset, 0) :][:max_items]
        return web.json_response(dict(selected))

    async def _get_history_item(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self._history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    async def _post_history(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self._history.clear()
        for prompt_id in body.get("delete", []):
            self._history.pop(prompt_id, None)
        return web.Response()

    async def _post_free(self, request: web.Request) -> web.Response:
        await request.json()
        return web.Response()

    # -- files and node metadata ---------------------------------------------------------------

    async def _view(self, request: web.Request) -> web.Response:
        query = request.query
        if self.fail_view or "filename" not in query:
            return web.Response(status=404)
        filename = query["filename"]
        if (
            not filename
            or filename.startswith("/")
            or ".." in filename
            or query.get("type", "output") not in FILE_TYPES
        ):
            return web.Response(status=400)
        if _escapes(query.get("subfolder", "")):
            return web.Response(status=403)
        name = posixpath.basename(filename)
        data = self.files.get((query.get("type", "output"), _normpath(query.get("subfolder", "")), name))
        if data is None:
            return web.Response(status=404)
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return web.Response(body=data, content_type=content_type, headers={"Content-Disposition": f'filename="{name}"'})

    async def _upload_image(self, request: web.Request) -> web.Response:
        """Store an upload; an existing name with other bytes gets `` (1)`` appended unless
        ``overwrite`` is "true"/"1"; identical bytes reuse the existing name."""
        post = await request.post()
        image = post.get("image")
        kind = str(post.get("type") or "input")
        subfolder = str(post.get("subfolder", ""))
        if not isinstance(image, web.FileField) or not image.filename or kind not in FILE_TYPES or _escapes(subfolder):
            return web.Response(status=400)
        data = image.file.read()
        name, (stem, ext) = image.filename, posixpath.splitext(image.filename)
        if post.get("overwrite") not in ("true", "1"):
            suffix = 1
            while self.files.get((kind, _normpath(subfolder), name), data) != data:
                name, suffix = f"{stem} ({suffix}){ext}", suffix + 1
        self.files[(kind, _normpath(subfolder), name)] = data
        return web.json_response({"name": name, "subfolder": subfolder, "type": kind})

    async def _object_info(self, _: web.Request) -> web.Response:
        return web.json_response({name: self._class_info(name) for name in OBJECT_INFO})

    async def _object_info_class(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        return web.json_response({name: self._class_info(name)} if name in OBJECT_INFO else {})

    async def _models_folder(self, request: web.Request) -> web.Response:
        folder = self._models().get(request.match_info["folder"])
        return web.Response(status=404) if folder is None else web.json_response(folder)

    # -- /api/jobs -----------------------------------------------------------------------------

    async def _get_jobs(self, request: web.Request) -> web.Response:
        query = request.query
        statuses = [s.strip().lower() for s in query.get("status", "").split(",") if s.strip()] or list(JOB_STATUSES)
        invalid = [s for s in statuses if s not in JOB_STATUSES]
        if invalid:
            message = f"Invalid status value(s): {', '.join(invalid)}. Valid values: {', '.join(JOB_STATUSES)}"
            return web.json_response({"error": message}, status=400)
        try:
            limit = int(query["limit"]) if "limit" in query else None
            offset = max(int(query.get("offset", "0")), 0)
        except ValueError:
            return web.json_response({"error": "limit and offset must be integers"}, status=400)
        if limit is not None and limit <= 0:
            return web.json_response({"error": "limit must be a positive integer"}, status=400)
        jobs = [job for job in self._jobs() if job["status"] in statuses]
        jobs.sort(key=lambda job: job.get("create_time", 0), reverse=True)
        page = jobs[offset:][:limit]
        pagination = {"offset": offset, "limit": limit, "total": len(jobs), "has_more": offset + len(page) < len(jobs)}
        return web.json_response({"jobs": page, "pagination": pagination})

    async def _get_job(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        if job_id in self._history:
            return web.json_response(_history_job(job_id, self._history[job_id], detail=True))
        job = next((j for j in self._jobs() if j["id"] == job_id), None)
        return web.json_response(job or {"error": "Job not found"}, status=200 if job else 404)

    def _jobs(self) -> list[Json]:
        running = [self._running] if self._running is not None else []
        return [
            *(_queue_job(p, "in_progress") for p in running),
            *(_queue_job(p, "pending") for p in self._pending),
            *(_history_job(prompt_id, entry) for prompt_id, entry in self._history.items()),
        ]


def _constant(data: Any) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response(data)

    return handler


def _output_type(graph: Json, link: list[Any]) -> str:
    return str(OBJECT_INFO[graph[link[0]]["class_type"]]["output"][link[1]])


def _image_spec(run: _Run, node_id: str) -> tuple[int, int, tuple[int, int, int], int]:
    """Size and batch of the image reaching ``node_id``, from the nearest nodes up its IMAGE/LATENT
    chain that set them (EmptyImage, EmptyLatentImage, ImageScale ...). The colour is an EmptyImage's
    when it feeds the node directly, else derived from the producer's cache key: other inputs (a
    seed), other pixels."""
    graph, found = run.prompt.graph, dict[str, int]()
    link = graph[node_id]["inputs"]["images"]
    colour = graph[link[0]]["inputs"].get("color")
    if not isinstance(colour, int):
        colour = int(run.keys[link[0]][:6], 16)
    while link is not None:
        inputs = graph[link[0]]["inputs"]
        for key in ("width", "height", "batch_size"):
            if isinstance(inputs.get(key), int) and inputs[key] > 0:
                found.setdefault(key, inputs[key])
        link = next((v for v in inputs.values() if _is_link(v) and _output_type(graph, v) in ("IMAGE", "LATENT")), None)
    rgb = ((colour >> 16) & 255, (colour >> 8) & 255, colour & 255)
    return found.get("width", 64), found.get("height", 64), rgb, found.get("batch_size", 1)


def _types_match(received: Any, expected: Any) -> bool:
    """ComfyUI's lenient link type check: equal, ``*``, or overlapping ``A,B`` unions."""
    if received == expected or "*" in (received, expected):
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return isinstance(received, list) and expected == "COMBO"
    return bool(set(received.split(",")) & set(expected.split(",")))


def _file_counter(filename: str, name: str) -> int:
    """The counter of ``<name>_<counter>_...`` (ComfyUI scans the folder for the highest)."""
    if filename[: len(name) + 1] != f"{name}_":
        return 0
    try:
        return int(filename[len(name) + 1 :].split("_")[0])
    except ValueError:
        return 0


def _queue_job(prompt: _Prompt, status: str) -> Json:
    return {
        "id": prompt.prompt_id,
        "status": status,
        "priority": prompt.number,
        "create_time": prompt.extra_data["create_time"],
        "outputs_count": 0,
    }


def _history_job(prompt_id: str, entry: Json, detail: bool = False) -> Json:
    """A ``/api/jobs`` entry for a finished prompt; ``detail`` adds outputs, status and workflow."""
    number, _, graph, extra_data, _ = entry["prompt"]
    status = entry["status"]
    times = {event: data.get("timestamp") for event, data in status["messages"]}
    images = [(node_id, item) for node_id, output in entry["outputs"].items() for item in output.get("images", [])]
    shown = next((image for image in images if image[1].get("type") == "output"), images[0] if images else None)
    preview = shown and shown[1] | {"nodeId": shown[0], "mediaType": "images"}
    job = {
        "id": prompt_id,
        "status": "failed" if status["status_str"] == "error" else "completed",
        "priority": number,
        "create_time": extra_data.get("create_time"),
        "execution_start_time": times.get("execution_start"),
        "execution_end_time": next(
            (times[e] for e in ("execution_success", "execution_error", "execution_interrupted") if e in times), None
        ),
        "execution_error": next((data for event, data in status["messages"] if event == "execution_error"), None),
        "outputs_count": len(images),
        "preview_output": preview,
    }
    job = {key: value for key, value in job.items() if value is not None}
    if detail:
        job |= {
            "outputs": entry["outputs"],
            "execution_status": status,
            "workflow": {"prompt": graph, "extra_data": extra_data},
        }
    return job


@contextlib.asynccontextmanager
async def run_fake_comfy(**kwargs: Any) -> AsyncIterator[FakeComfyUI]:
    """``async with run_fake_comfy(checkpoints=...) as fake:`` -- a started FakeComfyUI, stopped after."""
    fake = FakeComfyUI(**kwargs)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
