#!/usr/bin/env python3
"""What checkpoint affinity buys: jobs alternating between two checkpoints, first come vs affinity.

Runs an in-process gateway twice against the same ComfyUI, once with affinity off
(GATEWAY_AFFINITY_MAX_SKIPS=0) and once on, and prints for each the wall time from the first
POST to the last job done, the model swaps, and the most places any job was overtaken (from the
jobs' start times), then the ratio affinity / first come.

On a ComfyUI that others use too, their prompts run between ours: wall time then measures them
as well. So the script also prints, from ComfyUI's own `/history`, the time ComfyUI spent on our
prompts (execution_start to execution_success, summed), how many of them really loaded a
checkpoint (the loader not cached), and how many other prompts ran meanwhile. On a quiet
ComfyUI the two ratios agree.

    .venv/bin/python scripts/bench_affinity.py --comfyui-url http://127.0.0.1:8188 \\
        --checkpoints tiny.safetensors other.safetensors
    .venv/bin/python scripts/bench_affinity.py --fake --swap-delay 0.6 --job-delay 0.7

Before each run one warm-up job loads the second checkpoint, so both runs start alike (and the
first of the measured jobs needs a swap in both). Exits non-zero if a job failed or the fairness
bound was broken.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.app import create_app  # noqa: E402
from gateway.settings import Settings  # noqa: E402

KEY = "bench-key"


@dataclass(frozen=True)
class Run:
    label: str
    seconds: float
    swaps: int
    max_overtaken: int
    failed: int
    busy: float
    """Seconds ComfyUI spent executing our prompts."""
    loads: int
    """Our prompts in which ComfyUI ran the checkpoint loader (not cached)."""
    foreign: int
    """Other clients' prompts that ran between our first start and last end."""


LOADER = "CheckpointLoaderSimple"


async def comfy_history(session: aiohttp.ClientSession, url: str, job_ids: list[str]) -> tuple[float, int, int]:
    """Busy seconds, checkpoint loads and foreign prompts of a run, from ComfyUI's history."""
    spans, loads = [], 0
    for job_id in job_ids:
        async with session.get(f"{url}/history/{job_id}") as resp:
            entry = (await resp.json()).get(job_id)
        if entry is None:
            continue
        events = dict(entry["status"]["messages"])
        if "execution_start" in events and "execution_success" in events:
            spans.append((events["execution_start"]["timestamp"], events["execution_success"]["timestamp"]))
        loader = next(n for n, node in entry["prompt"][2].items() if node["class_type"] == LOADER)
        loads += loader not in events.get("execution_cached", {}).get("nodes", [])
    if not spans:
        return 0.0, loads, 0
    first, last = min(a for a, _ in spans), max(b for _, b in spans)
    async with session.get(f"{url}/history", params={"max_items": "1000"}) as resp:
        history = await resp.json()
    foreign = 0
    for prompt_id, entry in history.items():
        start = next((d["timestamp"] for n, d in entry["status"]["messages"] if n == "execution_start"), None)
        foreign += prompt_id not in job_ids and start is not None and first <= start <= last
    return sum(b - a for a, b in spans) / 1000, loads, foreign


