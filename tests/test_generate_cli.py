"""`comfy-gateway generate` against a running gateway: saved images, one-line errors, Ctrl-C cancels."""

from __future__ import annotations

import asyncio
import io
import re
import signal
import sys
from pathlib import Path

import pytest
from rich.console import Console

from gateway.__main__ import main
from gateway.models import JobProgress, JobRecord
from gateway.sdk.events import JobUpdate, ProgressUpdate
from gateway.sdk.view import LiveView
from tests.conftest import API_KEY, Gateway
from tests.fake_comfy import FakeComfyUI
from tests.helpers import ROOT


def base_url(gateway: Gateway) -> str:
    return str(gateway.client.make_url("")).rstrip("/")


@pytest.fixture
def client_env(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> str:
    """The gateway's URL and key in the client's variables (the server's own are not read)."""
    monkeypatch.setenv("COMFY_GATEWAY_URL", base_url(gateway))
    monkeypatch.setenv("COMFY_GATEWAY_KEY", API_KEY)
    monkeypatch.setenv("GATEWAY_PORT", "not a port")  # a client ignores the server's settings
    return base_url(gateway)


def png(path: Path) -> bool:
    return path.read_bytes().startswith(b"\x89PNG")


async def generate(*args: str) -> int:
    return await asyncio.to_thread(main, ["generate", *args])


async def test_saves_images_and_prints_paths_and_seeds(client_env: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = await generate("example_01", "--count", "2", "--seed", "7", "--width", "64", "--height", "64",
                          "--out", str(out))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    assert len(lines) == 2, captured.out
    seeds = set()
    for line in lines:
        path, seed = re.fullmatch(r"(\S+)  seed (\d+)", line).groups()  # type: ignore[union-attr]
        assert Path(path).parent == out and png(Path(path))
        seeds.add(int(seed))
    assert seeds == {7, 8}
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(line.split()[0]).name for line in lines)
    assert re.search(r"^#1 [0-9a-f-]{36}: queued$", captured.err, re.MULTILINE)
    assert len(re.findall(r": done$", captured.err, re.MULTILINE)) == 2


async def test_flags_win_over_the_environment(client_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COMFY_GATEWAY_KEY", "wrong")
    monkeypatch.setenv("COMFY_GATEWAY_URL", "http://127.0.0.1:9")
    code = await generate("example_01", "--out", str(tmp_path), "--url", client_env, "--key", API_KEY)
    assert code == 0, capsys.readouterr().err


@pytest.mark.parametrize(("args", "env_key", "message"), [
    (["nope"], API_KEY, "comfy-gateway: 404 preset_not_found: no preset with slug 'nope'"),
    (["example_01", "--count", "99"], API_KEY, "comfy-gateway: 400 invalid_parameter: count: "),
    (["example_01", "--width", "64"], API_KEY, "comfy-gateway: 400 invalid_parameter: height: "),
    (["example_01", "--checkpoint", "x"], API_KEY, "comfy-gateway: 400 unsupported_parameter: "),
    (["example_01"], None, "comfy-gateway: 401 missing_api_key: "),
    (["example_01"], "wrong", "comfy-gateway: 403 invalid_api_key: "),
])
async def test_api_errors_are_one_line(client_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str], args: list[str], env_key: str | None,
                                       message: str) -> None:
    if env_key is None:
        monkeypatch.delenv("COMFY_GATEWAY_KEY")
    else:
        monkeypatch.setenv("COMFY_GATEWAY_KEY", env_key)
    code = await generate(*args, "--out", str(tmp_path / "out"))
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1, captured.err
    assert captured.err.startswith(message), captured.err
    assert captured.err.endswith("(give --key or set COMFY_GATEWAY_KEY)\n") == (env_key is None)
    assert not (tmp_path / "out").exists()


def test_connection_refused_is_one_line(unused_tcp_port: int, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}"
    assert main(["generate", "example_01", "--out", str(tmp_path), "--url", url, "--key", "k"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"comfy-gateway: cannot reach the gateway at {url}: ") and err.count("\n") == 1, err


async def test_a_failed_job_is_shown_and_exits_1(client_env: str, fake: FakeComfyUI, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    fake.fail_next(1, "out of memory")
    code = await generate("example_01", "--count", "2", "--width", "64", "--height", "64", "--out", str(tmp_path))
    captured = capsys.readouterr()
    assert code == 1
    assert len(captured.out.splitlines()) == 1  # the other job's image
    assert re.search(r"^#\d [0-9a-f-]{36}: failed: .*out of memory", captured.err, re.MULTILINE), captured.err


async def test_ctrl_c_cancels_the_jobs_it_started(gateway: Gateway, fake: FakeComfyUI, tmp_path: Path) -> None:
    fake.stall = True
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "generate", "example_01", "--count", "2", "--width", "64", "--height", "64",
        "--out", str(tmp_path), "--url", base_url(gateway), "--key", API_KEY,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    ids = []
    while len(ids) < 2:
        line = (await process.stderr.readline()).decode()
        assert line, "the command ended before starting its jobs"
        if match := re.fullmatch(r"#\d ([0-9a-f-]{36}): queued\n", line):
            ids.append(match.group(1))
    process.send_signal(signal.SIGINT)
    out, err = await process.communicate()
    assert process.returncode == 130, err
    assert "interrupted; cancelled 2 job(s)" in err.decode()
    assert b"Traceback" not in err and out == b""
    fake.release()
    for job_id in ids:
        assert (await gateway.wait(job_id))["error"] == "cancelled"


def test_live_view_draws_a_bar_per_job() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, color_system=None)
    record = JobRecord(id="j1", label="x", status="processing", error=None, result=None, preset="x", params={},
                       images=[], created_at="", started_at=None, finished_at=None)
    with LiveView(console) as view:
        view.add(1, "0123456789abcdef")
        view.update("0123456789abcdef", JobUpdate(record))
        view.update("0123456789abcdef", ProgressUpdate(JobProgress(step=5, total_steps=20, percent=25.0,
                                                                   node="3", node_type="KSampler")))
        view.saved(Path("out/a.png"), 42)
    text = screen.getvalue()
    assert "#1 01234567" in text and "step 5/20 KSampler" in text and "out/a.png  seed 42" in text
    assert "━" in text  # the bar


async def test_sampling_flags_and_loras_reach_the_job(lora_gateway: tuple[Gateway, FakeComfyUI], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    gateway, fake = lora_gateway
    code = await generate("sd15", "--checkpoint", "tiny.safetensors", "--width", "64", "--height", "64",
                          "--steps", "3", "--cfg", "4.5", "--sampler", "euler", "--scheduler", "karras",
                          "--lora", "detail.safetensors:0.5", "--lora", "style.safetensors", "--out", str(tmp_path),
                          "--url", base_url(gateway), "--key", API_KEY)
    assert code == 0, capsys.readouterr().err
    prompt = fake.submissions[-1]["prompt"]
    sampler = next(n["inputs"] for n in prompt.values() if n["class_type"] == "KSampler")
    assert (sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == (3, 4.5, "euler",
                                                                                                 "karras")
    loras = sorted((n["inputs"]["lora_name"], n["inputs"]["strength_model"]) for n in prompt.values()
                   if n["class_type"] == "LoraLoader")
    assert loras == [("detail.safetensors", 0.5), ("style.safetensors", 1.0)]


async def test_a_bad_lora_strength_is_refused_before_any_request(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        await generate("sd15", "--lora", "x.safetensors:strong", "--out", str(tmp_path))
    assert exited.value.code == 2 and "the strength after ':' must be a number" in capsys.readouterr().err
