#!/usr/bin/env python3
"""Fault scenarios against a real ComfyUI, printing what happened to every job.

The gateway runs as a separate process (`python -m gateway`) and reaches ComfyUI through a small
recording proxy started here, which counts every `POST /prompt` per prompt id (so a job sent
twice shows up) and can cut or silence the websocket or fail `/view`.

    .venv/bin/python scripts/faults.py --comfyui-url http://127.0.0.1:8188 --checkpoint tiny.safetensors \\
        [--comfyui-stop CMD --comfyui-start CMD] [SCENARIO ...]

Scenarios: sigkill-gateway, restart-comfyui (needs the two commands), drop-websocket,
silent-websocket, deadline, view-fails, unwritable-uploads. Default: all that can run.
Each prints `done / failed / sent twice` counts and exits non-zero if a promise was broken.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import shlex
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
KEY = "faults-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Proxy:
    """HTTP + websocket reverse proxy in front of ComfyUI that records and misbehaves on demand."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.posts: collections.Counter[str] = collections.Counter()
        self.silent = False
        self.fail_view = False
        self._sockets: set[web.WebSocketResponse] = set()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self.drop_sockets()
        if self._runner:
            await self._runner.cleanup()
        if self._session:
            await self._session.close()

    async def drop_sockets(self) -> None:
        for ws in list(self._sockets):
            await ws.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        if request.path == "/ws":
            return await self._websocket(request)
        body = await request.read()
        if request.method == "POST" and request.path == "/prompt":
            with contextlib.suppress(ValueError):
                self.posts[json.loads(body).get("prompt_id", "?")] += 1
        if self.fail_view and request.path == "/view":
            return web.Response(status=404)
        async with self._session.request(request.method, self.upstream + request.path_qs, data=body,
                                         headers={"Content-Type": request.content_type}) as resp:
            data = await resp.read()
            return web.Response(body=data, status=resp.status, content_type=resp.content_type)

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        assert self._session is not None
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        upstream_url = self.upstream.replace("http", "ws", 1) + request.path_qs
        try:
            async with self._session.ws_connect(upstream_url, max_msg_size=0) as upstream:
                async def down() -> None:
                    async for msg in upstream:
                        if self.silent or ws.closed:
                            continue
                        if msg.type is aiohttp.WSMsgType.TEXT:
                            await ws.send_str(msg.data)
                        elif msg.type is aiohttp.WSMsgType.BINARY:
                            await ws.send_bytes(msg.data)
                relay = asyncio.create_task(down())
                async for msg in ws:
                    if msg.type is aiohttp.WSMsgType.TEXT:
                        await upstream.send_str(msg.data)
                relay.cancel()
        except aiohttp.ClientError:
            pass
        finally:
            self._sockets.discard(ws)
        return ws


class Run:
    """One gateway process behind the proxy, with its own data folder and presets."""

    def __init__(self, args: argparse.Namespace, proxy: Proxy, folder: Path, **env: str) -> None:
        self.args = args
        self.proxy = proxy
        self.folder = folder
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        presets = folder / "presets.yaml"
        presets.write_text(
            f"fault_sd15:\n  name: Fault test\n  workflow: {ROOT}/workflows/sd15_text_to_image.json\n"
            f"  timeout: {env.pop('PRESET_TIMEOUT', '120')}\n"
            f"  defaults:\n    checkpoint: {args.checkpoint}\n    steps: 4\n    width: 64\n    height: 64\n"
        )
        self.env = {**os.environ, "GATEWAY_COMFYUI_URL": proxy.url, "GATEWAY_DATA_DIR": str(folder / "data"),
                    "GATEWAY_PORT": str(self.port), "GATEWAY_HOST": "127.0.0.1", "GATEWAY_API_KEY": KEY,
                    "GATEWAY_PRESETS": str(presets), "GATEWAY_LOG_LEVEL": "WARNING", **env}
        self.proc: asyncio.subprocess.Process | None = None
        self.session = aiohttp.ClientSession(headers={"X-API-Key": KEY})

    async def start(self) -> None:
        with (self.folder / "gateway.log").open("ab") as log:  # the child keeps its own copy
            self.proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", env=self.env,
                                                             cwd=ROOT, stdout=log, stderr=log)
        for _ in range(600):
            try:
                async with self.session.get(f"{self.base}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError(f"gateway did not become ready; see {self.folder / 'gateway.log'}")

    async def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(sig)
            await self.proc.wait()

    async def close(self) -> None:
        await self.kill(signal.SIGTERM)
        await self.session.close()

    async def generate(self, count: int) -> list[str]:
        async with self.session.post(f"{self.base}/api/v1/generate/fault_sd15", json={"count": count}) as resp:
            assert resp.status == 202, await resp.text()
            return [j["job_id"] for j in (await resp.json())["jobs"]]

    async def records(self, ids: list[str]) -> list[dict[str, Any]]:
        found = []
        for job_id in ids:
            async with self.session.get(f"{self.base}/api/v1/job/{job_id}") as resp:
                found.append(await resp.json())
        return found

    async def wait(self, ids: list[str], timeout: float = 300) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            records = await self.records(ids)
            if all(r["status"] in ("done", "failed") for r in records) or time.monotonic() > deadline:
                return records
            await asyncio.sleep(0.2)

    async def wait_count(self, ids: list[str], status: str, n: int) -> None:
        while [r["status"] for r in await self.records(ids)].count(status) < n:
            await asyncio.sleep(0.05)


def report(name: str, records: list[dict[str, Any]], proxy: Proxy, *, expect_failed: int = 0,
           expect_error: str = "") -> bool:
    statuses = collections.Counter(r["status"] for r in records)
    twice = sum(1 for r in records if proxy.posts[r["id"]] > 1)
    errors = collections.Counter(r["error"] for r in records if r["error"])
    done_files = all(r["result"] and r["result"]["image_url"] for r in records if r["status"] == "done")
    ok = (statuses["failed"] == expect_failed and statuses["done"] == len(records) - expect_failed
          and done_files and all(expect_error in e for e in errors))
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {len(records)} jobs, done {statuses['done']}, "
          f"failed {statuses['failed']}, other {len(records) - statuses['done'] - statuses['failed']}, "
          f"posted to ComfyUI more than once {twice}"
          + "".join(f"\n       error x{n}: {e}" for e, n in errors.items()))
    return ok


