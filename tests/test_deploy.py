"""compose.yaml and the Dockerfiles, checked without a Docker engine: what they reference exists,
the wiring is as the README says, and they pass hadolint (when it is installed: the test extra has it)."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT

COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
README = (ROOT / "README.md").read_text()


def build_context(service: str) -> Path:
    build = SERVICES[service]["build"]
    return ROOT / (build if isinstance(build, str) else build["context"])


def dockerfile(service: str) -> Path:
    build = SERVICES[service]["build"]
    name = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    return build_context(service) / name


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines()
                                        if not line.lstrip().startswith("#")))
    pairs = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def args_of(path: Path) -> dict[str, str]:
    return dict(rest.split("=", 1) for word, rest in instructions(path) if word == "ARG" and "=" in rest)


def env_of(path: Path) -> dict[str, str]:
    pairs = [pair for word, rest in instructions(path) if word == "ENV" for pair in re.split(r"\s+(?=\w+=)", rest)]
    return dict(pair.split("=", 1) for pair in pairs)


def ignored(context: Path, relative: str) -> bool:
    """Whether .dockerignore keeps `relative` (or a folder above it) out of the build context."""
    rules = [line.strip() for line in (context / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    parts = Path(relative).parts
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    verdict = False
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatch(c, pattern) for c in candidates):
            verdict = not negate
    return verdict


def copied_sources(path: Path) -> list[str]:
    sources = []
    for word, rest in instructions(path):
        if word not in ("COPY", "ADD"):
            continue
        words = [w for w in rest.split() if not w.startswith("--")]
        if "--from=" in rest or words[0].startswith(("http://", "https://")):
            continue
        sources += words[:-1]
    return sources


@pytest.mark.parametrize("service", ["comfyui", "gateway"])
def test_every_referenced_file_exists_and_reaches_the_build(service: str) -> None:
    context, file = build_context(service), dockerfile(service)
    assert context.is_dir() and file.is_file() and (context / ".dockerignore").is_file()
    for source in copied_sources(file):
        assert (context / source).exists(), f"{file.name} copies {source}, which does not exist"
        assert not ignored(context, source), f"{source} is excluded by .dockerignore"
    for volume in SERVICES[service].get("volumes", []):
        host = volume.split(":")[0]
        if host.startswith("."):
            continue  # a bind mount the operator creates (./models)
        assert host in COMPOSE["volumes"], f"volume {host} is not declared"


def test_the_dockerignore_reading_is_right() -> None:
    context = build_context("gateway")
    assert not ignored(context, "gateway/app.py")
    assert ignored(context, ".venv/bin/python")
    assert ignored(context, "data/gateway.db")
    assert ignored(build_context("comfyui"), "ComfyUI/main.py")


def test_comfyui_has_the_gpu_and_stays_inside_the_network() -> None:
    comfy = SERVICES["comfyui"]
    assert "ports" not in comfy
    assert comfy["expose"] == ["8188"]
    devices = comfy["deploy"]["resources"]["reservations"]["devices"]
    assert {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]} in devices
    targets = {v.split(":")[1] for v in comfy["volumes"]}
    assert targets == {f"/opt/ComfyUI/{name}" for name in ("models", "input", "output", "custom_nodes", "user")}
    assert any(v.startswith("./models:") for v in comfy["volumes"])
    assert "http://127.0.0.1:8188/system_stats" in healthcheck_code("comfyui")


def test_the_gateway_is_published_and_waits_for_a_healthy_comfyui() -> None:
    gateway = SERVICES["gateway"]
    assert gateway["ports"] == ["5782:5782"]
    assert gateway["environment"]["GATEWAY_COMFYUI_URL"] == "http://comfyui:8188"
    assert gateway["depends_on"] == {"comfyui": {"condition": "service_healthy"}}
    assert "http://127.0.0.1:5782/readyz" in healthcheck_code("gateway")
    env = env_of(dockerfile("gateway"))
    targets = {v.split(":")[1] for v in gateway["volumes"]}
    assert targets == {env["GATEWAY_DATA_DIR"], str(Path(env["GATEWAY_PRESETS"]).parent)}


def healthcheck_code(service: str) -> str:
    test = SERVICES[service]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    ast.parse(test[3])  # a healthcheck that cannot even run would never pass
    code: str = test[3]
    return code


@pytest.mark.parametrize("service", ["comfyui", "gateway"])
def test_images_run_as_a_user_other_than_root(service: str) -> None:
    users = [rest for word, rest in instructions(dockerfile(service)) if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_the_gateway_image_serves_the_way_the_readme_says() -> None:
    cmd = json.loads(next(rest for word, rest in instructions(dockerfile("gateway")) if word == "CMD"))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert cmd[0] in scripts
    assert " ".join(cmd) in README
    assert "EXPOSE 5782" in dockerfile("gateway").read_text()


def test_comfyui_listens_where_the_healthcheck_and_the_gateway_look() -> None:
    cmd = json.loads(next(rest for word, rest in instructions(dockerfile("comfyui")) if word == "CMD"))
    assert cmd[cmd.index("--port") + 1] == "8188" and cmd[cmd.index("--listen") + 1] == "0.0.0.0"


def test_the_pins_agree_with_the_install_script_and_the_readme() -> None:
    args = args_of(dockerfile("comfyui"))
    script = (ROOT / "scripts" / "install-comfyui").read_text()
    for name in ("COMFYUI_VERSION", "TORCH_VERSION", "TORCHVISION_VERSION", "TORCHAUDIO_VERSION"):
        assert re.search(rf"^{name}={re.escape(args[name])}$", script, re.MULTILINE), name
    assert re.search(rf"^CUDA_INDEX_URL={re.escape(args['TORCH_INDEX_URL'])}$", script, re.MULTILINE)
    assert f"ComfyUI {args['COMFYUI_VERSION']}" in README


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]' brings it)")
    return found


@pytest.mark.parametrize("service", ["comfyui", "gateway"])
def test_dockerfiles_pass_hadolint(service: str) -> None:
    result = subprocess.run([tool("hadolint"), "--no-color", str(dockerfile(service))],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_scripts_pass_shellcheck() -> None:
    scripts = ["scripts/install-comfyui", "scripts/serve", "scripts/test"]
    result = subprocess.run([tool("shellcheck"), "-x", *scripts], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