@contextlib.asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[str]:
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class Api:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url
        self.headers = {"X-API-Key": KEY}

    async def ready(self) -> None:
        for _ in range(600):
            async with self.session.get(f"{self.url}/readyz") as resp:
                if resp.status == 200:
                    return
            await asyncio.sleep(0.05)
        raise SystemExit("the gateway never got ready (is ComfyUI running?)")

    async def generate(self, body: dict[str, Any]) -> str:
        async with self.session.post(f"{self.url}/api/v1/generate/sd15", json=body, headers=self.headers) as resp:
            answer = await resp.json()
            if resp.status != 202:
                raise SystemExit(f"generate answered {resp.status}: {answer}")
            return str(answer["jobs"][0]["job_id"])

    async def job(self, job_id: str) -> dict[str, Any]:
        async with self.session.get(f"{self.url}/api/v1/job/{job_id}", headers=self.headers) as resp:
            record: dict[str, Any] = await resp.json()
            return record

    async def status(self) -> dict[str, Any]:
        async with self.session.get(f"{self.url}/api/v1/status", headers=self.headers) as resp:
            answer: dict[str, Any] = await resp.json()
            return answer

    async def finished(self, job_ids: list[str]) -> list[dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        while len(records) < len(job_ids):
            for job_id in job_ids:
                if job_id not in records:
                    record = await self.job(job_id)
                    if record["status"] in ("done", "failed"):
                        records[job_id] = record
            await asyncio.sleep(0.02)
        return [records[j] for j in job_ids]


def places_overtaken(records: list[dict[str, Any]]) -> list[int]:
    """For each job (in arrival order), how many later arrivals started before it."""
    started = [datetime.fromisoformat(r["started_at"] or r["finished_at"]).timestamp() for r in records]
    return [sum(1 for later in range(i + 1, len(records)) if started[later] < started[i])
            for i in range(len(records))]


async def one_run(args: argparse.Namespace, url: str, label: str, max_skips: int) -> Run:
    first, second = args.checkpoints
    size: dict[str, int] = {"width": args.size, "height": args.size}
    if args.steps is not None:
        size["steps"] = args.steps
    with tempfile.TemporaryDirectory(prefix="bench-affinity-") as data:
        settings = Settings(comfyui_url=url, data_dir=Path(data), presets_path=ROOT / "presets.yaml", api_key=KEY,
                            max_in_flight=args.in_flight, max_queued=args.jobs + 10, job_timeout=600.0,
                            affinity_max_skips=max_skips, affinity_max_wait=args.max_wait, preview_method="none")
        async with gateway(settings) as base, aiohttp.ClientSession() as session:
            api = Api(session, base)
            await api.ready()
            warm = await api.generate({"checkpoint": second, "seed": 0, **size})
            await api.finished([warm])
            swaps_before = (await api.status())["backend"]["model_swaps"]
            started = time.monotonic()
            ids = [await api.generate({"checkpoint": (first, second)[i % 2], "seed": i + 1, **size})
                   for i in range(args.jobs)]
            records = await api.finished(ids)
            seconds = time.monotonic() - started
            swaps = (await api.status())["backend"]["model_swaps"] - swaps_before
            busy, loads, foreign = await comfy_history(session, url, ids)
    failed = sum(r["status"] != "done" for r in records)
    done = [r for r in records if r["status"] == "done"]
    return Run(label, seconds, swaps, max(places_overtaken(done), default=0), failed, busy, loads, foreign)


@contextlib.asynccontextmanager
async def comfyui(args: argparse.Namespace) -> AsyncIterator[str]:
    if not args.fake:
        yield args.comfyui_url
        return
    from tests.fake_comfy import FakeComfyUI

    fake = FakeComfyUI(checkpoints=tuple(args.checkpoints), swap_delay=args.swap_delay, job_delay=args.job_delay)
    await fake.start()
    try:
        yield fake.url
    finally:
        await fake.stop()


async def main(args: argparse.Namespace) -> int:
    where = f"the fake ComfyUI (swap {args.swap_delay:g} s, job {args.job_delay:g} s)" if args.fake \
        else f"ComfyUI at {args.comfyui_url}"
    print(f"{args.jobs} jobs alternating {args.checkpoints[0]} / {args.checkpoints[1]}, sd15 at "
          f"{args.size}x{args.size}, {args.in_flight} in flight, against {where}")
    async with comfyui(args) as url:
        runs = [await one_run(args, url, "first come", 0),
                await one_run(args, url, f"affinity (K={args.max_skips}, T={args.max_wait:g} s)", args.max_skips)]
    for run in runs:
        print(f"  {run.label:<28} wall {run.seconds:7.2f} s   swaps {run.swaps:3d}   "
              f"max places overtaken {run.max_overtaken:3d}   failed {run.failed}")
        print(f"  {'':<28} ComfyUI busy on ours {run.busy:7.2f} s   checkpoint loads {run.loads:3d}   "
              f"other clients' prompts meanwhile {run.foreign}")
    ratio = runs[1].seconds / runs[0].seconds
    print(f"  ratio affinity / first come: wall {ratio:.3f} (target <= 0.75), "
          f"ComfyUI busy {runs[1].busy / runs[0].busy if runs[0].busy else float('nan'):.3f}")
    broken = runs[1].max_overtaken > args.max_skips
    if broken:
        print(f"  FAIRNESS BOUND BROKEN: a job was overtaken {runs[1].max_overtaken} > {args.max_skips} places")
    return 1 if broken or any(r.failed for r in runs) else 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui-url", default="http://127.0.0.1:8188")
    parser.add_argument("--fake", action="store_true", help="run against the fake ComfyUI of tests/")
    parser.add_argument("--checkpoints", nargs=2, default=["tiny.safetensors", "other.safetensors"],
                        metavar=("A", "B"))
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--size", type=int, default=64, help="width and height (default 64)")
    parser.add_argument("--steps", type=int, help="sampler steps (default: the sd15 preset's, 20)")
    parser.add_argument("--in-flight", type=int, default=2, help="GATEWAY_MAX_IN_FLIGHT (default 2)")
    parser.add_argument("--max-skips", type=int, default=8, help="GATEWAY_AFFINITY_MAX_SKIPS of the affinity run")
    parser.add_argument("--max-wait", type=float, default=60.0, help="GATEWAY_AFFINITY_MAX_WAIT")
    parser.add_argument("--swap-delay", type=float, default=0.6, help="fake: seconds a checkpoint change costs")
    parser.add_argument("--job-delay", type=float, default=0.7, help="fake: seconds a job takes")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
