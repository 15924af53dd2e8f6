"""`choose()`: priority, then checkpoint affinity within the fairness bound, as a table."""

from __future__ import annotations

import pytest

from gateway.scheduling import Candidate, Fairness, choose, may_pass

BOUND = Fairness(max_skips=3, max_wait=30.0)
NOW = 1000.0


def job(spec: str) -> Candidate:
    """`"a:A"` is job a with checkpoint A; `"a:A!p2"` priority 2; `"a:A+3"` overtaken 3 times;
    `"a:A@970"` first overtaken at t=970; `"a:-"` has no checkpoint."""
    priority = overtaken = 0
    passed_at = None
    if "@" in spec:
        spec, at = spec.split("@")
        passed_at = float(at)
    if "+" in spec:
        spec, times = spec.split("+")
        overtaken = int(times)
    if "!p" in spec:
        spec, level = spec.split("!p")
        priority = int(level)
    name, checkpoint = spec.split(":")
    return Candidate(id=name, priority=priority, checkpoint=None if checkpoint == "-" else checkpoint,
                     overtaken=overtaken, passed_at=passed_at)


@pytest.mark.parametrize(("queue", "loaded", "bound", "chosen", "passed"), [
    # nothing waits
    ("", "A", BOUND, None, ""),
    # the head uses the loaded checkpoint: first come
    ("a:A b:B", "A", BOUND, "a", ""),
    # the first job using the loaded checkpoint overtakes those in front of it
    ("a:B b:B c:A d:A", "A", BOUND, "c", "a b"),
    # nothing uses it: first come
    ("a:B b:C", "A", BOUND, "a", ""),
    # nothing known to be loaded: first come
    ("a:B b:A", None, BOUND, "a", ""),
    # affinity off
    ("a:B b:A", "A", Fairness(max_skips=0, max_wait=30.0), "a", ""),
    # jobs without a checkpoint never match but may be passed
    ("a:- b:A", "A", BOUND, "b", "a"),
    # the head was passed max_skips times: it goes now
    ("a:B+3 b:A", "A", BOUND, "a", ""),
    # a job further back at its limit stops the search: nothing behind it passes it
    ("a:B+1 b:C+3 c:A", "A", BOUND, "a", ""),
    # ... but a match in front of it may still go
    ("a:B+1 b:A c:C+3 d:A", "A", BOUND, "b", "a"),
    # one short of the limit: may still be passed
    ("a:B+2 b:A", "A", BOUND, "b", "a"),
    # first passed max_wait seconds ago: no more
    ("a:B+1@970 b:A", "A", BOUND, "a", ""),
    # first passed less than max_wait seconds ago: may be passed again
    ("a:B+1@971 b:A", "A", BOUND, "b", "a"),
    # priority comes first: a higher-priority job goes before a loaded-checkpoint one
    ("a:B!p5 b:A", "A", BOUND, "a", ""),
    # affinity only within the head's priority
    ("a:B!p1 b:C!p1 c:A", "A", BOUND, "a", ""),
    ("a:B!p1 b:A!p1 c:A", "A", BOUND, "b", "a"),
])
def test_choose(queue: str, loaded: str | None, bound: Fairness, chosen: str | None, passed: str) -> None:
    candidates = [job(s) for s in queue.split()]
    choice = choose(candidates, loaded, NOW, bound)
    if chosen is None:
        assert choice is None
        return
    assert choice is not None
    assert choice.job.id == chosen
    assert [c.id for c in choice.passed] == passed.split()


@pytest.mark.parametrize(("spec", "allowed"), [
    ("a:A", True), ("a:A+2", True), ("a:A+3", False), ("a:A+9", False),
    ("a:A+1@999", True), ("a:A+1@970.5", True), ("a:A+1@970", False),
])
def test_may_pass(spec: str, allowed: bool) -> None:
    assert may_pass(job(spec), NOW, BOUND) is allowed


def test_alternating_checkpoints_run_in_batches_and_nobody_waits_beyond_the_bound() -> None:
    """Replays the scheduler on 40 alternating jobs: it batches by checkpoint, and no job is
    overtaken more than max_skips times."""
    queue = [Candidate(id=str(i), priority=0, checkpoint="AB"[i % 2]) for i in range(40)]
    bound = Fairness(max_skips=5, max_wait=1e9)
    loaded, order, swaps = None, [], 0
    while queue:
        choice = choose(queue, loaded, NOW, bound)
        assert choice is not None
        passed = {c.id for c in choice.passed}
        queue = [
            Candidate(c.id, c.priority, c.checkpoint, c.overtaken + (c.id in passed), c.passed_at)
            for c in queue if c.id != choice.job.id
        ]
        assert all(c.overtaken <= bound.max_skips for c in queue)
        swaps += loaded is not None and loaded != choice.job.checkpoint
        loaded = choice.job.checkpoint
        order.append(int(choice.job.id))
    overtaken = [sum(1 for later in order[:order.index(i)] if later > i) for i in range(40)]
    assert max(overtaken) <= bound.max_skips
    assert swaps < 10  # first come would swap 39 times
