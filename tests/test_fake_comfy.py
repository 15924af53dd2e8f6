"""The fake ComfyUI against the transcripts recorded from a real ComfyUI 0.8.0, plus its switches.

Messages are compared with the recorded ones after `normalize`, which maps each side's prompt ids
onto the same placeholders and zeroes timestamps; everything else must be equal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fake_comfy import FakeComfyUI, run_fake_comfy

DATA = Path(__file__).parent / "data"
MODELFREE = json.loads((DATA / "transcript-modelfree.json").read_text(encoding="utf-8"))
SD15 = json.loads((DATA / "transcript-sd15.json").read_text(encoding="utf-8"))
SECTIONS = MODELFREE["sections"]
CLIENT = SECTIONS["ws_connect_initial"]["client_id"]
SD15_CHECKPOINTS = ("other-sd15-random.safetensors", "tiny-sd15-random.safetensors")
TIMEOUT = 2.0

Frame = dict[str, Any] | bytes


def image_graph(prefix: str = "gw", color: int = 0x3366AA, width: int = 64, height: int = 64) -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": width, "height": height, "batch_size": 1, "color": color},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def sd15_graph(seed: int, steps: int = 4) -> dict[str, Any]:
    graph: dict[str, Any] = json.loads(json.dumps(SD15["runs"]["run1_cold_tiny"]["graph"]))
    graph["3"]["inputs"] |= {"seed": seed, "steps": steps}
    return graph


def label(frame: Frame) -> str:
    """A frame in the transcripts' ``message_sequence`` notation."""
    if isinstance(frame, bytes):
        return "BINARY:" + {1: "PREVIEW_IMAGE", 4: "PREVIEW_IMAGE_WITH_METADATA"}[struct.unpack(">I", frame[:4])[0]]
    kind, data = frame["type"], frame["data"]
    if kind == "status":
        return f"status(queue_remaining={data['status']['exec_info']['queue_remaining']})"
    if kind in ("executing", "executed"):
        return f"{kind}(node={data['node']})"
    if kind == "progress":
        return f"progress({data['value']}/{data['max']} node={data['node']})"
    return str(kind)


def summarize_binary(frame: bytes) -> dict[str, Any]:
    """A binary frame as the transcripts record it (payload summarised)."""
    event = struct.unpack(">I", frame[:4])[0]
    if event == 1:
        image = frame[8:]
        return {"event": 1, "event_name": "PREVIEW_IMAGE", "image_type": "JPEG", "image_magic": image[:4].hex()}
    size = struct.unpack(">I", frame[4:8])[0]
    metadata, image = json.loads(frame[8 : 8 + size]), frame[8 + size :]
    return {
        "event": 4,
        "event_name": "PREVIEW_IMAGE_WITH_METADATA",
        "metadata": metadata,
        "image_magic": image[:4].hex(),
    }


def normalize(value: Any, ids: list[str], masked: frozenset[str] = frozenset()) -> Any:
    """Prompt ids -> ``<p0>``, ``<p1>`` ...; timestamps -> 0; keys in ``masked`` -> ``<masked>``."""
    if isinstance(value, dict):
        return {
            normalize(key, ids): "<masked>"
            if key in masked
            else 0
            if key in ("timestamp", "create_time")
            else normalize(v, ids, masked)
            for key, v in value.items()
        }
    if isinstance(value, list):
        return [normalize(v, ids, masked) for v in value]
    if isinstance(value, str) and value in ids:
        return f"<p{ids.index(value)}>"
    return value


def recorded(messages: list[dict[str, Any]]) -> list[Any]:
    """Transcript messages in the form `observed` gives ours."""
    return [
        {"type": m["type"], "data": m["data"]}
        if m["frame"] == "text"
        else {k: v for k, v in m["data"].items() if k not in ("total_len", "image_len")}
        for m in messages
    ]


def observed(frames: list[Frame]) -> list[Any]:
    return [summarize_binary(f) if isinstance(f, bytes) else f for f in frames]


