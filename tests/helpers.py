"""Small things several test modules share."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
WORKFLOWS = ROOT / "workflows"


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def workflow(name: str) -> dict[str, dict[str, Any]]:
    return load_json(WORKFLOWS / name)


async def sse_events(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str]]:
    """(event, data) per Server-Sent Event; comments come as (":", text)."""
    event, data = "message", []
    async for raw in resp.content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            yield ":", line[1:].strip()
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def gateway_process(env: dict[str, str], *, log: IO[bytes] | None = None,
                          ) -> AsyncIterator[asyncio.subprocess.Process]:
    """`comfy-gateway serve` as a child process (its output to `log`, or dropped); killed at the end."""
    output = log if log is not None else asyncio.subprocess.DEVNULL
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", "serve", env=env, cwd=ROOT,
                                                stdout=output, stderr=output)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def wait_ready(session: aiohttp.ClientSession, base: str, *, path: str = "/readyz") -> None:
    for _ in range(300):
        try:
            async with session.get(f"{base}{path}") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("the gateway did not become ready")
