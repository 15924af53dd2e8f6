"""`GET /metrics` and the figures behind it."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.jobs import Complete, Fail, Job, Requeue, Start, State, StoredImage, Submit, transition
from gateway.metrics import Live, Metrics
from tests.conftest import Gateway

JOB = Job(id="j", preset="p", label="L", params={}, created_at=100.0)
SUBMITTED = transition(JOB, Submit(101.0))
RUNNING = transition(SUBMITTED, Start(103.0))
DONE = transition(RUNNING, Complete(110.0, (StoredImage("x.png"),)))
DONE_UNSEEN = transition(SUBMITTED, Complete(104.0, (StoredImage("x.png"),)))  # its start was never heard


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


@pytest.mark.parametrize(("changes", "waits", "durations", "done", "failed"), [
    ([(JOB, None)], [], [], 0, 0),
    ([(SUBMITTED, State.QUEUED)], [], [], 0, 0),
    ([(RUNNING, State.SUBMITTED)], [3.0], [], 0, 0),
    ([(DONE, State.RUNNING)], [], [7.0], 1, 0),
    ([(DONE_UNSEEN, State.SUBMITTED)], [4.0], [0.0], 1, 0),
    ([(transition(JOB, Fail(105.0, "cancelled")), State.QUEUED)], [], [], 0, 1),
    ([(transition(RUNNING, Fail(120.0, "x")), State.RUNNING)], [], [], 0, 1),
    ([(transition(RUNNING, Requeue(105.0)), State.RUNNING)], [], [], 0, 0),
    ([(RUNNING, State.RUNNING)], [], [], 0, 0),  # no change of state: nothing to observe
])
def test_job_changes_feed_the_counters_and_histograms(
    changes: list[tuple[Job, State | None]], waits: list[float], durations: list[float], done: int, failed: int
) -> None:
    metrics = Metrics()
    metrics.jobs_changed(changes)
    assert value(metrics, "gateway_queue_wait_seconds_count") == len(waits)
    assert value(metrics, "gateway_queue_wait_seconds_sum") == sum(waits)
    assert value(metrics, "gateway_job_duration_seconds_count") == len(durations)
    assert value(metrics, "gateway_job_duration_seconds_sum") == sum(durations)
    assert value(metrics, "gateway_jobs_finished_total", state="done") == done
    assert value(metrics, "gateway_jobs_finished_total", state="failed") == failed


def test_each_app_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # a shared registry would refuse the second set of names
    first.webhook_deliveries.labels(outcome="delivered").inc()
    assert value(first, "gateway_webhook_deliveries_total", outcome="delivered") == 1
    assert value(second, "gateway_webhook_deliveries_total", outcome="delivered") == 0


def test_live_figures_are_rendered_when_scraped() -> None:
    live = Live(jobs={State.QUEUED: 4, State.RUNNING: 1}, comfyui_up=True, in_flight=2, model_swaps=3,
                loaded_checkpoint="tiny.safetensors")
    found = samples(Metrics().render(live).decode())
    assert found[("gateway_jobs", (("state", "queued"),))] == 4
    assert found[("gateway_jobs", (("state", "submitted"),))] == 0
    assert found[("gateway_jobs", (("state", "running"),))] == 1
    assert found[("gateway_queue_depth", ())] == 4
    assert found[("gateway_in_flight", ())] == 2
    assert found[("gateway_comfyui_up", ())] == 1
    assert found[("gateway_model_swaps_total", ())] == 3
    assert found[("gateway_loaded_checkpoint", (("checkpoint", "tiny.safetensors"),))] == 1
    assert found[("gateway_webhook_deliveries_total", (("outcome", "retrying"),))] == 0


async def test_the_metrics_route_needs_no_key_and_counts_routes_not_paths(gateway: Gateway) -> None:
    [job_id] = await gateway.generate("example_01", {"width": 64, "height": 64})
    await gateway.wait(job_id)
    await gateway.job(job_id)
    assert (await gateway.client.get("/nowhere/at/all")).status == 404
    resp = await gateway.client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    found = samples(await resp.text())
    requests = {labels: count for (name, labels), count in found.items() if name == "gateway_http_requests_total"}
    assert requests[(("method", "GET"), ("route", "/api/v1/job/{job_id}"), ("status", "200"))] >= 2
    assert requests[(("method", "POST"), ("route", "/api/v1/generate/{slug}"), ("status", "202"))] == 1
    assert requests[(("method", "GET"), ("route", "unmatched"), ("status", "404"))] == 1
    assert not any(job_id in str(labels) for labels in requests)
    assert found[("gateway_jobs_finished_total", (("state", "done"),))] == 1
    assert found[("gateway_job_duration_seconds_count", ())] == 1
    assert found[("gateway_queue_wait_seconds_count", ())] == 1
    assert found[("gateway_comfyui_up", ())] == 1
    assert found[("gateway_jobs", (("state", "queued"),))] == 0


async def test_the_time_from_a_prompts_end_to_its_job_done_is_observed_once_per_job(gateway: Gateway) -> None:
    ids = await gateway.generate("example_01", {"width": 64, "height": 64, "count": 2})
    await gateway.wait_all(ids)
    for _ in range(200):  # observed just after the job is stored as done
        found = samples(await (await gateway.client.get("/metrics")).text())
        if found[("gateway_result_seconds_count", ())] == 2:
            break
        await asyncio.sleep(0.01)
    assert found[("gateway_result_seconds_count", ())] == 2
    assert 0 < found[("gateway_result_seconds_sum", ())] < 30


async def test_refused_requests_are_counted_with_their_status(gateway: Gateway) -> None:
    assert (await gateway.client.get("/api/v1/presets")).status == 401
    found = samples(await (await gateway.client.get("/metrics")).text())
    assert found[("gateway_http_requests_total", (("method", "GET"), ("route", "/api/v1/presets"),
                                                  ("status", "401")))] == 1


def test_a_requeued_job_starting_again_is_a_second_wait() -> None:
    metrics = Metrics()
    again = transition(transition(transition(RUNNING, Requeue(105.0)), Submit(106.0)), Start(108.0))
    metrics.jobs_changed([(RUNNING, State.SUBMITTED), (again, State.SUBMITTED)])
    assert value(metrics, "gateway_queue_wait_seconds_sum") == 3.0 + 8.0