@asynccontextmanager
async def scenario(args: argparse.Namespace, **env: str) -> AsyncIterator[tuple[Run, Proxy]]:
    proxy = Proxy(args.comfyui_url)
    await proxy.start()
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        run = Run(args, proxy, Path(tmp), **env)
        try:
            yield run, proxy
        finally:
            await run.close()
            await proxy.stop()


async def sigkill_gateway(args: argparse.Namespace) -> bool:
    async with scenario(args) as (run, proxy):
        await run.start()
        ids = await run.generate(20)
        await run.wait_count(ids, "done", 4)
        await run.kill()
        print(f"     killed the gateway with SIGKILL after {sum(proxy.posts.values())} posts")
        await run.start()
        return report("sigkill-gateway", await run.wait(ids), proxy)


async def restart_comfyui(args: argparse.Namespace) -> bool:
    if not (args.comfyui_stop and args.comfyui_start):
        print("skip restart-comfyui: give --comfyui-stop and --comfyui-start")
        return True
    async with scenario(args) as (run, proxy):
        await run.start()
        ids = await run.generate(10)
        await run.wait_count(ids, "done", 3)
        await (await asyncio.create_subprocess_exec(*shlex.split(args.comfyui_stop))).wait()
        async with run.session.get(f"{run.base}/api/v1/job/{ids[-1]}") as resp:
            print(f"     ComfyUI stopped; GET /api/v1/job answers {resp.status} ({(await resp.json())['status']})")
        more = await run.generate(3)
        await (await asyncio.create_subprocess_exec(*shlex.split(args.comfyui_start))).wait()
        records = await run.wait(ids + more)
        lost = sum(1 for job_id in ids if proxy.posts[job_id] > 1)
        print(f"     jobs resubmitted after the restart (lost by ComfyUI): {lost}")
        statuses = collections.Counter(r["status"] for r in records)
        ok = statuses["done"] == len(records)
        print(f"{'ok  ' if ok else 'FAIL'} restart-comfyui: {len(records)} jobs, done {statuses['done']}, "
              f"failed {statuses['failed']} (a resubmission of a lost job is expected, not a duplicate)")
        return ok


async def websocket(args: argparse.Namespace, *, silent: bool) -> bool:
    async with scenario(args) as (run, proxy):
        await run.start()
        ids = await run.generate(10)
        await run.wait_count(ids, "done", 2)
        if silent:
            proxy.silent = True
            print("     the websocket is silent from now on (open, nothing arrives)")
        else:
            for _ in range(3):
                await proxy.drop_sockets()
                await asyncio.sleep(0.5)
            print("     dropped the websocket three times")
        return report("silent-websocket" if silent else "drop-websocket", await run.wait(ids), proxy)


async def deadline(args: argparse.Namespace) -> bool:
    async with scenario(args, PRESET_TIMEOUT="0.3") as (run, proxy):
        await run.start()
        ids = await run.generate(2)
        return report("deadline", await run.wait(ids), proxy, expect_failed=2, expect_error="timed out")


async def view_fails(args: argparse.Namespace) -> bool:
    async with scenario(args) as (run, proxy):
        proxy.fail_view = True
        await run.start()
        ids = await run.generate(2)
        return report("view-fails", await run.wait(ids), proxy, expect_failed=2,
                      expect_error="could not download the result")


async def unwritable_uploads(args: argparse.Namespace) -> bool:
    async with scenario(args) as (run, proxy):
        blocked = run.folder / "data" / "uploads" / "presets" / "fault_sd15"
        blocked.parent.mkdir(parents=True)
        blocked.write_text("a file where the folder should be")
        await run.start()
        ids = await run.generate(2)
        ok = report("unwritable-uploads", await run.wait(ids), proxy, expect_failed=2,
                    expect_error="could not write the result file")
        async with run.session.get(f"{run.base}/healthz") as resp:
            print(f"     service still up: /healthz {resp.status}")
        return ok and resp.status == 200


SCENARIOS = {
    "sigkill-gateway": sigkill_gateway,
    "restart-comfyui": restart_comfyui,
    "drop-websocket": lambda a: websocket(a, silent=False),
    "silent-websocket": lambda a: websocket(a, silent=True),
    "deadline": deadline,
    "view-fails": view_fails,
    "unwritable-uploads": unwritable_uploads,
}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], default=list(SCENARIOS))
    parser.add_argument("--comfyui-url", default="http://127.0.0.1:8188")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint the ComfyUI has (SD1.5)")
    parser.add_argument("--comfyui-stop", help="command that stops ComfyUI (for restart-comfyui)")
    parser.add_argument("--comfyui-start", help="command that starts ComfyUI and waits until it answers")
    args = parser.parse_args()
    results = []
    for name in args.scenarios or list(SCENARIOS):
        results.append(await SCENARIOS[name](args))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
