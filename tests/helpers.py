"""Small things several test modules share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
WORKFLOWS = ROOT / "workflows"


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def workflow(name: str) -> dict[str, dict[str, Any]]:
    return load_json(WORKFLOWS / name)
