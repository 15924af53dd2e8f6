"""scripts/install-comfyui, offline: its arguments and, with --dry-run, the commands it would run."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

SCRIPT = ROOT / "scripts" / "install-comfyui"


def install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, check=False, timeout=30)


def commands(output: str) -> list[list[str]]:
    return [shlex.split(line[2:]) for line in output.splitlines() if line.startswith("+ ")]


def test_a_fresh_install_clones_the_pinned_release_and_installs_the_cuda_build() -> None:
    result = install("--dry-run")
    assert result.returncode == 0, result.stderr
    clone, venv, pip, torch, requirements = commands(result.stdout)
    assert clone[0] == "git" and "clone" in clone
    assert clone[-4:] == ["--branch", "v0.8.0", "https://github.com/Comfy-Org/ComfyUI.git", "comfyui/ComfyUI"]
    assert venv == ["python3", "-m", "venv", "comfyui/venv"]
    assert pip[-3:] == ["install", "--upgrade", "pip"]
    assert torch[:6] == ["comfyui/venv/bin/python", "-m", "pip", "install", "--index-url",
                         "https://download.pytorch.org/whl/cu128"]
    assert torch[6:] == ["torch==2.9.1", "torchvision==0.24.1", "torchaudio==2.9.1"]
    assert requirements[4:] == ["-r", "comfyui/ComfyUI/requirements.txt", *torch[6:]]
    assert "GATEWAY_COMFYUI_MANAGED=1" in result.stdout
    assert "GATEWAY_COMFYUI_DIR" not in result.stdout  # the defaults need no setting
    assert not (ROOT / "comfyui" / "venv").exists()  # a dry run changes nothing


def test_cpu_takes_the_cpu_build_and_tells_comfyui_so() -> None:
    result = install("--cpu", "--dry-run")
    assert result.returncode == 0, result.stderr
    torch = commands(result.stdout)[3]
    assert torch[torch.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    assert "GATEWAY_COMFYUI_ARGS=--cpu" in result.stdout


def test_other_folders_are_quoted_and_reported(tmp_path: Path) -> None:
    target, venv = tmp_path / "my comfy", tmp_path / "v env"
    result = install("--dry-run", "--dir", str(target), "--venv", str(venv), "--python", sys.executable)
    assert result.returncode == 0, result.stderr
    clone, make_venv, *_ = commands(result.stdout)
    assert clone[-1] == str(target) and make_venv == [sys.executable, "-m", "venv", str(venv)]
    settings = dict(shlex.split(line.rstrip(" \\"))[0].split("=", 1) for line in result.stdout.splitlines()
                    if line.strip().startswith("GATEWAY_"))
    assert settings == {"GATEWAY_COMFYUI_MANAGED": "1", "GATEWAY_COMFYUI_DIR": str(target),
                        "GATEWAY_COMFYUI_PYTHON": str(venv / "bin" / "python")}


def test_an_existing_checkout_is_moved_to_the_pinned_release(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    cmds = commands(install("--dry-run", "--dir", str(tmp_path)).stdout)
    assert cmds[0] == ["git", "-C", str(tmp_path), "fetch", "--depth", "1", "origin", "tag", "v0.8.0"]
    assert cmds[1][0] == "git" and cmds[1][-2:] == ["checkout", "v0.8.0"]


def test_an_existing_install_is_used_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("")
    result = install("--use", str(tmp_path), "--comfy-python", sys.executable, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert commands(result.stdout) == []
    assert f"GATEWAY_COMFYUI_PYTHON={sys.executable}" in result.stdout


def test_an_existing_install_can_get_its_own_venv(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("")
    cmds = commands(install("--use", str(tmp_path), "--cpu", "--dry-run").stdout)
    assert [c[3:5] for c in cmds[1:]] == [["install", "--upgrade"], ["install", "--index-url"], ["install", "-r"]]
    assert cmds[-1][5] == str(tmp_path / "requirements.txt")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unknown argument: --bogus"),
        (["--dir"], "--dir needs a value"),
        (["--use", "--cpu"], "--use needs a value"),
        (["--use", "/nonexistent/comfy"], "/nonexistent/comfy has no main.py"),
        (["--comfy-python", sys.executable], "--comfy-python goes with --use PATH"),
        (["--dir", "README.md"], "README.md exists but is not a git checkout"),
    ],
)
def test_bad_arguments_are_refused_with_a_reason(args: list[str], message: str) -> None:
    result = install("--dry-run", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert commands(result.stdout) == []


def test_help() -> None:
    result = install("--help")
    assert result.returncode == 0
    assert "Usage: scripts/install-comfyui" in result.stdout and "--dry-run" in result.stdout