def png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def png_pixel(png: bytes) -> tuple[int, ...]:
    """The first pixel of an 8-bit RGB PNG with one IDAT chunk."""
    start = png.index(b"IDAT") + 4
    (length,) = struct.unpack(">I", png[start - 8 : start - 4])
    return tuple(zlib.decompress(png[start : start + length])[1:4])


@dataclass
class Socket:
    ws: aiohttp.ClientWebSocketResponse
    frames: list[Frame] = field(default_factory=list)

    async def frame(self) -> Frame:
        msg = await asyncio.wait_for(self.ws.receive(), TIMEOUT)
        if msg.type == aiohttp.WSMsgType.TEXT:
            frame: Frame = json.loads(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            frame = msg.data
        else:
            raise ConnectionError(f"socket ended: {msg.type.name}")
        self.frames.append(frame)
        return frame

    async def until(self, done: Callable[[Frame], bool]) -> list[Frame]:
        """Frames up to and including the first one ``done`` accepts."""
        start = len(self.frames)
        while not done(await self.frame()):
            pass
        return self.frames[start:]

    async def run(self, prompt_id: str) -> list[Frame]:
        """Frames up to this prompt's ``executing {node: null}``."""
        return await self.until(
            lambda f: (
                isinstance(f, dict) and f["type"] == "executing" and f["data"] == {"node": None, "prompt_id": prompt_id}
            )
        )

    async def assert_quiet(self) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.ws.receive(), 0.05)


