"""The webhook delivery worker against a real local HTTP receiver."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.delivery import CheckedResolver, DeliveryWorker, connector
from gateway.jobs import Complete, Job, Start, State, StoredImage, Submit, transition
from gateway.storage import Store
from gateway.store import SqliteStore
from gateway.webhooks import UnsafeTarget
from tests.receiver import SECRET, Receiver


def render(job: Job, before: State) -> tuple[str, str] | None:
    if job.state is State.DONE:
        return "job.done", json.dumps({"type": "job.done", "data": {"id": job.id, "metadata": job.metadata}})
    return None


async def open_store(path: Path) -> Store:
    return await SqliteStore.open(path, webhook=render)


async def finish_job(store: Store, job_id: str, url: str) -> None:
    job = Job(id=job_id, preset="p", label="P", params={}, created_at=1.0, webhook_url=url, metadata={"k": "v"})
    await store.add_jobs([job])
    done = transition(transition(transition(job, Submit(2.0)), Start(3.0)), Complete(4.0, (StoredImage("x.png"),)))
    await store.save(done)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await open_store(tmp_path / "gateway.db")
    yield s
    await s.close()


async def deliver(store: Store, *, allow_private: bool = True, resolver: AbstractResolver | None = None,
                  **options: Any) -> None:
    conn = (aiohttp.TCPConnector(resolver=CheckedResolver(allow_private=allow_private, inner=resolver))
            if resolver else connector(allow_private=allow_private))
    async with aiohttp.ClientSession(connector=conn) as session:
        worker = DeliveryWorker(store=store, session=session, secret=SECRET, backoff=0.01,
                                allow_private=allow_private, poll=0.01, **options)
        await worker.run(until_idle=True)


async def test_a_failed_delivery_is_retried_until_the_receiver_takes_it(store: Store, receiver: Receiver) -> None:
    receiver.answers = [500, 503]
    await finish_job(store, "j1", receiver.url + "/hook")
    await deliver(store)
    assert len(receiver.received) == 3
    first, *_, last = receiver.received
    assert first["body"] == last["body"]  # the same message, signed again each time
    assert first["headers"]["webhook-id"] == last["headers"]["webhook-id"]
    assert last["payload"] == {"type": "job.done", "data": {"id": "j1", "metadata": {"k": "v"}}}
    assert last["headers"]["Content-Type"] == "application/json"
    [(delivery, attempts)] = await store.deliveries_of("j1")
    assert (delivery.state, delivery.attempts) == ("delivered", 3)
    assert [(a.attempt, a.status_code, a.error) for a in attempts] == [
        (1, 500, "answered HTTP 500"), (2, 503, "answered HTTP 503"), (3, 200, None)]
    assert attempts[0].at <= attempts[1].at <= attempts[2].at


async def test_a_delivery_is_given_up_after_max_attempts(store: Store, receiver: Receiver) -> None:
    receiver.answers = [500] * 10
    await finish_job(store, "j1", receiver.url + "/hook")
    await deliver(store, max_attempts=3)
    [(delivery, attempts)] = await store.deliveries_of("j1")
    assert (delivery.state, len(attempts), delivery.next_attempt_at) == ("failed", 3, None)
    assert receiver.hits["/hook"] == 3


async def test_each_attempt_reports_its_outcome(store: Store, receiver: Receiver) -> None:
    receiver.answers = [500, 500, 500, 503]
    await finish_job(store, "j1", receiver.url + "/hook")
    outcomes: list[str] = []
    await deliver(store, max_attempts=3, on_attempt=outcomes.append)
    assert outcomes == ["retrying", "retrying", "gave_up"]
    await finish_job(store, "j2", receiver.url + "/hook")
    await deliver(store, max_attempts=3, on_attempt=outcomes.append)
    assert outcomes[3:] == ["retrying", "delivered"]


async def test_redirects_are_not_followed(store: Store, receiver: Receiver) -> None:
    await finish_job(store, "j1", receiver.url + "/redirect")
    await deliver(store, max_attempts=1)
    [(delivery, [attempt])] = await store.deliveries_of("j1")
    assert (delivery.state, attempt.status_code, attempt.error) == ("failed", 307, "answered HTTP 307")
    assert "/hook" not in receiver.hits


async def test_a_receiver_that_never_answers_times_out(store: Store, receiver: Receiver) -> None:
    await finish_job(store, "j1", receiver.url + "/slow")
    await deliver(store, max_attempts=1, timeout=0.2)
    [(delivery, [attempt])] = await store.deliveries_of("j1")
    assert (delivery.state, attempt.status_code, attempt.error) == ("failed", None, "timed out after 0.2 s")


async def test_a_huge_answer_is_not_read(store: Store, receiver: Receiver) -> None:
    await finish_job(store, "j1", receiver.url + "/huge")
    await deliver(store, max_attempts=1)
    [(delivery, [attempt])] = await store.deliveries_of("j1")
    assert (delivery.state, attempt.status_code) == ("delivered", 200)


async def test_an_unreachable_receiver_is_recorded(store: Store) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    await finish_job(store, "j1", f"http://127.0.0.1:{port}/hook")
    await deliver(store, max_attempts=2)
    [(delivery, attempts)] = await store.deliveries_of("j1")
    assert delivery.state == "failed"
    assert all(a.status_code is None and "Connect" in (a.error or "") for a in attempts)


async def test_private_targets_are_refused_at_delivery(store: Store, receiver: Receiver) -> None:
    await finish_job(store, "j1", receiver.url + "/hook")
    await deliver(store, allow_private=False)
    [(delivery, [attempt])] = await store.deliveries_of("j1")  # refused: given up at once
    assert delivery.state == "failed"
    assert attempt.error == "refused: 127.0.0.1 is a loopback, private or link-local address"
    assert receiver.hits == {}


class StubResolver(AbstractResolver):
    """A DNS that answers the given addresses for any name."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET, proto=0, flags=0)
                for a in self.addresses]

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("addresses", [("10.0.0.7",), ("93.184.216.34", "169.254.169.254")])
async def test_names_resolving_to_private_addresses_are_refused(store: Store, addresses: tuple[str, ...]) -> None:
    await finish_job(store, "j1", "http://hooks.example.test/in")
    await deliver(store, allow_private=False, resolver=StubResolver(*addresses), max_attempts=1)
    [(delivery, [attempt])] = await store.deliveries_of("j1")
    assert delivery.state == "failed"
    assert (attempt.error or "").startswith("refused: ")


