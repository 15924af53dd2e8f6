"""`comfy-gateway generate`: ask a running gateway for images, watch them being made, save them."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from rich.console import Console

from gateway.models import JobRecord
from gateway.sdk.calls import is_missing_route
from gateway.sdk.client import DEFAULT_URL, AsyncGatewayClient, GatewayClient
from gateway.sdk.errors import ApiError, ClientError
from gateway.sdk.events import JobEnd
from gateway.sdk.view import LiveView, View

ENV_URL = "COMFY_GATEWAY_URL"
ENV_KEY = "COMFY_GATEWAY_KEY"
OVERRIDES = ("count", "seed", "width", "height", "checkpoint", "extra_positive", "extra_negative", "steps", "cfg",
             "sampler", "scheduler", "denoise", "batch", "loras")
INTERRUPTED = 130


def _lora(text: str) -> dict[str, Any]:
    name, sep, strength = text.rpartition(":")
    if not sep:
        return {"name": text}
    try:
        return {"name": name, "strength": float(strength)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the strength after ':' must be a number") from None


def add_generate_command(sub: Any) -> None:
    """Add `generate` to the command line's subcommands."""
    parser = sub.add_parser(
        "generate", help="ask a running gateway for images and save them",
        description="Queue jobs of a preset on a running gateway, show their progress and save the images.",
        epilog="Ctrl-C cancels the jobs this command started. Prints one line per saved image: its path and seed. "
               f"Without --url/--key the variables {ENV_URL} and {ENV_KEY} are used.",
    )
    parser.add_argument("slug", metavar="SLUG", help="the preset, as GET /api/v1/presets lists it")
    parser.add_argument("--count", type=int, metavar="N", help="images to make, one job each (1-20)")
    parser.add_argument("--seed", type=int, metavar="S", help="seed of the first job; job i uses seed + i")
    parser.add_argument("--width", type=int, metavar="W", help="width in pixels (a multiple of 8; with --height)")
    parser.add_argument("--height", type=int, metavar="H", help="height in pixels (a multiple of 8; with --width)")
    parser.add_argument("--checkpoint", metavar="C", help="checkpoint file as ComfyUI lists it")
    parser.add_argument("--extra-positive", metavar="TEXT", help="appended to the preset's positive prompt")
    parser.add_argument("--extra-negative", metavar="TEXT", help="appended to the preset's negative prompt")
    parser.add_argument("--steps", type=int, metavar="N", help="sampler steps")
    parser.add_argument("--cfg", type=float, metavar="X", help="classifier-free guidance scale")
    parser.add_argument("--sampler", metavar="NAME", help="sampler, e.g. euler or dpmpp_2m")
    parser.add_argument("--scheduler", metavar="NAME", help="scheduler, e.g. normal or karras")
    parser.add_argument("--denoise", type=float, metavar="X", help="denoising strength, 0-1")
    parser.add_argument("--batch", type=int, metavar="N", help="images per job (the latent's batch size)")
    parser.add_argument("--lora", dest="loras", action="append", type=_lora, metavar="NAME[:STRENGTH]",
                        help="a LoRA file as ComfyUI lists it, strength 1 unless given; repeat for several")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to save the images in")
    parser.add_argument("--url", metavar="URL", help=f"the gateway (default: ${ENV_URL}, else {DEFAULT_URL})")
    parser.add_argument("--key", metavar="KEY", help=f"API key (default: ${ENV_KEY})")


@dataclass
class _Jobs:
    """The jobs this command started, and those that ended: what Ctrl-C has to cancel."""

    started: list[str] = field(default_factory=list)
    ended: set[str] = field(default_factory=set)
    failed: int = 0

    def unfinished(self) -> list[str]:
        return [job_id for job_id in self.started if job_id not in self.ended]


def run_generate(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Run the command; 0 when every job is done, 1 when one failed or an error stopped it, 130 on Ctrl-C."""
    env = os.environ if environ is None else environ
    url = args.url or env.get(ENV_URL) or DEFAULT_URL
    key = args.key or env.get(ENV_KEY) or None
    console = Console(file=sys.stdout)
    view = LiveView(console) if console.is_terminal else View(sys.stdout, sys.stderr)
    jobs = _Jobs()
    try:
        asyncio.run(_generate(url, key, args, view, jobs))
    except KeyboardInterrupt:
        try:
            _cancel(url, key, jobs)
        except KeyboardInterrupt:
            print("comfy-gateway: interrupted while cancelling; some jobs may still run", file=sys.stderr)
        return INTERRUPTED
    except ClientError as exc:
        print(f"comfy-gateway: {_one_line(exc)}", file=sys.stderr)
        return 1
    return 1 if jobs.failed else 0


def _one_line(exc: ClientError) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, ApiError) and exc.status == 401:
        text += f" (give --key or set {ENV_KEY})"
    return text


async def _generate(url: str, key: str | None, args: argparse.Namespace, view: View, jobs: _Jobs) -> None:
    overrides = {name: getattr(args, name) for name in OVERRIDES}
    async with AsyncGatewayClient(url, key) as client:
        ids = await client.generate(args.slug, **overrides)
        jobs.started.extend(ids)
        with view:
            for number, job_id in enumerate(ids, 1):
                view.add(number, job_id)
            async with asyncio.TaskGroup() as group:
                for job_id in ids:
                    group.create_task(_follow(client, view, job_id, args.out, jobs))


async def _follow(client: AsyncGatewayClient, view: View, job_id: str, out: Path, jobs: _Jobs) -> None:
    """Show one job's events until it ends; then save its images."""
    record = await _watch(client, view, job_id)
    jobs.ended.add(job_id)
    if record.status != "done":
        jobs.failed += 1
        return
    seed = record.result.seed if record.result else record.params.get("seed")
    for image in record.images:
        view.saved(await client.download(image.image_url, out / PurePosixPath(image.relative_path).name), seed)


async def _watch(client: AsyncGatewayClient, view: View, job_id: str) -> JobRecord:
    """The job's final record, showing each event on the way (a gateway without event streams is polled)."""
    try:
        async with aclosing(client.events(job_id)) as events:
            async for event in events:
                view.update(job_id, event)
                if isinstance(event, JobEnd):
                    return event.job
    except ApiError as exc:
        if not is_missing_route(exc):
            raise
    record = await client.wait(job_id)
    view.update(job_id, JobEnd(record))
    return record


def _cancel(url: str, key: str | None, jobs: _Jobs) -> None:
    unfinished = jobs.unfinished()
    try:
        with GatewayClient(url, key, timeout=10.0) as client:
            for job_id in unfinished:
                client.cancel(job_id)
    except ClientError as exc:
        print(f"comfy-gateway: interrupted; cancelling failed: {_one_line(exc)}", file=sys.stderr)
        return
    print(f"comfy-gateway: interrupted; cancelled {len(unfinished)} job(s)", file=sys.stderr)
