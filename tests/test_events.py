"""The live hub: fan-out, lossy coalescing of progress, previews throttled, queue positions."""

from __future__ import annotations

import pytest

from gateway.events import IMAGES, Hub, Message, Progress, Subscription
from gateway.jobs import Complete, Job, Start, State, StoredImage, Submit, transition

JOB = Job(id="j", preset="p", label="L", params={}, created_at=1.0)


def running() -> Job:
    return transition(transition(JOB, Submit(2.0)), Start(3.0))


def drain(sub: Subscription) -> list[str]:
    return [m.event for m in list(sub._buffer)]


@pytest.mark.parametrize(("pushed", "kept"), [
    (["job", "progress", "progress", "progress"], ["job", "progress"]),
    (["progress", "job", "progress"], ["job", "progress"]),
    (["preview", "progress", "preview"], ["progress", "preview"]),
    (["queue", "queue", "job", "end"], ["queue", "job", "end"]),
    (["job", "job", "end"], ["job", "job", "end"]),  # changes of state are never dropped
])
async def test_a_lagging_reader_keeps_every_change_and_only_the_latest_progress(
        pushed: list[str], kept: list[str]) -> None:
    sub = Subscription("t", previews=True)
    for event in pushed:
        sub.push(Message(event, None))
    assert drain(sub) == kept


async def test_subscribers_get_changes_and_topics_are_dropped_when_empty() -> None:
    hub = Hub()
    with hub.subscribe("j") as a, hub.subscribe("j") as b, hub.subscribe("other") as c:
        assert hub.subscribers("j") == 2
        hub.job_changed(running(), State.SUBMITTED)
        hub.set_progress("j", Progress(3, 20, "5", "KSampler"))
        hub.set_progress("j", Progress(3, 20, "5", "KSampler"))  # unchanged: not sent again
        assert drain(a) == drain(b) == ["job", "progress"] and drain(c) == []
        assert hub.progress("j") == Progress(3, 20, "5", "KSampler")
        done = transition(running(), Complete(4.0, (StoredImage("x.png"),)))
        hub.job_changed(done, State.RUNNING)
        assert drain(a)[-1] == "end" and hub.progress("j") is None
    assert hub.subscribers("j") == 0 and hub._topics == {}


async def test_one_rendering_per_message_whatever_the_readers() -> None:
    hub, calls = Hub(), []
    with hub.subscribe("j") as a, hub.subscribe("j") as b:
        hub.set_progress("j", Progress(1, 2))
        texts = [(await s.next(1)) for s in (a, b)]
        rendered = [m.render("sse", lambda m: calls.append(m) or "x") for m in texts if m is not None]
    assert rendered == ["x", "x"] and len(calls) == 1


async def test_previews_go_only_to_those_who_asked_and_are_throttled() -> None:
    now = [0.0]
    hub = Hub(preview_interval=0.5, clock=lambda: now[0])
    hub.preview("j", b"img", "image/jpeg")  # nobody wants it: nothing happens
    with hub.subscribe("j", previews=True) as wants, hub.subscribe("j") as plain:
        for t in (0.0, 0.1, 0.49, 0.5, 0.7, 1.2):
            now[0] = t
            hub.preview("j", f"{t}".encode(), "image/jpeg")
        sent = []
        while (m := await wants.next(0.01)) is not None:
            sent.append(m.payload[0])
        assert sent == [b"1.2"]  # 0.0, 0.5 and 1.2 passed the throttle; the reader lagged, so only the latest
        assert drain(plain) == []


async def test_new_images_are_published_to_the_gallery_topic() -> None:
    hub = Hub()
    done = transition(running(), Complete(4.0, (StoredImage("a.png"), StoredImage("b.png"))))
    with hub.subscribe(IMAGES) as gallery:
        hub.job_changed(done, State.RUNNING)
        assert [(m.event, m.payload[1]) for m in gallery._buffer] == [("image", 0), ("image", 1)]


async def test_queue_positions_are_refreshed_for_watched_waiting_jobs() -> None:
    asked: list[list[str]] = []

    async def positions(ids: list[str]) -> dict[str, int]:
        asked.append(ids)
        return {"j": 2}

    hub = Hub(queue_positions=positions)
    with hub.subscribe("j") as sub:
        hub.watch_queue(JOB, 3)
        await hub.refresh_positions()
        await hub.refresh_positions()  # unchanged: sent once
        assert [(m.event, m.payload) for m in sub._buffer] == [("queue", 2)]
        hub.job_changed(running(), State.SUBMITTED)  # no longer waiting: no longer asked about
        await hub.refresh_positions()
    assert asked == [["j"], ["j"]]


async def test_close_ends_every_stream() -> None:
    hub = Hub()
    with hub.subscribe("a") as a, hub.subscribe(IMAGES) as b:
        hub.close()
        assert drain(a) == drain(b) == ["close"]
