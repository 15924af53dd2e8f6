"""The benchmark scripts start: each imports the gateway's modules by name, so a renamed class or
function would otherwise only show when someone next measures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
BENCH_COMMANDS = ["overhead", "api", "memory", "latency", "sse", "status"]


@pytest.mark.parametrize(
    "argv",
    [["bench.py", "--help"], ["bench_affinity.py", "--help"], ["bench_backends.py", "--help"]]
    + [["bench.py", command, "--help"] for command in BENCH_COMMANDS],
    ids=lambda argv: " ".join(argv[:-1]),
)
def test_bench_script_starts(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
