"""The dispatcher's pure rules on jobs in flight, as tables."""

from __future__ import annotations

import pytest

from gateway.comfy.protocol import OutputImage
from gateway.dispatch.inflight import Tracked, deadline, expected_checkpoint, results_to_keep, watch_interval
from gateway.jobs import Job


def tracked(checkpoint: str | None = None, submitted_at: float = 100.0, started_at: float | None = None) -> Tracked:
    params: dict[str, str | int | float | bool] = {"checkpoint": checkpoint} if checkpoint else {}
    job = Job(id="j", preset="sd15", label="SD", params=params, created_at=0.0)
    return Tracked(job, submitted_at, started_at=started_at)


@pytest.mark.parametrize(("started_at", "timeout", "in_flight", "expected"), [
    (150.0, 60.0, 2, 210.0),  # running: its own timeout from its start
    (None, 60.0, 2, 280.0),   # waiting behind others: the timeouts of all that may run first
    (None, 10.0, 1, 120.0),
])
def test_deadline(started_at: float | None, timeout: float, in_flight: int, expected: float) -> None:
    assert deadline(tracked(started_at=started_at), timeout, in_flight) == expected


@pytest.mark.parametrize(("timeouts", "job_timeout", "stale_after", "expected"), [
    ([], 600.0, 10.0, 1.0),
    ([2.0], 600.0, 10.0, 0.5),
    ([0.0, 40.0], 600.0, 10.0, 1.0),  # no timeout (0) is no deadline
    ([], 1.0, 10.0, 0.25),
    ([], 600.0, 0.4, 0.2),
])
def test_watch_interval(timeouts: list[float], job_timeout: float, stale_after: float, expected: float) -> None:
    assert watch_interval(timeouts, job_timeout, stale_after) == expected


OUT = OutputImage("a.png", "", "output", "9")
OUT2 = OutputImage("b.png", "", "output", "10")
TEMP = OutputImage("p.png", "", "temp", "12")


@pytest.mark.parametrize(("images", "kept"), [
    ([TEMP, OUT, OUT2], [OUT, OUT2]),  # saved outputs only
    ([TEMP], [TEMP]),                   # a workflow that only previews
    ([], []),
])
def test_results_to_keep(images: list[OutputImage], kept: list[OutputImage]) -> None:
    assert results_to_keep(images) == kept


@pytest.mark.parametrize(("in_flight", "loaded", "expected"), [
    ([], "a.safetensors", "a.safetensors"),
    ([None], "a.safetensors", "a.safetensors"),
    (["b.safetensors", None], "a.safetensors", "b.safetensors"),  # the newest with a checkpoint
    (["b.safetensors", "c.safetensors"], None, "c.safetensors"),
])
def test_expected_checkpoint(in_flight: list[str | None], loaded: str | None, expected: str | None) -> None:
    assert expected_checkpoint([tracked(c) for c in in_flight], loaded) == expected
