"""The GAZE guide's own examples, run unchanged but for HOST and API_KEY, against the gateway."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import API_KEY, Gateway
from tests.helpers import DATA

EXAMPLES = DATA / "gaze"


def substituted(name: str, gateway: Gateway, tmp_path: Path) -> Path:
    host = str(gateway.client.make_url("")).rstrip("/")
    text = (EXAMPLES / name).read_text()
    text = text.replace("http://localhost:5782", host).replace("your-key-here", API_KEY)
    script = tmp_path / name
    script.write_text(text)
    return script


async def run(*argv: str) -> tuple[int, str]:
    """Exit status and standard output (curl's progress meter goes to standard error)."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode() + ("" if proc.returncode == 0 else err.decode())


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_bash_example_waits_until_done_and_the_image_downloads(gateway: Gateway, tmp_path: Path) -> None:
    status, out = await run("bash", str(substituted("wait_for_one.sh", gateway, tmp_path)))
    assert status == 0, out
    record = json.loads(out[out.index("{"):])
    assert record["status"] == "done", out
    url = str(gateway.client.make_url(record["result"]["image_url"]))
    data = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
    assert data.startswith(b"\x89PNG")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_bash_reproduce_example_is_accepted(gateway: Gateway, tmp_path: Path) -> None:
    status, out = await run("bash", str(substituted("reproduce.sh", gateway, tmp_path)))
    assert status == 0, out
    job_id = json.loads(out)["jobs"][0]["job_id"]
    record = await gateway.wait(job_id)
    assert record["result"]["seed"] == 927640517599332


@pytest.mark.skipif(importlib.util.find_spec("requests") is None, reason="requests is not installed")
async def test_python_example(gateway: Gateway, tmp_path: Path) -> None:
    status, out = await run(sys.executable, str(substituted("example.py", gateway, tmp_path)))
    assert status == 0, out
    assert "Status: done" in out
    assert "Image: http://" in out and "Seed: " in out
