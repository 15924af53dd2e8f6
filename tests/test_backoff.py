"""The restart policy of the ComfyUI supervisor, by table."""

from __future__ import annotations

import pytest

from gateway.backoff import Backoff, describe_exit

POLICY = Backoff(first=1.0, factor=2.0, cap=30.0, forgive_after=60.0)


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (7, 30.0), (10_000, 30.0)],
)
def test_delay_doubles_up_to_the_cap(failures: int, delay: float) -> None:
    assert POLICY.delay(failures) == delay


@pytest.mark.parametrize(
    ("failures", "healthy_for", "after"),
    [
        (0, None, 1),       # died before it ever answered
        (3, None, 4),       # a crash loop keeps counting
        (3, 10.0, 4),       # healthy, but not for long enough
        (3, 59.9, 4),
        (3, 60.0, 1),       # healthy for the whole period: a first failure again
        (9, 3600.0, 1),
        (0, 3600.0, 1),
    ],
)
def test_a_healthy_period_forgives_earlier_failures(failures: int, healthy_for: float | None, after: int) -> None:
    assert POLICY.failures_after(failures, healthy_for) == after


def test_a_constant_policy_never_grows() -> None:
    steady = Backoff(first=5.0, factor=1.0, cap=5.0)
    assert [steady.delay(n) for n in range(1, 5)] == [5.0, 5.0, 5.0, 5.0]


@pytest.mark.parametrize(
    "kwargs",
    [{"first": 0.0}, {"factor": 0.5}, {"first": 10.0, "cap": 5.0}, {"forgive_after": -1.0}],
)
def test_inconsistent_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="inconsistent backoff"):
        Backoff(**kwargs)


@pytest.mark.parametrize(
    ("code", "words"),
    [(0, "exited with code 0"), (3, "exited with code 3"), (-9, "killed by signal 9"), (-15, "killed by signal 15")],
)
def test_exit_statuses_read_as_words(code: int, words: str) -> None:
    assert describe_exit(code) == words