class Client:
    """An HTTP session to the fake and the websockets opened through it."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.sockets: list[Socket] = []

    async def connect(self, client_id: str = CLIENT, preview_metadata: bool = False) -> Socket:
        ws = await self.session.ws_connect(f"/ws?clientId={client_id}")
        socket = Socket(ws)
        self.sockets.append(socket)
        if preview_metadata:
            await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        return socket

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, path, json=body) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if resp.content_type == "application/json" else text

    async def submit(self, graph: dict[str, Any], client_id: str | None = CLIENT, **body: Any) -> str:
        if client_id is not None:
            body["client_id"] = client_id
        status, answer = await self.request("POST", "/prompt", {"prompt": graph, **body})
        assert status == 200, answer
        return str(answer["prompt_id"])

    async def history(self, prompt_id: str) -> dict[str, Any]:
        status, answer = await self.request("GET", f"/history/{prompt_id}")
        assert status == 200
        return dict(answer.get(prompt_id, {}))

    async def finished(self, prompt_id: str) -> dict[str, Any]:
        """Poll /history until the prompt is there (for runs whose ws messages are lost)."""
        for _ in range(400):
            if entry := await self.history(prompt_id):
                return entry
            await asyncio.sleep(0.005)
        raise AssertionError(f"{prompt_id} did not finish")

    async def close(self) -> None:
        for socket in self.sockets:
            await socket.ws.close()
        await self.session.close()


@pytest.fixture
async def server() -> AsyncIterator[FakeComfyUI]:
    async with run_fake_comfy(checkpoints=SD15_CHECKPOINTS) as fake:
        yield fake


@contextlib.asynccontextmanager
async def client_for(fake: FakeComfyUI) -> AsyncIterator[Client]:
    client = Client(aiohttp.ClientSession(base_url=fake.url))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def client(server: FakeComfyUI) -> AsyncIterator[Client]:
    async with client_for(server) as client:
        yield client


# -- the recorded protocol -------------------------------------------------------------------------


async def test_model_free_runs_match_transcript() -> None:
    """First run, identical rerun (all cached, same file) and a client-chosen prompt_id."""
    async with run_fake_comfy(checkpoints=()) as fake, client_for(fake) as client:
        socket = await client.connect()
        first = await socket.frame()
        assert first == {"type": "status", "data": SECTIONS["ws_connect_initial"]["messages"][0]["data"]}
        ours: list[str] = []
        theirs: list[str] = []
        for name in ("basic_run", "identical_rerun_cached", "client_supplied_prompt_id"):
            section = SECTIONS[name]
            status, answer = await client.request("POST", "/prompt", section["post_prompt"]["request_json"])
            ours.append(answer["prompt_id"])
            theirs.append(section["post_prompt"]["json"]["prompt_id"])
            assert status == 200
            assert normalize(answer, ours) == normalize(section["post_prompt"]["json"], theirs), name
            frames = await socket.run(answer["prompt_id"])
            assert [label(f) for f in frames] == section["message_sequence"], name
            if "messages" in section:
                assert normalize(observed(frames), ours) == normalize(recorded(section["messages"]), theirs), name
            history = {answer["prompt_id"]: await client.history(answer["prompt_id"])}
            assert normalize(history, ours) == normalize(section["history"]["json"], theirs), name
        assert list(fake.files) == [
            ("output", "", "gw_modelfree_00001_.png"),
            ("output", "", "gw_custom_id_00001_.png"),
        ]
        assert ours[2] == theirs[2]
        assert fake.prompt_counts[ours[2]] == 1
        assert fake.executed_ids == ours

        async with client.session.get("/view", params={"filename": "gw_modelfree_00001_.png", "type": "output"}) as r:
            assert (r.status, r.content_type) == (200, "image/png")
            png = await r.read()
        assert png_size(png) == (64, 64)
        assert png_pixel(png) == (0xFF, 0x88, 0x00)  # EmptyImage color 16746496
        async with client.session.get("/view", params={"filename": "nope.png", "type": "output"}) as r:
            assert (r.status, await r.read()) == (404, b"")


@pytest.mark.parametrize("case", [name for name, case in SECTIONS["validation_errors"].items() if "response" in case])
async def test_validation_error_matches_transcript(case: str) -> None:
    recorded_response = SECTIONS["validation_errors"][case]["response"]
    async with run_fake_comfy(checkpoints=()) as fake, client_for(fake) as client:
        socket = await client.connect()
        await socket.frame()
        if "request_data" in recorded_response:
            async with client.session.post("/prompt", data=recorded_response["request_data"]) as resp:
                status, content_type, answer = resp.status, resp.headers["Content-Type"], await resp.text()
            assert answer == recorded_response["text"]
        else:
            async with client.session.post("/prompt", json=recorded_response["request_json"]) as resp:
                status, content_type, answer = resp.status, resp.headers["Content-Type"], await resp.json()
            masked = frozenset({"traceback"})
            assert normalize(answer, [], masked) == normalize(recorded_response["json"], [], masked)
        assert (status, content_type) == (recorded_response["status"], recorded_response["content_type"])
        # Nothing reached the websocket: the next frame belongs to the next prompt.
        await client.submit(image_graph())
        assert label(await socket.frame()) == "status(queue_remaining=1)"
        assert len(fake.submissions) == 1


async def test_validation_beyond_transcript(client: Client) -> None:
    status, answer = await client.request("POST", "/prompt", {"prompt": image_graph(width=20000)})
    assert status == 400
    assert answer["node_errors"]["1"]["errors"][0] == {
        "type": "value_bigger_than_max",
        "message": "Value 20000 bigger than max of 16384",
        "details": "width",
        "extra_info": {
            "input_name": "width",
            "input_config": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
            "received_value": 20000,
        },
    }
    # One good and one bad output: accepted, the bad one reported and left out.
    graph = image_graph() | {"3": {"class_type": "PreviewImage", "inputs": {"images": ["9", 0]}}}
    status, answer = await client.request("POST", "/prompt", {"prompt": graph})
    assert status == 200
    assert answer["number"] == 1
    assert answer["node_errors"]["3"]["errors"][0]["type"] == "exception_during_validation"
    # The configured checkpoints are the combo's options.
    graph = sd15_graph(1)
    graph["4"]["inputs"]["ckpt_name"] = "nope.safetensors"
    _, answer = await client.request("POST", "/prompt", {"prompt": graph})
    details = answer["node_errors"]["4"]["errors"][0]["details"]
    assert details == f"ckpt_name: 'nope.safetensors' not in {list(SD15_CHECKPOINTS)}"


async def test_execution_error_matches_transcript() -> None:
    section = SECTIONS["execution_error"]
    masked = frozenset({"exception_message", "traceback", "current_inputs"})
    async with run_fake_comfy(checkpoints=()) as fake, client_for(fake) as client:
        socket = await client.connect()
        await socket.frame()
        prompt_id = await client.submit(section["graph"])
        frames = await socket.run(prompt_id)
        ours, theirs = [prompt_id], [section["post_prompt"]["json"]["prompt_id"]]
        assert [label(f) for f in frames] == section["message_sequence"]
        assert normalize(observed(frames), ours, masked) == normalize(recorded(section["messages"]), theirs, masked)
        error = next(f["data"] for f in frames if isinstance(f, dict) and f["type"] == "execution_error")
        assert error["exception_message"].startswith(
            "**** ERROR: Saving image outside the output folder is not allowed."
        )
        recorded_error = section["history"]["json"][theirs[0]]["status"]["messages"][2][1]
        assert list(error["current_inputs"]) == list(recorded_error["current_inputs"])
        assert error["current_inputs"]["prompt"] == [str(section["graph"])]
        history = normalize(await client.history(prompt_id), ours, masked)
        expected = normalize(section["history"]["json"][theirs[0]], theirs, masked)
        history["prompt"][0] = expected["prompt"][0]  # number: the recording had earlier prompts
        assert history == expected
        assert fake.files == {}


async def test_sd15_runs_match_transcript() -> None:
    """Runs 1-12 in order: node order, per-node cache hits, progress, both preview kinds, interrupt."""
    async with run_fake_comfy(checkpoints=SD15_CHECKPOINTS, preview_method="auto") as fake, client_for(fake) as client:
        sockets: dict[str, Socket] = {}
        ours: list[str] = []
        theirs: list[str] = []
        for name, run in SD15["runs"].items():
            request = run["post_prompt"]["request_json"]
            if request["client_id"] not in sockets:
                negotiates = name.startswith("run12")
                sockets[request["client_id"]] = await client.connect(request["client_id"], negotiates)
                await sockets[request["client_id"]].frame()
                if negotiates:
                    await sockets[request["client_id"]].frame()
            socket = sockets[request["client_id"]]
            fake.step_delay = 0.1 if "interrupt" in run else 0.0  # time to interrupt after step 3
            start = len(socket.frames)
            status, answer = await client.request("POST", "/prompt", request)
            assert status == 200
            ours.append(answer["prompt_id"])
            theirs.append(run["post_prompt"]["json"]["prompt_id"])
            assert answer["number"] == run["post_prompt"]["json"]["number"]
            if "interrupt" in run:
                await socket.until(
                    lambda f: isinstance(f, dict) and f["type"] == "progress" and f["data"]["value"] == 3
                )
                await client.request("POST", "/interrupt", {"prompt_id": answer["prompt_id"]})
            await socket.run(answer["prompt_id"])
            frames = socket.frames[start:]
            assert [label(f) for f in frames] == run["message_sequence"], name
            assert normalize(observed(frames), ours) == normalize(recorded(run["messages"]), theirs), name
            history = await client.history(answer["prompt_id"])
            assert history["outputs"] == run["history_outputs"], name
            assert normalize(history["status"], ours) == normalize(run["history_status"], theirs), name
        assert png_size(fake.files[("output", "", "gw_sd15_00007_.png")]) == (256, 256)
        assert fake.interrupts == [ours[10]]


async def test_prompt_without_client_id_only_broadcasts_progress() -> None:
    extra = SD15["extra"]["prompt_without_client_id_seen_by_other_ws"]
    async with run_fake_comfy(checkpoints=SD15_CHECKPOINTS, preview_method="auto") as fake, client_for(fake) as client:
        submitter = await client.connect()
        await client.submit(sd15_graph(1))
        await submitter.until(lambda f: isinstance(f, dict) and f["type"] == "executing" and f["data"]["node"] is None)
        watcher = await client.connect("watcher")
        await watcher.frame()
        prompt_id = await client.submit(sd15_graph(2), client_id=None)
        frames = await watcher.until(lambda f: label(f) == "status(queue_remaining=0)")
        assert [label(f) for f in frames] == extra["sequence"]
        assert (await client.history(prompt_id))["status"]["status_str"] == extra["history_status"]


async def test_reconnect_mid_run_replays_current_node(server: FakeComfyUI, client: Client) -> None:
    recorded_head = SD15["extra"]["reconnect_same_clientId_mid_run"]["after_reconnect_first_messages"][:2]
    socket = await client.connect()
    await socket.run(await client.submit(sd15_graph(1)))
    server.stall = True
    prompt_id = await client.submit(sd15_graph(2))
    await socket.until(lambda f: label(f) == "executing(node=3)")
    server.drop_sockets()
    with pytest.raises(ConnectionError):
        await socket.frame()
    again = await client.connect()
    assert [await again.frame(), await again.frame()] == [
        {"type": m["type"], "data": m["data"] | ({"sid": CLIENT} if "sid" in m["data"] else {})} for m in recorded_head
    ]
    server.release()
    frames = await again.run(prompt_id)
    assert [label(f) for f in frames][-4:] == [
        "progress_state",
        "execution_success",
        "status(queue_remaining=0)",
        "executing(node=None)",
    ]


async def test_reconnect_with_same_client_id_replaces_the_socket(client: Client) -> None:
    old = await client.connect()
    new = await client.connect()
    await old.frame()
    await new.frame()
    await new.run(await client.submit(image_graph()))
    await old.assert_quiet()


async def test_queue_delete_interrupt_and_history(server: FakeComfyUI, client: Client) -> None:
    socket = await client.connect()
    await socket.frame()
    server.stall = True
    first = await client.submit(image_graph("slow_0"))
    await socket.until(lambda f: label(f) == "executing(node=1)")
    second = await client.submit(image_graph("slow_1"))
    third = await client.submit(image_graph("slow_2"))

    _, queue = await client.request("GET", "/queue")
    recorded_queue = SECTIONS["queue_interrupt_history"]["GET /queue busy"]["json"]
    assert [len(queue["queue_running"]), len(queue["queue_pending"])] == [1, 2]
    assert [len(item) for item in queue["queue_running"] + queue["queue_pending"]] == [5, 5, 5]
    assert list(queue["queue_running"][0][3]) == list(recorded_queue["queue_running"][0][3])
    assert [item[1] for item in queue["queue_pending"]] == [second, third]
    assert await client.request("GET", "/prompt") == (200, {"exec_info": {"queue_remaining": 3}})

    assert await client.request("POST", "/queue", {"delete": [third]}) == (200, "")
    assert await client.request("POST", "/queue", {"delete": [first]}) == (200, "")  # running: unaffected
    assert await client.request("POST", "/interrupt", {"prompt_id": second}) == (200, "")  # not running: no-op
    assert await client.request("POST", "/interrupt", {"prompt_id": first}) == (200, "")
    frames = await socket.run(first)
    assert [label(f) for f in frames] == [
        "status(queue_remaining=2)",
        "status(queue_remaining=3)",
        "status(queue_remaining=2)",
        "execution_interrupted",
        "status(queue_remaining=1)",
        "executing(node=None)",
    ]
    interrupted = frames[3]
    assert isinstance(interrupted, dict)
    assert list(interrupted["data"]) == list(SD15["message_shapes"]["text:execution_interrupted"])
    assert interrupted["data"] | {"timestamp": 0} == {
        "prompt_id": first,
        "node_id": "1",
        "node_type": "EmptyImage",
        "executed": [],
        "timestamp": 0,
    }
    server.release()
    await socket.run(second)
    assert (server.interrupts, server.deleted) == ([second, first], [third, first])

    assert await client.history(third) == {}
    entry = await client.history(first)
    assert (entry["outputs"], entry["meta"], entry["status"]["status_str"], entry["status"]["completed"]) == (
        {},
        {},
        "error",
        False,
    )
    assert [event for event, _ in entry["status"]["messages"]] == [
        "execution_start",
        "execution_cached",
        "execution_interrupted",
    ]
    _, latest = await client.request("GET", "/history?max_items=1")
    assert list(latest) == [second]
    _, oldest = await client.request("GET", "/history?max_items=1&offset=0")
    assert list(oldest) == [first]

    _, jobs = await client.request("GET", "/api/jobs?limit=1")
    assert jobs["pagination"] == {"offset": 0, "limit": 1, "total": 2, "has_more": True}
    _, jobs = await client.request("GET", "/api/jobs?status=completed")
    recorded_jobs = SECTIONS["queue_interrupt_history"]["GET /api/jobs?limit=2"]["json"]
    assert [list(job) for job in jobs["jobs"]] == [list(recorded_jobs["jobs"][0])]
    _, job = await client.request("GET", f"/api/jobs/{second}")
    assert list(job) == list(SECTIONS["queue_interrupt_history"]["GET /api/jobs/<id>"]["json"])
    assert job["preview_output"] == {
        "filename": "slow_1_00001_.png",
        "subfolder": "",
        "type": "output",
        "nodeId": "2",
        "mediaType": "images",
    }
    _, job = await client.request("GET", f"/api/jobs/{first}")
    assert job["status"] == "failed"
    assert await client.request("GET", "/api/jobs/nope") == (404, {"error": "Job not found"})

    assert await client.request("POST", "/history", {"delete": [first]}) == (200, "")
    assert await client.history(first) == {}
    await client.request("POST", "/history", {"clear": True})
    assert await client.request("GET", "/history") == (200, {})


async def test_preview_image_and_file_naming(server: FakeComfyUI, client: Client) -> None:
    socket = await client.connect()
    server.files[("output", "sub", "x_00041_.png")] = b"existing"
    graph = image_graph("sub/x", width=32, height=16) | {
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    graph["1"]["inputs"]["batch_size"] = 2
    frames = await socket.run(await client.submit(graph))
    executed = {
        f["data"]["node"]: f["data"]["output"]["images"]
        for f in frames
        if isinstance(f, dict) and f["type"] == "executed"
    }
    assert [i["filename"] for i in executed["2"]] == ["x_00042_.png", "x_00043_.png"]
    assert {i["subfolder"] for i in executed["2"]} == {"sub"}
    assert [i["type"] for i in executed["3"]] == ["temp", "temp"]
    assert executed["3"][0]["filename"].startswith("ComfyUI_temp_")
    assert png_size(server.files[("output", "sub", "x_00042_.png")]) == (32, 16)
    # The size comes down the IMAGE/LATENT chain: EmptyLatentImage -> KSampler -> VAEDecode.
    await socket.run(
        await client.submit(
            sd15_graph(1)
            | {"5": {"class_type": "EmptyLatentImage", "inputs": {"width": 96, "height": 48, "batch_size": 1}}}
        )
    )
    assert png_size(server.files[("output", "", "gw_sd15_00001_.png")]) == (96, 48)


async def test_upload_and_load_image(server: FakeComfyUI, client: Client) -> None:
    async def upload(data: bytes, **fields: str) -> dict[str, Any]:
        form = aiohttp.FormData(fields)
        form.add_field("image", data, filename="in.png", content_type="image/png")
        async with client.session.post("/upload/image", data=form) as resp:
            assert resp.status == 200
            return dict(await resp.json())

    assert await upload(b"one") == {"name": "in.png", "subfolder": "", "type": "input"}
    assert await upload(b"one") == {"name": "in.png", "subfolder": "", "type": "input"}
    assert await upload(b"two") == {"name": "in (1).png", "subfolder": "", "type": "input"}
    assert await upload(b"three", overwrite="true") == {"name": "in.png", "subfolder": "", "type": "input"}
    _, info = await client.request("GET", "/object_info/LoadImage")
    assert info["LoadImage"]["input"]["required"]["image"][0] == ["in (1).png", "in.png"]
    graph: dict[str, Any] = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "loaded"}},
    }
    socket = await client.connect()
    await socket.run(await client.submit(graph))
    graph["1"]["inputs"]["image"] = "missing.png"
    status, answer = await client.request("POST", "/prompt", {"prompt": graph})
    assert status == 400
    assert answer["node_errors"]["1"]["errors"][0]["details"] == "image - Invalid image file: missing.png"


async def test_other_routes(server: FakeComfyUI, client: Client) -> None:
    _, info = await client.request("GET", "/object_info")
    assert len(info) >= 20
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == list(SD15_CHECKPOINTS)
    assert await client.request("GET", "/object_info/Nope") == (200, {})
    assert await client.request("GET", "/api/object_info/Nope") == (200, {})
    assert await client.request("GET", "/features") == (
        200,
        SECTIONS["feature_flags_negotiation"]["messages"][1]["data"],
    )
    _, stats = await client.request("GET", "/system_stats")
    assert set(stats) == {"system", "devices"}
    assert await client.request("GET", "/models/checkpoints") == (200, list(SD15_CHECKPOINTS))
    assert await client.request("GET", "/models/loras") == (200, [])
    assert (await client.request("GET", "/models/nope"))[0] == 404
    assert await client.request("POST", "/free", {"unload_models": True}) == (200, "")
    assert await client.request("GET", "/api/prompt") == (200, {"exec_info": {"queue_remaining": 0}})


async def test_feature_flags_negotiation(client: Client) -> None:
    recorded_messages = SECTIONS["feature_flags_negotiation"]["messages"]
    socket = await client.connect("ff", preview_metadata=True)
    assert [await socket.frame(), await socket.frame()] == [
        {"type": m["type"], "data": m["data"] | ({"sid": "ff"} if "sid" in m["data"] else {})}
        for m in recorded_messages
    ]


async def test_other_client_only_sees_status(client: Client) -> None:
    recorded_seq = SECTIONS["messages_seen_by_other_client"]
    watcher = await client.connect("s2")
    runner = await client.connect("s3")
    await watcher.frame()
    await runner.frame()
    frames = await runner.run(await client.submit(image_graph(), client_id="s3"))
    assert [label(f) for f in frames] == recorded_seq["s3_sequence"]
    assert [label(await watcher.frame()) for _ in recorded_seq["s2_sequence"]] == recorded_seq["s2_sequence"]


# -- switches --------------------------------------------------------------------------------------


async def test_reject_next(server: FakeComfyUI, client: Client) -> None:
    socket = await client.connect()
    await socket.frame()
    server.reject_next(2)
    for _ in range(2):
        status, answer = await client.request("POST", "/prompt", {"prompt": sd15_graph(1), "client_id": CLIENT})
        assert status == 400
        assert answer["error"]["type"] == "prompt_outputs_failed_validation"
        assert answer["node_errors"]["4"]["errors"][0]["type"] == "value_not_in_list"
        assert answer["node_errors"]["4"]["dependent_outputs"] == ["9"]
    prompt_id = await client.submit(image_graph())
    assert label(await socket.frame()) == "status(queue_remaining=1)"
    await socket.run(prompt_id)
    assert [s["prompt"] for s in server.submissions] == [image_graph()]


async def test_fail_next(server: FakeComfyUI, client: Client) -> None:
    socket = await client.connect()
    await socket.run(await client.submit(image_graph()))
    server.fail_next(message="boom")
    failing = await client.submit(image_graph())  # would be a full cache hit
    frames = await socket.run(failing)
    assert [label(f) for f in frames] == SECTIONS["execution_error"]["message_sequence"]
    error = frames[-3]
    assert isinstance(error, dict)
    assert (error["data"]["node_id"], error["data"]["exception_message"], error["data"]["exception_type"]) == (
        "2",
        "boom\n",
        "Exception",
    )
    await socket.run(await client.submit(image_graph("next")))
    assert (await client.history(failing))["status"]["status_str"] == "error"


async def test_job_delay_and_step_delay(server: FakeComfyUI, client: Client) -> None:
    socket = await client.connect()
    server.job_delay, server.step_delay = 0.1, 0.02
    started = asyncio.get_running_loop().time()
    prompt_id = await client.submit(sd15_graph(1, steps=5))
    frames = await socket.run(prompt_id)
    assert asyncio.get_running_loop().time() - started >= 0.19
    assert [label(f) for f in frames].count("progress_state") >= 5
    assert prompt_id in server.execution_starts


async def test_swap_delay_costs_a_checkpoint_change_only(server: FakeComfyUI, client: Client) -> None:
    socket = await client.connect()
    server.swap_delay = 0.1
    first, second = SD15_CHECKPOINTS
    loads = []
    for seed, checkpoint in enumerate([first, first, second, second, first]):
        graph = sd15_graph(seed, steps=1)
        graph["4"]["inputs"]["ckpt_name"] = checkpoint
        started = asyncio.get_running_loop().time()
        await socket.run(await client.submit(graph))
        took = asyncio.get_running_loop().time() - started
        loads.append(server.model_loads)
        assert server.loaded_checkpoint == checkpoint
        if loads[-1] > (loads[-2] if len(loads) > 1 else 0):
            assert took >= 0.1
    assert loads == [1, 1, 2, 2, 3]


async def test_stall_holds_the_first_node_until_release(server: FakeComfyUI, client: Client) -> None:
    socket = await client.connect()
    server.stall = True
    prompt_id = await client.submit(image_graph())
    await socket.until(lambda f: label(f) == "executing(node=1)")
    await socket.assert_quiet()
    assert (await client.request("GET", "/prompt"))[1] == {"exec_info": {"queue_remaining": 1}}
    server.release()
    await socket.run(prompt_id)
    assert not server.stall


async def test_drop_sockets_loses_messages(server: FakeComfyUI, client: Client) -> None:
    socket = await client.connect()
    await socket.frame()
    server.drop_sockets()
    with pytest.raises(ConnectionError):
        await socket.frame()
    prompt_id = await client.submit(image_graph())
    await client.finished(prompt_id)
    again = await client.connect()
    assert label(await again.frame()) == "status(queue_remaining=0)"
    await again.assert_quiet()


async def test_silent_sockets_receive_nothing(server: FakeComfyUI, client: Client) -> None:
    socket = await client.connect()
    await socket.frame()
    server.silent = True
    prompt_id = await client.submit(image_graph())
    await client.finished(prompt_id)
    server.silent = False
    second = await client.submit(image_graph("second"))
    frames = await socket.run(second)
    assert label(frames[0]) == "status(queue_remaining=1)"
    assert prompt_id not in json.dumps([f for f in frames if isinstance(f, dict)])


async def test_fail_view(server: FakeComfyUI, client: Client) -> None:
    socket = await client.connect()
    await socket.run(await client.submit(image_graph()))
    server.fail_view = True
    async with client.session.get("/view", params={"filename": "gw_00001_.png"}) as resp:
        assert resp.status == 404
    server.fail_view = False
    async with client.session.get("/view", params={"filename": "gw_00001_.png"}) as resp:
        assert resp.status == 200


async def test_restart_forgets_queue_and_history_but_keeps_outputs() -> None:
    async with run_fake_comfy() as fake:
        async with client_for(fake) as client:
            socket = await client.connect()
            first = await client.submit(image_graph())
            await socket.run(first)
        url = fake.url
        await fake.stop()
        await fake.start()
        assert fake.url == url
        async with client_for(fake) as client:
            assert await client.history(first) == {}
            socket = await client.connect()
            _, answer = await client.request("POST", "/prompt", {"prompt": image_graph(), "client_id": CLIENT})
            assert answer["number"] == 0
            frames = await socket.run(answer["prompt_id"])
        executed = next(f for f in frames if isinstance(f, dict) and f["type"] == "executed")
        assert executed["data"]["output"]["images"][0]["filename"] == "gw_00002_.png"  # not cached; next counter
        assert list(fake.prompt_counts.values()) == [1, 1]