async def test_checked_resolver_passes_public_addresses() -> None:
    resolver = CheckedResolver(allow_private=False, inner=StubResolver("93.184.216.34"))
    assert [r["host"] for r in await resolver.resolve("example.test", 443)] == ["93.184.216.34"]
    with pytest.raises(UnsafeTarget):
        await CheckedResolver(allow_private=False, inner=StubResolver("127.0.0.1")).resolve("example.test")


async def test_a_pending_delivery_survives_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    path = tmp_path / "gateway.db"
    receiver.answers = [500]
    store = await open_store(path)
    await finish_job(store, "j1", receiver.url + "/hook")
    async with aiohttp.ClientSession(connector=connector(allow_private=True)) as session:
        worker = DeliveryWorker(store=store, session=session, secret=SECRET, backoff=2.0, allow_private=True,
                                poll=0.01)
        task = asyncio.create_task(worker.run())
        while not receiver.received:
            await asyncio.sleep(0.01)
        while not (await store.deliveries_of("j1"))[0][1]:
            await asyncio.sleep(0.01)
        task.cancel()  # the gateway stops before the retry is due
        await asyncio.gather(task, return_exceptions=True)
    await store.close()

    store = await open_store(path)
    try:
        [(pending, _)] = await store.deliveries_of("j1")
        assert (pending.state, pending.attempts) == ("pending", 1)
        async with aiohttp.ClientSession(connector=connector(allow_private=True)) as session:
            worker = DeliveryWorker(store=store, session=session, secret=SECRET, allow_private=True, poll=0.01)
            await worker.run(until_idle=True)  # waits for the retry that is due
        [(delivery, attempts)] = await store.deliveries_of("j1")
        assert (delivery.state, [a.status_code for a in attempts]) == ("delivered", [500, 200])
    finally:
        await store.close()
