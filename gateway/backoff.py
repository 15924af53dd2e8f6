"""When to start a dead process again: exponential backoff, capped, forgiven after a healthy run.

Pure: the supervisor asks it for numbers and does the waiting itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """`first`, then `first * factor`, ... seconds between starts, never more than `cap`.

    A process that stayed healthy for `forgive_after` seconds before it died is treated as a
    first failure again, so one crash a day never waits the capped delay.
    """

    first: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    forgive_after: float = 120.0

    def __post_init__(self) -> None:
        if not (self.first > 0 and self.factor >= 1 and self.cap >= self.first and self.forgive_after >= 0):
            raise ValueError(f"inconsistent backoff: {self}")

    def failures_after(self, failures: int, healthy_for: float | None) -> int:
        """Deaths in a row, counting the one that just happened after `failures` earlier ones.

        `healthy_for` is how long the process had been answering its health check when it died
        (None: it never answered).
        """
        if healthy_for is not None and healthy_for >= self.forgive_after:
            return 1
        return failures + 1

    def delay(self, failures: int) -> float:
        """Seconds to wait before starting again after `failures` deaths in a row (0 for none)."""
        if failures < 1:
            return 0.0
        delay = self.first
        for _ in range(failures - 1):
            delay *= self.factor
            if delay >= self.cap:
                break
        return min(delay, self.cap)


def describe_exit(code: int) -> str:
    """An exit status as a person reads it: `exited with code 1`, `killed by signal 9`."""
    return f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
