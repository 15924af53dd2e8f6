#!/usr/bin/env python3
"""Benchmarks of the gateway's own cost. Each prints its figures as small tables; comparisons
are measured side by side in one run. Against the fake ComfyUI by default (quick), or a real one
with --comfyui-url.

    .venv/bin/python scripts/bench.py overhead [--comfyui-url URL] [--n 200] [--graph noise|sd15|both] [--steps N]
                                               [--profile FILE]
    .venv/bin/python scripts/bench.py api      [--jobs 100000] [--connections 50] [--duration 10] [--client wrk|python]
    .venv/bin/python scripts/bench.py memory   [--jobs 100000] [--streams 1000]
    .venv/bin/python scripts/bench.py latency  [--comfyui-url URL] [--n 100] [--size 1024]
    .venv/bin/python scripts/bench.py sse      [--comfyui-url URL] [--subscribers 1000]
    .venv/bin/python scripts/bench.py status   [--jobs 10000] [--requests 2000]

overhead  the same N prompts through the gateway (count=20 requests, all waited for) and posted
          straight to ComfyUI by a minimal websocket client, one at a time and two at a time;
          wall-time ratios, the gateway's CPU per job, and ComfyUI's idle gaps between prompts
          (from execution_start/execution_success timestamps in its history).
api       GET /api/v1/job/<id> with many jobs stored, next to a bare aiohttp handler returning a
          constant; POST /generate with count=20 (jobs accepted per second).
memory    the gateway's resident memory with many stored jobs and many open event streams.
latency   from the end of a prompt in ComfyUI (its execution_success timestamp, sent just before
          `executing: null`) to the job's `done` event (image downloaded and written).
sse       one job with many event-stream subscribers: did each get every job/end event?
status    GET /api/v1/status with many jobs stored, next to GET /healthz.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contextlib

from benchkit import (
    HEADERS,
    KEY,
    ROOT,
    Process,
    comfy_times,
    comfyui,
    cpu_seconds,
    free_port,
    gaps,
    gateway,
    generate,
    hot_spots,
    percentile,
    rss_mb,
    seed_jobs,
    session,
    spawn,
    sse,
    summary,
    table,
    wait_http,
    workdir,
)

from gateway.compiler import compile_prompt, plan_jobs
from gateway.models import GenerateRequest
from gateway.presets import load_presets

GRAPHS = {"noise": "example_01", "sd15": "sd15"}


def graph_body(graph: str, checkpoint: str, size: int, steps: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"width": size, "height": size}
    if graph == "sd15":
        body["checkpoint"] = checkpoint
        if steps is not None:
            body["steps"] = steps
    return body


# --- overhead --------------------------------------------------------------------------------

class DirectClient:
    """A minimal ComfyUI client: POST /prompt, then wait for `executing: null` on the websocket."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self._http = http
        self._url = url

    async def run(self, prompts: list[dict[str, Any]], in_flight: int) -> tuple[float, list[str]]:
        client_id = uuid.uuid4().hex
        waiting: dict[str, asyncio.Future[bool]] = {}
        ws_url = self._url.replace("http", "ws", 1) + "/ws"
        async with self._http.ws_connect(ws_url, params={"clientId": client_id}, max_msg_size=0) as ws:

            async def read() -> None:
                async for msg in ws:
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        continue
                    message = json.loads(msg.data)
                    data = message.get("data") or {}
                    kind = message.get("type")
                    finished = kind == "executing" and data.get("node") is None
                    if finished or kind in ("execution_error", "execution_interrupted"):
                        future = waiting.pop(data.get("prompt_id"), None)
                        if future is not None and not future.done():
                            future.set_result(finished)

            reader = asyncio.create_task(read())
            slots = asyncio.Semaphore(in_flight)
            ids: list[str] = []

            async def one(prompt: dict[str, Any]) -> bool:
                prompt_id = str(uuid.uuid4())
                ids.append(prompt_id)
                future = waiting[prompt_id] = asyncio.get_running_loop().create_future()
                async with slots:
                    body = {"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id}
                    async with self._http.post(f"{self._url}/prompt", json=body) as resp:
                        if resp.status != 200:
                            raise RuntimeError(f"ComfyUI refused a prompt: {await resp.text()}")
                    return await future

            started = time.perf_counter()
            results = await asyncio.gather(*(one(p) for p in prompts))
            wall = time.perf_counter() - started
            reader.cancel()
        if not all(results):
            print(f"warning: {results.count(False)} direct prompts failed", file=sys.stderr)
        return wall, ids


def _gateway_pid(process: Process, profiled: bool) -> int:
    if not profiled:
        return process.pid
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    return int(children[0])


async def _through_gateway(http: aiohttp.ClientSession, gw: Process, pid: int, slug: str,
                           body: dict[str, Any], n: int, seed: int) -> tuple[float, float, list[str]]:
    """N jobs through the gateway in count=20 requests; (wall seconds, gateway CPU seconds, ids)."""
    done: set[str] = set()
    all_done = asyncio.Event()
    opened = asyncio.Event()

    async def watch() -> None:
        async for event in sse(http, f"{gw.url}/api/v1/images/events", opened=opened):
            if event.event == "image":
                done.add(event.data["job_id"])
                if len(done) >= n:
                    all_done.set()
                    return

    watcher = asyncio.create_task(watch())
    await opened.wait()
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    ids: list[str] = []
    for first in range(0, n, 20):
        ids += await generate(http, gw.url, slug, body | {"count": min(20, n - first), "seed": seed + first})
    while not all_done.is_set():
        try:
            await asyncio.wait_for(all_done.wait(), 2.0)
        except TimeoutError:
            async with http.get(f"{gw.url}/api/v1/status", headers=HEADERS) as resp:
                failed = (await resp.json())["jobs"]["failed_last_hour"]
            if failed:
                raise RuntimeError(f"{failed} jobs failed in the gateway; see its log {gw.log}") from None
    wall = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu_before
    watcher.cancel()
    return wall, cpu, ids


async def _idle_comfy(http: aiohttp.ClientSession, url: str) -> None:
    """Wait (a while) until ComfyUI's queue is empty, so other clients' prompts do not mix in."""
    for _ in range(120):
        async with http.get(f"{url}/queue") as resp:
            queue = await resp.json()
        if not queue["queue_running"] and not queue["queue_pending"]:
            return
        await asyncio.sleep(1)
    print("warning: ComfyUI's queue is not empty (another client?); figures include its prompts", file=sys.stderr)


async def overhead(args: argparse.Namespace) -> None:
    presets = load_presets(ROOT / "presets.yaml")
    graphs = ["noise", "sd15"] if args.graph == "both" else [args.graph]
    for graph in graphs:
        slug = GRAPHS[graph]
        body = graph_body(graph, args.checkpoint, args.size, args.steps)
        delay = args.fake_job_seconds if graph == "noise" else args.fake_job_seconds_sd15
        with workdir(args.keep) as work:
            async with comfyui(args.comfyui_url, workdir=work, job_delay=delay) as comfy, session() as http:
                preset = presets[slug]

                def prompts(seed: int, n: int, preset: Any = preset, body: dict[str, Any] = body) -> list[Any]:
                    request = GenerateRequest(**body, count=1)
                    return [compile_prompt(preset, plan_jobs(preset, request, seed + i)[0], str(uuid.uuid4()))
                            for i in range(n)]

                direct = DirectClient(http, comfy)
                seed = random.randrange(2**40)
                await _idle_comfy(http, comfy)
                await direct.run(prompts(seed, 2), 1)  # warm-up: model loaded, caches filled
                runs: dict[str, tuple[float, float | None, list[str]]] = {}
                await _idle_comfy(http, comfy)
                wall, ids = await direct.run(prompts(seed + 10_000, args.n), 1)
                runs["direct, one at a time"] = (wall, None, ids)
                async with gateway(comfy, work / "data", profile=args.profile) as gw:
                    pid = _gateway_pid(gw, args.profile is not None)
                    await _idle_comfy(http, comfy)
                    wall, cpu, ids = await _through_gateway(http, gw, pid, slug, body, args.n, seed + 20_000)
                    runs["gateway (2 in flight)"] = (wall, cpu, ids)
                await _idle_comfy(http, comfy)
                wall, ids = await direct.run(prompts(seed + 30_000, args.n), 2)
                runs["direct, two at a time"] = (wall, None, ids)
                rows = []
                base = runs["direct, one at a time"][0]
                piped = runs["direct, two at a time"][0]
                for name, (wall, cpu, ids) in runs.items():
                    times = await comfy_times(http, comfy, ids)
                    idle, busy = gaps(times.values())
                    med, p95, _, worst = summary(idle)
                    rows.append((name, args.n, wall, wall / args.n * 1000, wall / base, wall / piped,
                                 "" if cpu is None else f"{cpu / args.n * 1000:.2f}", busy / args.n * 1000,
                                 sum(idle) * 1000 / max(1, len(idle)), med, p95, worst))
                where = "real ComfyUI " + comfy if args.comfyui_url else f"fake ComfyUI ({delay * 1000:g} ms a job)"
                table(f"overhead: {slug} {body} on {where}",
                      ("run", "jobs", "wall s", "ms/job", "/direct1", "/direct2", "gw cpu ms/job",
                       "comfy busy ms/job", "gap mean ms", "gap med", "gap p95", "gap max"), rows)
        if args.profile is not None:
            hot_spots(args.profile)


# --- api -------------------------------------------------------------------------------------

def _wrk(url: str, script: Path, connections: int, duration: float) -> tuple[float, float, float, int]:
    """(requests/s, median ms, p99 ms, non-2xx responses) from one wrk run (one thread)."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)

    def ms(label: str) -> float:
        match = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)\b", out)
        if match is None:
            return float("nan")
        return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]

    return rate, ms("50"), ms("99"), int(bad.group(1)) if bad else 0


async def _python_load(url_of: Any, connections: int, duration: float, method: str = "GET",
                       body: bytes | None = None) -> tuple[float, float, float, int]:
    """The same figures from an asyncio client (which shares the 2 cores with the server)."""
    latencies: list[float] = []
    bad = 0
    stop = time.perf_counter() + duration
    headers = HEADERS | {"Content-Type": "application/json"}
    async with session(limit=connections) as http:
        async def worker() -> None:
            nonlocal bad
            while time.perf_counter() < stop:
                t = time.perf_counter()
                async with http.request(method, url_of(), data=body, headers=headers) as resp:
                    await resp.read()
                    bad += resp.status >= 300
                latencies.append(time.perf_counter() - t)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, statistics.median(latencies) * 1000, percentile(latencies, 99) * 1000, bad


async def api(args: argparse.Namespace) -> None:
    use_wrk = args.client == "wrk" and shutil.which("wrk") is not None
    if args.client == "wrk" and not use_wrk:
        print("wrk is not installed (apt-get install wrk): using the Python client", file=sys.stderr)
    with workdir(args.keep) as work:
        ids = await seed_jobs(work / "data", done=args.jobs)
        sample = random.sample(ids, min(10_000, len(ids)))
        get_lua = work / "get.lua"
        get_lua.write_text(f'wrk.headers["X-API-Key"] = "{KEY}"\nlocal ids = {{' +
                           ",".join(f'"{i}"' for i in sample) + '}\nrequest = function()\n'
                           '  return wrk.format("GET", "/api/v1/job/" .. ids[math.random(#ids)])\nend\n')
        post_lua = work / "post.lua"
        post_lua.write_text(f'wrk.method = "POST"\nwrk.body = \'{{"count": 20}}\'\nwrk.headers["X-API-Key"] = "{KEY}"\n'
                            'wrk.headers["Content-Type"] = "application/json"\n')
        nowhere = f"http://127.0.0.1:{free_port()}"  # no ComfyUI: the dispatcher stays idle, jobs stay queued
        async with gateway(nowhere, work / "data", ready=False) as gw, session() as http:
            async with http.get(f"{gw.url}/api/v1/job/{sample[0]}", headers=HEADERS) as resp:
                record = await resp.read()
            (work / "record.json").write_bytes(record)
            bare = await _bare_server(work)
            try:
                rows = []
                for name, base in (("gateway GET /api/v1/job/<id>", gw.url), ("bare aiohttp handler", bare.url)):
                    if use_wrk:
                        figures = _wrk(base, get_lua, args.connections, args.duration)
                    else:
                        figures = await _python_load(lambda b=base: f"{b}/api/v1/job/{random.choice(sample)}",
                                                     args.connections, args.duration)
                    rows.append((name, *figures))
                gateway_rate, bare_rate = rows[0][1], rows[1][1]
                rows.append(("ratio gateway / bare", gateway_rate / bare_rate, "", "", ""))
                client = "wrk -t1" if use_wrk else "Python asyncio client (on the same 2 cores)"
                table(f"api: GET with {args.jobs} jobs stored, {args.connections} connections, {client}",
                      ("target", "req/s", "median ms", "p99 ms", "non-2xx"), rows)
                url = f"{gw.url}/api/v1/generate/example_01"
                if use_wrk:
                    rate, med, p99, bad = _wrk(url, post_lua, args.connections, args.duration)
                else:
                    rate, med, p99, bad = await _python_load(lambda: url, args.connections, args.duration, "POST",
                                                             b'{"count": 20}')
                table("api: POST /api/v1/generate/example_01 {\"count\": 20}",
                      ("req/s", "jobs accepted/s", "median ms", "p99 ms", "non-2xx"),
                      [(rate, rate * 20, med, p99, bad)])
            finally:
                bare.stop()


async def _bare_server(work: Path) -> Process:
    port = free_port()
    cmd = [sys.executable, str(ROOT / "scripts" / "bench.py"), "bare", "--port", str(port),
           "--body", str(work / "record.json")]
    process = spawn(cmd, env=None, log=work / "bare.log", url=f"http://127.0.0.1:{port}")
    await wait_http(f"{process.url}/api/v1/job/x")
    return process


def serve_bare(args: argparse.Namespace) -> None:
    body = Path(args.body).read_bytes()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v1/job/{job_id}", handler)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


# --- memory ----------------------------------------------------------------------------------

async def memory(args: argparse.Namespace) -> None:
    with workdir(args.keep) as work:
        ids = await seed_jobs(work / "data", done=args.jobs, queued=args.streams)
        waiting = ids[-args.streams:]
        nowhere = f"http://127.0.0.1:{free_port()}"
        async with gateway(nowhere, work / "data", ready=False) as gw, session() as http:
            for job_id in random.sample(ids, 200):
                async with http.get(f"{gw.url}/api/v1/job/{job_id}", headers=HEADERS) as resp:
                    await resp.read()
            idle = rss_mb(gw.pid)
            opened = 0
            all_open = asyncio.Event()

            async def stream(job_id: str) -> None:
                nonlocal opened
                async for _ in sse(http, f"{gw.url}/api/v1/job/{job_id}/events"):
                    opened += 1
                    if opened == len(waiting):
                        all_open.set()
                    break
                await asyncio.Event().wait()  # keep the connection open

            async with asyncio.timeout(300):
                tasks = []
                for job_id in waiting:
                    tasks.append(asyncio.create_task(stream(job_id)))
                    await asyncio.sleep(0)
                await all_open.wait()
            await asyncio.sleep(2)
            with_streams = rss_mb(gw.pid)
            peak = _peak_mb(gw.pid)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        table(f"memory: gateway process with {args.jobs} stored jobs",
              ("state", "RSS MB"), [("started, 200 records read", idle),
                                    (f"{args.streams} event streams open", with_streams), ("peak (VmHWM)", peak)])


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


# --- latency ---------------------------------------------------------------------------------

RESULT_BOUNDS = ("0.01", "0.025", "0.05", "0.1")


def result_buckets(exposition: str) -> dict[str, float]:
    """Cumulative counts of the gateway_result_seconds histogram, by bucket bound."""
    found = {}
    for match in re.finditer(r'^gateway_result_seconds_bucket\{le="([^"]+)"\} (\S+)$', exposition, re.M):
        found[match.group(1)] = float(match.group(2))
    return found


def _write_flushed(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


async def direct_finish(http: aiohttp.ClientSession, comfy: str, prompts: list[dict[str, Any]],
                        folder: Path) -> dict[str, float]:
    """The same end of prompt -> image on disk, done by a minimal client straight against ComfyUI:
    one prompt at a time, its image named by the `executed` message, fetched from `/view` when
    `executing: null` arrives, written and flushed. Returns when each was on disk, by prompt id."""
    client_id = uuid.uuid4().hex
    finished: dict[str, float] = {}
    ws_url = comfy.replace("http", "ws", 1) + "/ws"
    async with http.ws_connect(ws_url, params={"clientId": client_id}, max_msg_size=0) as ws:
        for prompt in prompts:
            prompt_id = str(uuid.uuid4())
            body = {"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id}
            async with http.post(f"{comfy}/prompt", json=body) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"ComfyUI refused a prompt: {await resp.text()}")
            images: list[dict[str, str]] = []
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                message = json.loads(msg.data)
                data = message.get("data") or {}
                if data.get("prompt_id") != prompt_id:
                    continue
                if message.get("type") == "executed":
                    images += (data.get("output") or {}).get("images", [])
                elif message.get("type") == "executing" and data.get("node") is None:
                    break
            image = images[0]
            query = {"filename": image["filename"], "subfolder": image.get("subfolder", ""), "type": image["type"]}
            async with http.get(f"{comfy}/view", params=query) as resp:
                data_bytes = await resp.read()
            await asyncio.to_thread(_write_flushed, folder / f"{prompt_id}.png", data_bytes)
            finished[prompt_id] = time.time()
    return finished


async def latency(args: argparse.Namespace) -> None:
    with workdir(args.keep) as work:
        async with comfyui(args.comfyui_url, workdir=work, job_delay=0.1) as comfy, session() as http, \
                gateway(comfy, work / "data") as gw:
            body = {"width": args.size, "height": args.size}
            seed = random.randrange(2**40)
            preset = load_presets(ROOT / "presets.yaml")["example_01"]
            request = GenerateRequest(**body, count=1)
            prompts = [compile_prompt(preset, plan_jobs(preset, request, seed + 10**6 + i)[0], str(uuid.uuid4()))
                       for i in range(args.n + 2)]
            direct_done = await direct_finish(http, comfy, prompts, work / "direct")
            direct_times = await comfy_times(http, comfy, list(direct_done))
            direct = [direct_done[p] - direct_times[p][1] for p in list(direct_done)[2:] if p in direct_times]
            seen: dict[str, float] = {}
            late = 0
            last: dict[str, Any] = {}
            for i in range(args.n + 2):
                (job_id,) = await generate(http, gw.url, "example_01", body | {"seed": seed + i})
                first = True
                async for event in sse(http, f"{gw.url}/api/v1/job/{job_id}/events"):
                    if first and event.data.get("status") in ("done", "failed"):
                        late += 1  # finished before the stream opened: not a sample
                        break
                    first = False
                    if event.event == "end":
                        if event.data["status"] != "done":
                            raise RuntimeError(f"job {job_id} failed: {event.data.get('error')}")
                        if i >= 2:  # two warm-up jobs
                            seen[job_id] = event.at
                        last = event.data
                        break
            times = await comfy_times(http, comfy, list(seen))
            samples = [seen[j] - times[j][1] for j in seen if j in times]
            async with http.get(f"{gw.url}/metrics") as resp:
                handled = result_buckets(await resp.text())
            async with http.get(gw.url + last["result"]["image_url"]) as resp:
                png = len(await resp.read())
        where = "real ComfyUI " + comfy if args.comfyui_url else "fake ComfyUI"
        table(f"latency: ComfyUI's end of prompt -> image on disk (example_01 {args.size}x{args.size}, "
              f"PNG of {png / 1e6:.2f} MB) on {where}",
              ("run", "samples", "median ms", "p95 ms", "p99 ms", "max ms", "skipped (late stream)"),
              [("direct client: image written", len(direct), *summary(direct), ""),
               ("gateway: job reads done", len(samples), *summary(samples), late)])
        total = handled.get("+Inf", 0.0)
        table("the gateway's own part: `executing: null` received -> job stored as done "
              "(its gateway_result_seconds histogram, all jobs)",
              ("jobs", *(f"<= {float(le) * 1000:g} ms" for le in RESULT_BOUNDS)),
              [(int(total), *(f"{100 * handled.get(le, 0.0) / total:.1f}%" if total else "-" for le in RESULT_BOUNDS))])


# --- sse -------------------------------------------------------------------------------------

async def sse_fanout(args: argparse.Namespace) -> None:
    body = graph_body("sd15", args.checkpoint, 64)
    with workdir(args.keep) as work:
        async with comfyui(args.comfyui_url, workdir=work, step_delay=0.05) as comfy, session() as http, \
                gateway(comfy, work / "data", env={"GATEWAY_MAX_IN_FLIGHT": "1"}) as gw:
            (warm,) = await generate(http, gw.url, "sd15", body)
            async for event in sse(http, f"{gw.url}/api/v1/job/{warm}/events"):
                if event.event == "end":
                    break
            await generate(http, gw.url, "sd15", body | {"steps": args.blocker_steps})
            (target,) = await generate(http, gw.url, "sd15", body | {"steps": 20})
            received: list[list[tuple[str, Any]]] = []
            opened = 0
            all_open = asyncio.Event()
            end_times: list[float] = []

            async def subscriber() -> None:
                nonlocal opened
                events: list[tuple[str, Any]] = []
                received.append(events)
                async for event in sse(http, f"{gw.url}/api/v1/job/{target}/events"):
                    if not events:
                        opened += 1
                        if opened == args.subscribers:
                            all_open.set()
                    value = event.data.get("status") if event.event in ("job", "end") else event.data.get("step")
                    events.append((event.event, value))
                    if event.event == "end":
                        end_times.append(event.at)
                        return

            started = time.perf_counter()
            tasks = []
            for _ in range(args.subscribers):
                tasks.append(asyncio.create_task(subscriber()))
                await asyncio.sleep(0)
            await all_open.wait()
            connect_s = time.perf_counter() - started
            async with http.get(f"{gw.url}/api/v1/job/{target}", headers=HEADERS) as resp:
                status_when_open = (await resp.json())["status"]
            async with asyncio.timeout(300):
                await asyncio.gather(*tasks)
        changes = [tuple(e for e in events if e[0] in ("job", "end")) for events in received]
        # the first event is the state at connection time; every later job change must reach everyone
        later = [c[1:] for c in changes]
        reference = max(later, key=len)
        complete = sum(c == reference for c in later)
        progress = [sum(e[0] == "progress" for e in events) for events in received]
        last_step = [max((e[1] for e in events if e[0] == "progress"), default=0) for events in received]
        where = "real ComfyUI " + comfy if args.comfyui_url else "fake ComfyUI (50 ms a step)"
        table(f"sse: one sd15 job (20 steps) with {args.subscribers} subscribers on {where}",
              ("figure", "value"), [
                  ("seconds to open all streams", connect_s),
                  ("job status when all were open", status_when_open),
                  ("job/end changes after connecting", " > ".join(f"{e}:{v}" for e, v in reference)),
                  ("subscribers that got all of them", f"{complete}/{len(later)}"),
                  ("progress events per subscriber (min/median/max)",
                   f"{min(progress)}/{statistics.median(progress):g}/{max(progress)}"),
                  ("subscribers that saw step 20", sum(s == 20 for s in last_step)),
                  ("end event spread over subscribers, ms", (max(end_times) - min(end_times)) * 1000),
              ])


# --- status ----------------------------------------------------------------------------------

async def status(args: argparse.Namespace) -> None:
    with workdir(args.keep) as work:
        await seed_jobs(work / "data", done=args.jobs * 9 // 10, failed=args.jobs // 20,
                        queued=args.jobs - args.jobs * 9 // 10 - args.jobs // 20)
        nowhere = f"http://127.0.0.1:{free_port()}"
        async with gateway(nowhere, work / "data", ready=False) as gw, session(limit=1) as http:
            timings: dict[str, list[float]] = {"GET /api/v1/status": [], "GET /healthz": []}
            for _ in range(args.requests):
                for path, name in (("/api/v1/status", "GET /api/v1/status"), ("/healthz", "GET /healthz")):
                    t = time.perf_counter()
                    async with http.get(gw.url + path, headers=HEADERS) as resp:
                        await resp.read()
                    timings[name].append(time.perf_counter() - t)
        table(f"status: {args.jobs} jobs stored, {args.requests} sequential requests each, one connection",
              ("route", "median ms", "p95 ms", "p99 ms", "max ms"),
              [(name, *summary(values)) for name, values in timings.items()])


# --- helpers run as processes ----------------------------------------------------------------

def serve_fake(args: argparse.Namespace) -> None:
    from tests.fake_comfy import FakeComfyUI

    async def run() -> None:
        fake = FakeComfyUI(checkpoints=("tiny.safetensors", "other.safetensors"), port=args.port,
                           job_delay=args.job_delay, step_delay=args.step_delay)
        await fake.start()
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def bench(name: str, help_text: str, *, comfy: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--keep", action="store_true", help="keep the working folder (databases, logs)")
        if comfy:
            p.add_argument("--comfyui-url", help="a real ComfyUI (default: the fake one, in its own process)")
            p.add_argument("--checkpoint", default="tiny.safetensors", help="checkpoint for the sd15 graph")
        return p

    p = bench("overhead", "gateway vs direct wall time for the same N prompts", comfy=True)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--graph", choices=("noise", "sd15", "both"), default="both")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, help="sampler steps of the sd15 graph (default: the preset's, 20)")
    p.add_argument("--fake-job-seconds", type=float, default=0.015, help="fake ComfyUI: time of a noise job")
    p.add_argument("--fake-job-seconds-sd15", type=float, default=0.7, help="fake ComfyUI: time of an sd15 job")
    p.add_argument("--profile", type=Path, help="run the gateway under py-spy; collapsed stacks go here")
    p = bench("api", "GET /job and POST /generate throughput")
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--client", choices=("wrk", "python"), default="wrk")
    p = bench("memory", "RSS with stored jobs and open event streams")
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--streams", type=int, default=1000)
    p = bench("latency", "end of prompt in ComfyUI to job done", comfy=True)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--size", type=int, default=1024)
    p = bench("sse", "one job, many event-stream subscribers", comfy=True)
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--blocker-steps", type=int, default=200,
                   help="steps of the job run first, while the subscribers connect")
    p = bench("status", "GET /api/v1/status with many jobs stored")
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--requests", type=int, default=2000)
    p = sub.add_parser("fake-comfy", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--job-delay", type=float, default=0.0)
    p.add_argument("--step-delay", type=float, default=0.0)
    p = sub.add_parser("bare", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--body", required=True)
    return parser


def main() -> None:
    args = _parser().parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    if args.command == "fake-comfy":
        serve_fake(args)
        return
    if args.command == "bare":
        serve_bare(args)
        return
    benches = {"overhead": overhead, "api": api, "memory": memory, "latency": latency, "sse": sse_fanout,
               "status": status}
    asyncio.run(benches[args.command](args))


if __name__ == "__main__":
    main()
