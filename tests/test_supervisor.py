"""The ComfyUI supervisor, for real: a stand-in ComfyUI (tests/data/comfy_standin.py) as its child."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.api.state import SUPERVISOR
from gateway.app import create_app
from gateway.backoff import Backoff
from gateway.errors import ConfigError
from gateway.models import ManagedComfyUI
from gateway.settings import Settings
from gateway.supervisor import Supervisor, check_install, comfyui_command
from tests.helpers import DATA

STANDIN = DATA / "comfy_standin.py"
QUICK = Backoff(first=0.01, factor=2.0, cap=0.04, forgive_after=3600.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def gone(pid: int) -> bool:
    """True when the process no longer exists (or is a zombie nobody has reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return True


async def until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what} after {timeout} s")
        await asyncio.sleep(0.01)


async def get(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        data: dict[str, Any] = await resp.json()
        return data


class Child:
    """A supervisor around the stand-in, with every status it went through."""

    def __init__(self, tmp_path: Path, *args: str, backoff: Backoff = QUICK, grace: float = 5.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.seen: list[ManagedComfyUI] = []
        self.supervisor = Supervisor(
            command=[sys.executable, str(STANDIN), "--port", str(self.port), *args], cwd=tmp_path,
            health_url=f"{self.url}/system_stats", log_path=tmp_path / "logs" / "comfyui.log",
            backoff=backoff, grace=grace, poll_interval=0.02, on_change=self.seen.append,
        )

    @property
    def status(self) -> ManagedComfyUI:
        return self.supervisor.status

    async def running(self, restarts: int = 0) -> ManagedComfyUI:
        await until(lambda: self.status.state == "running" and self.status.restarts == restarts,
                    f"running after {restarts} restarts")
        return self.status


@pytest.fixture
async def child_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Child]]:
    made: list[Child] = []

    def make(*args: str, **kwargs: Any) -> Child:
        child = Child(tmp_path, *args, **kwargs)
        made.append(child)
        child.supervisor.start()
        return child

    yield make
    for child in made:
        await child.supervisor.stop()


async def test_starts_the_child_and_waits_until_it_answers(child_factory: Callable[..., Child],
                                                            tmp_path: Path) -> None:
    child = child_factory()
    status = await child.running()
    assert [s.state for s in child.seen] == ["starting", "running"]
    stats = await get(f"{child.url}/system_stats")
    assert stats["system"]["pid"] == status.pid
    assert stats["system"]["cwd"] == str(tmp_path)
    log_text = (tmp_path / "logs" / "comfyui.log").read_text()
    assert "starting: " in log_text and f"stand-in ComfyUI pid {status.pid}" in log_text


async def test_a_dead_child_is_started_again(child_factory: Callable[..., Child]) -> None:
    child = child_factory()
    first = await child.running()
    await get(f"{child.url}/exit?code=3")
    second = await child.running(restarts=1)
    assert second.pid != first.pid and first.pid is not None and gone(first.pid)
    restarting = [s for s in child.seen if s.state == "restarting"]
    assert [(s.message, s.pid, s.restarts) for s in restarting] == [
        ("exited with code 3; starting again in 0.01 s", None, 1)]


async def test_a_crash_loop_backs_off_up_to_the_cap(child_factory: Callable[..., Child]) -> None:
    child = child_factory("--crash", "5")
    await until(lambda: child.status.restarts >= 5, "restarted five times")
    delays = [s.message for s in child.seen if s.state == "restarting"][:5]
    assert delays == [f"exited with code 5; starting again in {d} s" for d in ("0.01", "0.02", "0.04", "0.04", "0.04")]
    assert "running" not in {s.state for s in child.seen}


@pytest.mark.parametrize(("forgive_after", "second_delay"), [(0.0, "0.01"), (3600.0, "0.02")])
async def test_a_healthy_period_resets_the_backoff(child_factory: Callable[..., Child], forgive_after: float,
                                                   second_delay: str) -> None:
    child = child_factory(backoff=replace(QUICK, forgive_after=forgive_after))
    await child.running()
    await get(f"{child.url}/exit?code=1")
    await child.running(restarts=1)
    await get(f"{child.url}/exit?code=1")
    await child.running(restarts=2)
    delays = [s.message.rsplit(" in ", 1)[1] for s in child.seen if s.state == "restarting"]
    assert delays == ["0.01 s", f"{second_delay} s"]


