#!/usr/bin/env python3
"""Throughput with several ComfyUI backends: jobs/s with 1, 2 and 4 fake ComfyUI servers.

For each backend count, starts that many fake ComfyUI servers (each job takes `--job-delay`
seconds in them), an in-process gateway with GATEWAY_COMFYUI_URL naming all of them, queues
`--jobs` jobs, and times the first POST to the last job done (from the status route's counts).
Prints jobs/s and the speed-up over one backend, and each backend's share of the jobs.

    .venv/bin/python scripts/bench_backends.py
    .venv/bin/python scripts/bench_backends.py --backends 1 2 4 --jobs 80 --job-delay 0.2

Exits non-zero if a job failed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.app import create_app  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from tests.fake_comfy import FakeComfyUI  # noqa: E402

KEY = "bench-key"
BATCH = 10
"""Jobs asked for per POST (`count`)."""


async def measure(backends: int, args: argparse.Namespace) -> tuple[float, int, list[int]]:
    """Seconds for all jobs, failed jobs, and jobs each backend ran."""
    fakes = [FakeComfyUI(job_delay=args.job_delay) for _ in range(backends)]
    for fake in fakes:
        await fake.start()
    with tempfile.TemporaryDirectory(prefix="bench-backends-") as data:
        settings = Settings(comfyui_url=",".join(f.url for f in fakes), data_dir=Path(data),
                            presets_path=ROOT / "presets.yaml", api_key=KEY, max_in_flight=args.in_flight,
                            max_queued=args.jobs + 10, preview_method="none")
        runner = web.AppRunner(create_app(settings))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        headers = {"X-API-Key": KEY}
        try:
            async with aiohttp.ClientSession(headers=headers) as session:
                while True:  # every backend connected before the clock starts
                    async with session.get(f"{base}/api/v1/status") as resp:
                        states = [b["state"] for b in (await resp.json())["backends"]]
                    if "unreachable" not in states:
                        break
                    await asyncio.sleep(0.05)
                started = time.monotonic()
                for first in range(0, args.jobs, BATCH):
                    body = {"count": min(BATCH, args.jobs - first), "width": 64, "height": 64}
                    async with session.post(f"{base}/api/v1/generate/example_01", json=body) as resp:
                        if resp.status != 202:
                            raise SystemExit(f"generate answered {resp.status}: {await resp.text()}")
                while True:
                    async with session.get(f"{base}/api/v1/status") as resp:
                        jobs = (await resp.json())["jobs"]
                    if jobs["done_last_hour"] + jobs["failed_last_hour"] >= args.jobs:
                        break
                    await asyncio.sleep(0.02)
                seconds = time.monotonic() - started
        finally:
            await runner.cleanup()
            for fake in fakes:
                await fake.stop()
    return seconds, jobs["failed_last_hour"], [len(f.executed_ids) for f in fakes]


async def main(args: argparse.Namespace) -> int:
    logging.disable(logging.WARNING)  # each run's "a webhook secret was made" notice
    print(f"{args.jobs} jobs of {args.job_delay:g} s each, {args.in_flight} in flight per backend")
    base_rate = None
    failed = 0
    for count in args.backends:
        seconds, lost, shares = await measure(count, args)
        rate = args.jobs / seconds
        base_rate = base_rate or rate
        failed += lost
        print(f"{count} backend(s): {seconds:6.2f} s  {rate:6.2f} jobs/s  x{rate / base_rate:.2f}  "
              f"jobs per backend {shares}  failed {lost}")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--jobs", type=int, default=80)
    parser.add_argument("--job-delay", type=float, default=0.2, help="seconds each job takes in a fake ComfyUI")
    parser.add_argument("--in-flight", type=int, default=2)
    sys.exit(asyncio.run(main(parser.parse_args())))
