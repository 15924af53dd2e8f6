"""Correlation fields and webhooks through a running gateway, with a real local receiver."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest

from gateway.settings import Settings
from tests.conftest import Comfy, Gateway, running_gateway
from tests.receiver import SECRET, Receiver


def hooked(settings: Settings, **changes: Any) -> Settings:
    options: dict[str, Any] = {"webhook_secret": SECRET, "webhook_allow_private": True, "webhook_backoff": 0.01}
    return replace(settings, **{**options, **changes})


async def deliveries(gw: Gateway, job_id: str, *, until: str | None = None, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        resp = await gw.client.get(f"/api/v1/job/{job_id}/deliveries", headers=gw.headers)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        states = [d["state"] for d in body["deliveries"]]
        if until is None or (states and all(s == until for s in states)):
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.02)


@pytest.mark.real_comfy
async def test_done_jobs_are_delivered_signed_and_retried(settings: Settings, receiver: Receiver,
                                                          comfy: Comfy) -> None:
    receiver.answers = [500]
    meta = {"user": "u-17", "run": "nightly"}
    async with running_gateway(hooked(settings)) as gw:
        [job_id] = await gw.generate("example_01", {"webhook_url": receiver.url + "/hook",
                                                    "client_reference": "trace-42", "metadata": meta})
        record = await gw.wait(job_id)
        assert (record["status"], record["client_reference"], record["metadata"]) == ("done", "trace-42", meta)
        body = await deliveries(gw, job_id, until="delivered")
        metrics = await (await gw.client.get("/metrics")).text()
    [delivery] = body["deliveries"]
    assert (delivery["event"], delivery["url"], delivery["next_attempt_at"]) == (
        "job.done", receiver.url + "/hook", None)
    assert [(a["attempt"], a["status_code"], a["error"]) for a in delivery["attempts"]] == [
        (1, 500, "answered HTTP 500"), (2, 200, None)]
    assert all(a["duration_ms"] >= 0 for a in delivery["attempts"])
    assert 'gateway_webhook_deliveries_total{outcome="retrying"} 1.0' in metrics
    assert 'gateway_webhook_deliveries_total{outcome="delivered"} 1.0' in metrics
    first, second = receiver.received  # both verified against the secret by the receiver
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == delivery["id"]
    payload = second["payload"]
    assert payload["type"] == "job.done"
    assert payload["data"] == record


async def test_failed_and_cancelled_jobs_are_delivered_and_start_is_optional(
        settings: Settings, receiver: Receiver, fake: Any) -> None:
    async with running_gateway(hooked(settings, webhook_on_start=True,
                                      webhook_url=receiver.url + "/hook")) as gw:
        fake.fail_next(1, "boom")
        [failed] = await gw.generate("example_01", {"metadata": {"k": "v"}})  # the configured default URL
        await gw.wait(failed)
        body = await deliveries(gw, failed, until="delivered")
        assert [d["event"] for d in body["deliveries"]] == ["job.started", "job.failed"]
        fake.stall = True
        try:
            ids = await gw.generate("example_01", {"count": 3})
            resp = await gw.client.post("/api/v1/interrupt", headers=gw.headers)
            assert resp.status == 200
        finally:
            fake.release()
        for job_id in ids:
            events = [d["event"] for d in (await deliveries(gw, job_id, until="delivered"))["deliveries"]]
            assert events[-1] == "job.failed"
    by_event = [(r["payload"]["type"], r["payload"]["data"]["error"]) for r in receiver.received
                if r["payload"]["data"]["id"] == failed]
    assert by_event[-1][0] == "job.failed" and "boom" in by_event[-1][1]
    cancelled = [r["payload"]["data"] for r in receiver.received if r["payload"]["data"]["id"] in ids
                 and r["payload"]["type"] == "job.failed"]
    assert sorted(d["error"] for d in cancelled) == ["cancelled"] * 3
    ids_seen = [r["headers"]["webhook-id"] for r in receiver.received]
    assert len(ids_seen) == len(set(ids_seen))  # no delivery sent twice


async def test_a_delivery_pending_at_shutdown_is_sent_after_a_restart(settings: Settings, receiver: Receiver,
                                                                     fake: Any) -> None:
    receiver.answers = [503]
    async with running_gateway(hooked(settings, webhook_backoff=2.0)) as gw:
        [job_id] = await gw.generate("example_01", {"webhook_url": receiver.url + "/hook"})
        await gw.wait(job_id)
        body = await deliveries(gw, job_id)
        while not body["deliveries"] or not body["deliveries"][0]["attempts"]:
            body = await deliveries(gw, job_id)
    assert body["deliveries"][0]["state"] == "pending"
    async with running_gateway(hooked(settings)) as gw:
        body = await deliveries(gw, job_id, until="delivered")
    assert [a["status_code"] for a in body["deliveries"][0]["attempts"]] == [503, 200]


async def test_deliveries_of_an_unknown_job_are_404(gateway: Gateway) -> None:
    resp = await gateway.client.get("/api/v1/job/nope/deliveries", headers=gateway.headers)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "job_not_found"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"client_reference": "x" * 201}, "client_reference", "at most 200 characters"),
        ({"client_reference": 5}, "client_reference", "must be a string"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "at most 16 keys"),
        ({"metadata": {"k": "v" * 501}}, "metadata", "at most 500 characters"),
        ({"metadata": {"k": 1}}, "metadata.k", "must be a string"),
        ({"metadata": {"": "v"}}, "metadata", "keys must be 1 to 100 characters"),
        ({"metadata": ["a"]}, "metadata", "must be an object"),
        ({"webhook_url": "ftp://example.com/x"}, "webhook_url", "http:// or https://"),
        ({"webhook_url": "http://169.254.169.254/latest"}, "webhook_url", "loopback, private or link-local"),
        ({"webhook_url": "http://localhost:9/x"}, "webhook_url", "loopback name"),
        ({"webhook_url": "not a url"}, "webhook_url", "http:// or https://"),
    ],
)
async def test_bad_correlation_and_webhook_fields_are_400(gateway: Gateway, body: dict[str, Any], field: str,
                                                          message: str) -> None:
    resp = await gateway.client.post("/api/v1/generate/example_01", json=body, headers=gateway.headers)
    error = (await resp.json())["error"]
    assert resp.status == 400, error
    assert error["field"] == field
    assert message in error["message"]


async def test_without_a_webhook_nothing_is_delivered(gateway: Gateway) -> None:
    [job_id] = await gateway.generate("example_01", {"client_reference": "r"})
    await gateway.wait(job_id)
    assert (await deliveries(gateway, job_id))["deliveries"] == []