async def test_stop_ends_the_whole_process_group(child_factory: Callable[..., Child], tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    child = child_factory("--grandchild", str(pidfile))
    status = await child.running()
    grandchild = int(pidfile.read_text())
    assert status.pid is not None and not gone(grandchild)
    await child.supervisor.stop()
    assert (child.status.state, child.status.message, child.status.pid) == (
        "stopped", "stopped (killed by signal 15)", None)
    assert gone(status.pid)
    await until(lambda: gone(grandchild), "gone (the grandchild)", timeout=5)


async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(
        child_factory: Callable[..., Child]) -> None:
    child = child_factory("--ignore-sigterm", grace=0.2)
    status = await child.running()
    await child.supervisor.stop()
    assert child.status.message == "stopped (killed by signal 9)"
    assert status.pid is not None and gone(status.pid)


async def test_a_command_that_cannot_run_fails_without_retrying(tmp_path: Path) -> None:
    supervisor = Supervisor(command=[str(tmp_path / "no-such-python")], cwd=tmp_path,
                            health_url="http://127.0.0.1:9/system_stats", log_path=tmp_path / "c.log")
    supervisor.start()
    await until(lambda: supervisor.status.state == "failed", "failed")
    assert "cannot start" in supervisor.status.message and "no-such-python" in supervisor.status.message
    await supervisor.stop()
    assert supervisor.status.state == "stopped"


async def test_the_gateways_settings_are_not_passed_on(child_factory: Callable[..., Child],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_API_KEY", "secret")
    child = child_factory()
    await child.running()
    assert (await get(f"{child.url}/system_stats"))["system"]["gateway_env"] == []


@pytest.mark.parametrize("extra", [(), ("--cpu",), ("--lowvram", "--preview-method", "auto")])
def test_the_comfyui_command_line(tmp_path: Path, extra: tuple[str, ...]) -> None:
    python = tmp_path / "venv" / "bin" / "python"
    data = tmp_path / "data" / "comfyui"
    assert comfyui_command(python=python, port=8190, data_dir=data, extra_args=extra) == [
        str(python), "main.py", "--listen", "127.0.0.1", "--port", "8190",
        "--output-directory", str(data / "output"), "--temp-directory", str(data / "temp"),
        "--user-directory", str(data / "user"), "--input-directory", str(data / "input"),
        "--database-url", f"sqlite:///{data / 'user' / 'comfyui.db'}", *extra]


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    command = comfyui_command(python=Path("comfyui/venv/bin/python"), port=8188, data_dir=Path("data/comfyui"))
    assert command[0] == str(tmp_path / "comfyui/venv/bin/python")
    assert command[command.index("--output-directory") + 1] == str(tmp_path / "data/comfyui/output")


def test_an_unusable_install_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"GATEWAY_COMFYUI_DIR=.* has no main.py: run scripts/install-comfyui"):
        check_install(tmp_path, Path(sys.executable))
    (tmp_path / "main.py").write_text("")
    with pytest.raises(ConfigError, match=r"GATEWAY_COMFYUI_PYTHON=.* is not an executable file"):
        check_install(tmp_path, tmp_path / "main.py")
    check_install(tmp_path, Path(sys.executable))


@pytest.fixture
def managed(tmp_path: Path) -> Settings:
    comfy_dir = tmp_path / "ComfyUI"
    comfy_dir.mkdir()
    shutil.copy(STANDIN, comfy_dir / "main.py")
    port = free_port()
    return Settings(comfyui_managed=True, comfyui_dir=comfy_dir, comfyui_python=Path(sys.executable),
                    comfyui_port=port, comfyui_url=f"http://127.0.0.1:{port}", data_dir=tmp_path / "data",
                    api_key="k")


async def test_the_gateway_runs_its_comfyui_while_it_runs(managed: Settings) -> None:
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(managed)))
    await client.start_server()
    try:
        supervisor = client.app[SUPERVISOR]
        await until(lambda: supervisor.status.state == "running", "running")
        stats = await get(f"{managed.comfyui_url}/system_stats")
        argv = stats["system"]["argv"]
        data = managed.data_dir.resolve() / "comfyui"
        assert argv[argv.index("--listen") + 1] == "127.0.0.1"
        assert argv[argv.index("--user-directory") + 1] == str(data / "user")
        assert all((data / name).is_dir() for name in ("output", "temp", "user", "input"))
        resp = await client.get("/readyz")  # the stand-in has no websocket, so never ready
        body = await resp.json()
        assert resp.status == 503
        assert body["error"]["message"].startswith("the managed ComfyUI is running: answering on")
        assert body["error"]["comfyui"]["pid"] == supervisor.status.pid
    finally:
        await client.close()
    assert supervisor.status.state == "stopped"
    assert gone(stats["system"]["pid"])


def test_the_gateway_refuses_to_manage_a_missing_install(managed: Settings) -> None:
    with pytest.raises(ConfigError, match=r"has no main\.py"):
        create_app(replace(managed, comfyui_dir=managed.comfyui_dir / "nowhere"))
