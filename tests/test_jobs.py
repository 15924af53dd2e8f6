from __future__ import annotations

import pytest

from gateway.jobs import Complete, Fail, InvalidTransition, Job, Requeue, Start, State, StoredImage, Submit, transition

IMG = (StoredImage("presets/x/a.png", "9"),)


def job(state: State = State.QUEUED) -> Job:
    return Job(id="j", preset="x", label="Preset: X", params={"seed": 1}, created_at=0.0, state=state)


@pytest.mark.parametrize(
    ("state", "event", "expected", "gaze"),
    [
        (State.QUEUED, Submit(1.0), State.SUBMITTED, "pending"),
        (State.SUBMITTED, Start(2.0), State.RUNNING, "processing"),
        (State.RUNNING, Start(3.0), State.RUNNING, "processing"),
        (State.RUNNING, Complete(4.0, IMG), State.DONE, "done"),
        (State.SUBMITTED, Complete(4.0, IMG), State.DONE, "done"),
        (State.SUBMITTED, Requeue(5.0), State.QUEUED, "pending"),
        (State.RUNNING, Requeue(5.0), State.QUEUED, "pending"),
        (State.QUEUED, Fail(6.0, "x"), State.FAILED, "failed"),
        (State.RUNNING, Fail(6.0, "x"), State.FAILED, "failed"),
        (State.DONE, Fail(7.0, "late"), State.DONE, "done"),
        (State.FAILED, Complete(7.0, IMG), State.FAILED, "failed"),
        (State.FAILED, Submit(7.0), State.FAILED, "failed"),
    ],
)
def test_transition(state: State, event: object, expected: State, gaze: str) -> None:
    after = transition(job(state), event)  # type: ignore[arg-type]
    assert after.state is expected
    assert after.gaze_status == gaze


@pytest.mark.parametrize(
    ("state", "event"),
    [(State.QUEUED, Start(1.0)), (State.QUEUED, Complete(1.0, IMG)), (State.SUBMITTED, Submit(1.0)),
     (State.QUEUED, Requeue(1.0)), (State.RUNNING, Complete(1.0, ()))],
)
def test_impossible_transitions_raise(state: State, event: object) -> None:
    with pytest.raises(InvalidTransition):
        transition(job(state), event)  # type: ignore[arg-type]


def test_timestamps_and_attempts() -> None:
    j = transition(job(), Submit(1.0))
    assert (j.submitted_at, j.attempts) == (1.0, 1)
    j = transition(transition(j, Requeue(2.0)), Submit(3.0))
    assert (j.submitted_at, j.started_at, j.attempts) == (3.0, None, 2)
    done = transition(transition(j, Start(4.0)), Complete(5.0, IMG))
    assert (done.started_at, done.finished_at, done.images, done.seed) == (4.0, 5.0, IMG, 1)
    j = transition(transition(j, Requeue(6.0)), Submit(7.0))
    assert j.attempts == 3
    j = transition(transition(j, Requeue(8.0, reached_comfy=False)), Submit(9.0))
    assert j.attempts == 3  # a submission that never reached ComfyUI is not an attempt
    failed = transition(job(), Fail(9.0, "boom"))
    assert (failed.error, failed.finished_at) == ("boom", 9.0)
