"""Log formats: one JSON object a line, carrying the job a record is about."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from gateway.logs import JsonFormatter, formatter
from tests.conftest import Gateway
from tests.fake_comfy import FakeComfyUI
from tests.helpers import ROOT


def record(message: str = "job %s done", *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("gateway.dispatcher", logging.INFO, __file__, 1, message, args or ("j1",), None)
    rec.created = 1700000000.25
    for name, value in extra.items():
        setattr(rec, name, value)
    return rec


@pytest.mark.parametrize(("rec", "expected"), [
    (record(), {"ts": "2023-11-14T22:13:20.250Z", "level": "INFO", "logger": "gateway.dispatcher",
                "message": "job j1 done"}),
    (record(job_id="j1", prompt_id="j1"), {"ts": "2023-11-14T22:13:20.250Z", "level": "INFO",
                                           "logger": "gateway.dispatcher", "message": "job j1 done",
                                           "job_id": "j1", "prompt_id": "j1"}),
    (record("quote \" and\nnewline %s", "ü"), {"ts": "2023-11-14T22:13:20.250Z", "level": "INFO",
                                              "logger": "gateway.dispatcher", "message": "quote \" and\nnewline ü"}),
])
def test_json_records(rec: logging.LogRecord, expected: dict[str, object]) -> None:
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    assert json.loads(line) == expected


def test_a_traceback_stays_on_the_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = record()
        rec.exc_info = sys.exc_info()
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc"]


def test_formats_by_setting() -> None:
    assert isinstance(formatter("json"), JsonFormatter)
    assert not isinstance(formatter("text"), JsonFormatter)


def test_the_command_line_logs_json_when_configured() -> None:
    code = ("from gateway import logs; import logging; logs.configure('INFO', 'json'); "
            "logging.getLogger('gateway.x').info('job %s failed', 'j9', extra={'job_id': 'j9', 'prompt_id': 'j9'}); "
            "logging.getLogger('gateway.x').debug('hidden')")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["message"] == "job j9 failed" and entry["job_id"] == "j9" and entry["prompt_id"] == "j9"


async def test_the_dispatcher_tags_records_about_a_job(gateway: Gateway, fake: FakeComfyUI,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    fake.fail_next()
    with caplog.at_level(logging.INFO, logger="gateway"):
        [job_id] = await gateway.generate("example_01", {"width": 64, "height": 64})
        await gateway.wait(job_id)
    about = [r for r in caplog.records if getattr(r, "job_id", None) == job_id]
    assert about and all(getattr(r, "prompt_id", None) == job_id for r in about)
    assert any("failed" in r.getMessage() for r in about)
