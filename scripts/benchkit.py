"""The harness behind scripts/bench.py: processes, seeded stores, small clients, tables.

The gateway always runs as its own process (`python -m gateway`), so what is measured is its
process and nothing of the load client's. The fake ComfyUI, when used, runs in a process of its
own too (`bench.py fake-comfy`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.jobs import Job, State, StoredImage  # noqa: E402
from gateway.store import SqliteStore  # noqa: E402

KEY = "bench-key"
HEADERS = {"X-API-Key": KEY}
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def session(limit: int = 0) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit),
                                 timeout=aiohttp.ClientTimeout(total=None, sock_connect=30))


# --- figures ---------------------------------------------------------------------------------

def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def table(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a small aligned table."""
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        aligned = (c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        print("  " + "  ".join(aligned))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))
    sys.stdout.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


# --- processes -------------------------------------------------------------------------------

def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (10^6 bytes)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE / 1e6


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def wait_http(url: str, *, timeout: float = 60.0, ok: Iterable[int] = (200,)) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with s.get(url) as resp:
                    if resp.status in ok:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:g} s")
            await asyncio.sleep(0.1)


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def spawn(cmd: list[str], *, env: dict[str, str] | None, log: Path, url: str) -> Process:
    out = log.open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Process(proc, url, log)


@asynccontextmanager
async def fake_comfy(*, job_delay: float = 0.0, step_delay: float = 0.0, workdir: Path) -> AsyncIterator[str]:
    """The fake ComfyUI of the test suite, in its own process; yields its URL."""
    port = free_port()
    cmd = [sys.executable, str(ROOT / "scripts" / "bench.py"), "fake-comfy", "--port", str(port),
           "--job-delay", str(job_delay), "--step-delay", str(step_delay)]
    process = spawn(cmd, env=None, log=workdir / "fake-comfy.log", url=f"http://127.0.0.1:{port}")
    try:
        await wait_http(process.url + "/system_stats")
        yield process.url
    finally:
        process.stop()


@asynccontextmanager
async def comfyui(url: str | None, *, workdir: Path, job_delay: float = 0.0,
                  step_delay: float = 0.0) -> AsyncIterator[str]:
    """The given ComfyUI, or (no URL) the fake one with these delays."""
    if url:
        yield url.rstrip("/")
        return
    async with fake_comfy(job_delay=job_delay, step_delay=step_delay, workdir=workdir) as fake_url:
        yield fake_url


@asynccontextmanager
async def gateway(comfy_url: str, data_dir: Path, *, ready: bool = True, profile: Path | None = None,
                  env: dict[str, str] | None = None) -> AsyncIterator[Process]:
    """`python -m gateway` on a free port with its own data folder; with `profile`, run under
    py-spy, writing collapsed stacks there when it stops."""
    port = free_port()
    settings = {
        "GATEWAY_COMFYUI_URL": comfy_url, "GATEWAY_DATA_DIR": str(data_dir), "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port), "GATEWAY_API_KEY": KEY, "GATEWAY_PRESETS": str(ROOT / "presets.yaml"),
        "GATEWAY_LOG_LEVEL": "WARNING", "GATEWAY_PREVIEW_METHOD": "none", "GATEWAY_MAX_QUEUED": "100000000",
        **(env or {}),
    }
    cmd = [sys.executable, "-m", "gateway", "serve"]
    if profile is not None:
        spy = Path(sys.executable).parent / "py-spy"
        cmd = [str(spy), "record", "--format", "raw", "--rate", "250", "--output", str(profile), "--", *cmd]
    process = spawn(cmd, env=os.environ | settings, log=data_dir.parent / f"gateway-{port}.log",
                     url=f"http://127.0.0.1:{port}")
    try:
        await wait_http(process.url + ("/readyz" if ready else "/healthz"), timeout=120)
        yield process
    finally:
        process.stop()
        if process.proc.returncode not in (0, -signal.SIGINT, 130):
            print(f"(gateway exited with {process.proc.returncode}; log: {process.log})", file=sys.stderr)


@contextlib.contextmanager
def workdir(keep: bool) -> Any:
    path = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    try:
        yield path
    finally:
        if keep:
            print(f"(kept {path})")
        else:
            subprocess.run(["rm", "-rf", str(path)], check=False)


