"""Run ComfyUI as a child process of the gateway and keep it running.

    starting ──answers its health URL──> running
       │                                    │
       └──────────── dies ──────────────────┴──> restarting ──(backoff)──> starting
    any ──stop()──> stopped            cannot be started at all ──> failed

The child gets its own session, so it and everything it starts form one process group: a stop
sends SIGTERM to the group, then SIGKILL after a grace period, and nothing is left behind. Its
output goes to a log file; the gateway's own settings (its API key among them) are not passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import aiohttp

from gateway.backoff import Backoff, describe_exit
from gateway.errors import ConfigError
from gateway.models import ManagedComfyUI, ManagedState

log = logging.getLogger("gateway.supervisor")

LOG_ROTATE_BYTES = 10 * 1024 * 1024
HEALTH_PATH = "/system_stats"


def comfyui_folders(data_dir: Path) -> dict[str, Path]:
    """ComfyUI's per-instance folders (by the flag that sets each), under the gateway's data dir."""
    root = data_dir.resolve()
    return {f"--{name}-directory": root / name for name in ("output", "temp", "user", "input")}


def comfyui_command(*, python: Path, port: int, data_dir: Path, extra_args: Sequence[str] = ()) -> list[str]:
    """The command line that starts ComfyUI's `main.py` (run from the ComfyUI folder).

    Its database goes to its own user folder too: by default ComfyUI keeps it in the ComfyUI
    folder, which another ComfyUI started from the same folder would share."""
    folders = comfyui_folders(data_dir)
    flags = [part for flag, path in folders.items() for part in (flag, str(path))]
    database = f"sqlite:///{folders['--user-directory'] / 'comfyui.db'}"
    return [str(python.absolute()), "main.py", "--listen", "127.0.0.1", "--port", str(port), *flags,
            "--database-url", database, *extra_args]


def check_install(comfy_dir: Path, python: Path) -> None:
    """Refuse, with what to do about it, a ComfyUI folder or interpreter that cannot work."""
    hint = "run scripts/install-comfyui, or point GATEWAY_COMFYUI_DIR and GATEWAY_COMFYUI_PYTHON at an install"
    if not (comfy_dir / "main.py").is_file():
        raise ConfigError(f"GATEWAY_COMFYUI_DIR={str(comfy_dir)!r} has no main.py: {hint}")
    if not (python.is_file() and os.access(python, os.X_OK)):
        raise ConfigError(f"GATEWAY_COMFYUI_PYTHON={str(python)!r} is not an executable file: {hint}")


class Supervisor:
    """Starts `command` in `cwd`, waits until `health_url` answers 200, starts it again with
    `backoff` whenever it dies, and stops it (with its whole process group) on `stop()`."""

    def __init__(
        self,
        *,
        command: Sequence[str],
        cwd: Path,
        health_url: str,
        log_path: Path,
        backoff: Backoff | None = None,
        grace: float = 15.0,
        poll_interval: float = 0.5,
        on_change: Callable[[ManagedComfyUI], None] | None = None,
    ) -> None:
        self._command = list(command)
        self._cwd = cwd
        self._health_url = health_url
        self._log_path = log_path
        self._backoff = backoff or Backoff()
        self._grace = grace
        self._poll = poll_interval
        self._on_change = on_change
        self._status = ManagedComfyUI(state="stopped", message="not started")
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def status(self) -> ManagedComfyUI:
        return self._status

    @property
    def log_path(self) -> Path:
        return self._log_path

    def start(self) -> None:
        """Begin supervising; returns at once (the status says when the child is running)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="comfyui-supervisor")

    async def stop(self) -> None:
        """Stop supervising and end the child: SIGTERM to its group, SIGKILL after the grace period."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        proc, self._proc = self._proc, None
        if proc is None:
            self._set("stopped", "stopped", pid=None)
            return
        if proc.returncode is None:
            self._set(self._status.state, f"stopping (SIGTERM, SIGKILL after {self._grace:g} s)")
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(self._grace):
                    await proc.wait()
            except TimeoutError:
                log.warning("ComfyUI did not stop within %g s of SIGTERM; sending SIGKILL", self._grace)
                _signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
        _signal_group(proc.pid, signal.SIGKILL)  # whatever it started and left behind
        assert proc.returncode is not None
        self._set("stopped", f"stopped ({describe_exit(proc.returncode)})", pid=None)
        log.info("ComfyUI %s", self._status.message)

    async def _run(self) -> None:
        failures = 0
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    proc = await self._spawn()
                except OSError as exc:
                    self._set("failed", f"cannot start {self._command[0]}: {exc}", pid=None)
                    log.error("ComfyUI cannot be started: %s", exc)
                    return
                self._set("starting", f"started; waiting for {HEALTH_PATH} to answer", pid=proc.pid)
                healthy_since = await self._wait_healthy(session, proc)
                if healthy_since is not None:
                    self._set("running", f"answering on {self._health_url}")
                    log.info("ComfyUI is running (pid %d)", proc.pid)
                code = await proc.wait()
                _signal_group(proc.pid, signal.SIGKILL)
                self._proc = None
                healthy_for = None if healthy_since is None else time.monotonic() - healthy_since
                failures = self._backoff.failures_after(failures, healthy_for)
                delay = self._backoff.delay(failures)
                message = f"{describe_exit(code)}; starting again in {delay:g} s"
                self._set("restarting", message, pid=None, restarts=self._status.restarts + 1)
                log.warning("ComfyUI %s (its output is in %s)", message, self._log_path)
                await asyncio.sleep(delay)

    async def _spawn(self) -> asyncio.subprocess.Process:
        output = self._open_log()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self._command, cwd=self._cwd, env=_child_environment(), stdin=asyncio.subprocess.DEVNULL,
                stdout=output, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )
        finally:
            output.close()
        return self._proc

    def _open_log(self) -> IO[bytes]:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log_path.exists() and self._log_path.stat().st_size > LOG_ROTATE_BYTES:
            self._log_path.replace(self._log_path.with_name(self._log_path.name + ".1"))
        output = self._log_path.open("ab")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        output.write(f"--- {stamp} starting: {shlex.join(self._command)}\n".encode())
        output.flush()
        return output

    async def _wait_healthy(self, session: aiohttp.ClientSession, proc: asyncio.subprocess.Process) -> float | None:
        """The moment the health URL first answered 200, or None if the process died before."""
        while proc.returncode is None:
            if await self._answers(session):
                return time.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll):
                    await proc.wait()
        return None

    async def _answers(self, session: aiohttp.ClientSession) -> bool:
        try:
            async with session.get(self._health_url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    def _set(self, state: ManagedState, message: str, **changes: int | None) -> None:
        self._status = self._status.model_copy(update={"state": state, "message": message, **changes})
        if self._on_change is not None:
            self._on_change(self._status)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _child_environment() -> dict[str, str]:
    # The gateway's settings (GATEWAY_API_KEY among them) are none of ComfyUI's business.
    env = {name: value for name, value in os.environ.items() if not name.startswith("GATEWAY_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env