def hot_spots(profile: Path, *, top: int = 25) -> None:
    """Print the functions most often on the stack (inclusive) in py-spy's collapsed stacks,
    ignoring idle threads and the event loop's own frames."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        n = int(count)
        total += n
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    skip = ("run_forever", "_run_once", "run_app", "<module>", "main (", "serve (", "_run_module", "run (asyncio",
            "Runner.run", "run_until_complete", "BaseEventLoop.run", "Handle._run", "_bootstrap", "Thread.run")
    rows = [(f, n, 100 * n / total) for f, n in inclusive.most_common() if not any(s in f for s in skip)]
    table(f"hot spots: % of {total} samples with the function on the stack", ("function", "samples", "%"),
          rows[:top])
    table("hot spots: own time", ("function", "samples", "%"),
          [(f, n, 100 * n / total) for f, n in own.most_common(12)])


# --- seeding ---------------------------------------------------------------------------------

async def seed_jobs(data_dir: Path, *, done: int, queued: int = 0, failed: int = 0, age: float = 0.0) -> list[str]:
    """Store jobs straight into a gateway's database: `done` finished ones (each with an image),
    `failed` ones and `queued` ones waiting. Returns the ids, done first, then failed, queued."""
    store = await SqliteStore.open(data_dir / "gateway.db")
    now = time.time() - age
    ids: list[str] = []
    try:
        specs = [(State.DONE, done), (State.FAILED, failed), (State.QUEUED, queued)]
        for state, count in specs:
            for start in range(0, count, 5000):
                batch = []
                for i in range(start, min(count, start + 5000)):
                    job_id = str(uuid.uuid4())
                    finished = state is not State.QUEUED
                    batch.append(Job(
                        id=job_id, preset="example_01", label="Preset: Example Preset",
                        params={"width": 512, "height": 512, "seed": i}, created_at=now - 1.0, state=state,
                        error="failed in ComfyUI" if state is State.FAILED else None,
                        images=(StoredImage(f"presets/example_01/gen_{int(now)}_{job_id[:24]}.png", "3",
                                            f"presets/example_01/gen_{int(now)}_{job_id[:24]}.webp"),)
                        if state is State.DONE else (),
                        submitted_at=now - 0.9 if finished else None, started_at=now - 0.8 if finished else None,
                        finished_at=now if finished else None, attempts=1 if finished else 0,
                    ))
                    ids.append(job_id)
                await store.add_jobs(batch)
    finally:
        await store.close()
    return ids


# --- API clients -----------------------------------------------------------------------------

async def generate(http: aiohttp.ClientSession, base: str, slug: str, body: dict[str, Any]) -> list[str]:
    async with http.post(f"{base}/api/v1/generate/{slug}", json=body, headers=HEADERS) as resp:
        data = await resp.json()
        if resp.status != 202:
            raise RuntimeError(f"generate answered {resp.status}: {data}")
    return [j["job_id"] for j in data["jobs"]]


@dataclass
class SseEvent:
    event: str
    data: Any
    at: float
    """time.time() when it was read."""


async def sse(http: aiohttp.ClientSession, url: str, *, opened: asyncio.Event | None = None
              ) -> AsyncIterator[SseEvent]:
    """Server-Sent Events of one stream, as parsed events (comments skipped); `opened` is set
    once the stream has answered."""
    async with http.get(url, headers=HEADERS) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url} answered {resp.status}: {await resp.text()}")
        if opened is not None:
            opened.set()
        event, data = "message", []
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if not line:
                if data:
                    yield SseEvent(event, json.loads("\n".join(data)), time.time())
                event, data = "message", []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())


async def comfy_times(http: aiohttp.ClientSession, comfy_url: str,
                      prompt_ids: Sequence[str]) -> dict[str, tuple[float, float, bool]]:
    """(execution_start, end, succeeded) in seconds of each prompt, from ComfyUI's history."""
    found: dict[str, tuple[float, float, bool]] = {}
    limit = asyncio.Semaphore(8)

    async def one(pid: str) -> None:
        async with limit, http.get(f"{comfy_url}/history/{pid}") as resp:
            entry = (await resp.json()).get(pid)
        if not entry:
            return
        marks = {event: data.get("timestamp") for event, data in entry.get("status", {}).get("messages", [])}
        end_event = next((e for e in ("execution_success", "execution_error", "execution_interrupted") if e in marks),
                         None)
        if "execution_start" in marks and end_event is not None:
            found[pid] = (marks["execution_start"] / 1000, marks[end_event] / 1000, end_event == "execution_success")

    await asyncio.gather(*(one(p) for p in prompt_ids))
    return found


def gaps(times: Iterable[tuple[float, float, bool]]) -> tuple[list[float], float]:
    """Idle gaps between one prompt's end and the next one's start, and the busy time in all."""
    spans = sorted((s, e) for s, e, _ in times)
    return [max(0.0, b[0] - a[1]) for a, b in itertools.pairwise(spans)], sum(e - s for s, e in spans)


def summary(values: Sequence[float], scale: float = 1000.0) -> tuple[float, float, float, float]:
    """(median, p95, p99, max) scaled (default: seconds to ms)."""
    if not values:
        return (0.0, 0.0, 0.0, 0.0)
    return (statistics.median(values) * scale, percentile(values, 95) * scale, percentile(values, 99) * scale,
            max(values) * scale)
