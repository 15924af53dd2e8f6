"""Prometheus metrics of one gateway, in a registry of its own (served as `GET /metrics`).

Three sources: counters and histograms fed as things happen (HTTP requests, job changes the
store reports, webhook deliveries), and figures read when scraped (`Live`: job counts from the
store, the dispatcher's view of ComfyUI). An app owns its `Metrics`, so apps never share figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.jobs import TERMINAL, Job, State

CONTENT_TYPE = CONTENT_TYPE_LATEST
LIVE_STATES = (State.QUEUED, State.SUBMITTED, State.RUNNING)
WEBHOOK_OUTCOMES = ("delivered", "retrying", "gave_up")

_RUN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_RESULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0)


@dataclass(frozen=True)
class BackendFigures:
    """One ComfyUI backend's figures, labelled by its name."""

    name: str
    url: str
    up: bool
    in_flight: int
    max_in_flight: int
    model_swaps: int
    loaded_checkpoint: str | None = None


@dataclass(frozen=True)
class Live:
    """Figures read at scrape time."""

    jobs: dict[State, int]
    """Jobs in each live state (queued, submitted, running)."""
    comfyui_up: bool
    in_flight: int
    model_swaps: int
    loaded_checkpoint: str | None
    backends: tuple[BackendFigures, ...] = ()


_NOTHING = Live(jobs={}, comfyui_up=False, in_flight=0, model_swaps=0, loaded_checkpoint=None)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "gateway_http_requests", "HTTP requests answered, by route (its pattern), method and status.",
            ["route", "method", "status"], registry=self.registry)
        self.webhook_deliveries = Counter(
            "gateway_webhook_deliveries", "Webhook delivery attempts, by outcome.", ["outcome"],
            registry=self.registry)
        self.jobs_finished = Counter(
            "gateway_jobs_finished", "Jobs that ended since the gateway started, by final state.", ["state"],
            registry=self.registry)
        self.job_duration = Histogram(
            "gateway_job_duration_seconds", "Run time in ComfyUI (start to finish) of done jobs.",
            buckets=_RUN_BUCKETS, registry=self.registry)
        self.queue_wait = Histogram(
            "gateway_queue_wait_seconds", "Time from a job's acceptance to its start in ComfyUI.",
            buckets=_WAIT_BUCKETS, registry=self.registry)
        self.result_seconds = Histogram(
            "gateway_result_seconds",
            "From ComfyUI's end of a prompt (`executing: null` received) to its job stored as done: "
            "images downloaded, written and recorded.",
            buckets=_RESULT_BUCKETS, registry=self.registry)
        for state in (State.DONE, State.FAILED):
            self.jobs_finished.labels(state=state.value)
        for outcome in WEBHOOK_OUTCOMES:
            self.webhook_deliveries.labels(outcome=outcome)
        self._live = _NOTHING
        self.registry.register(_LiveCollector(self))

    def jobs_changed(self, changes: list[tuple[Job, State | None]]) -> None:
        """A store listener: observe waits, run times and ends as jobs change."""
        for job, before in changes:
            if job.state is before:
                continue
            started = job.state is State.RUNNING or (job.state is State.DONE and before is not State.RUNNING)
            if started and job.started_at is not None:
                self.queue_wait.observe(max(job.started_at - job.created_at, 0.0))
            if job.state in TERMINAL and before not in TERMINAL:
                self.jobs_finished.labels(state=job.state.value).inc()
                if job.state is State.DONE and job.started_at is not None and job.finished_at is not None:
                    self.job_duration.observe(max(job.finished_at - job.started_at, 0.0))

    def render(self, live: Live) -> bytes:
        """The text exposition of every metric, with `live` as the scrape-time figures."""
        self._live = live
        try:
            return generate_latest(self.registry)
        finally:
            self._live = _NOTHING

    @property
    def live(self) -> Live:
        return self._live


class _LiveCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        live = self._metrics.live
        jobs = GaugeMetricFamily("gateway_jobs", "Jobs not finished, by state.", labels=["state"])
        for state in LIVE_STATES:
            jobs.add_metric([state.value], live.jobs.get(state, 0))
        yield jobs
        yield GaugeMetricFamily("gateway_queue_depth", "Jobs waiting in the gateway's queue (not yet in ComfyUI).",
                                value=live.jobs.get(State.QUEUED, 0))
        yield GaugeMetricFamily("gateway_in_flight", "Prompts the gateway has in ComfyUI.", value=live.in_flight)
        yield GaugeMetricFamily("gateway_comfyui_up", "1 while the websocket to (at least one) ComfyUI is connected.",
                                value=int(live.comfyui_up))
        yield CounterMetricFamily("gateway_model_swaps", "Checkpoint changes in ComfyUI since the gateway started.",
                                  value=live.model_swaps)
        loaded = GaugeMetricFamily("gateway_loaded_checkpoint", "1 for the checkpoint ComfyUI has loaded, if known.",
                                   labels=["checkpoint"])
        if live.loaded_checkpoint is not None:
            loaded.add_metric([live.loaded_checkpoint], 1)
        yield loaded
        yield from _backend_metrics(live.backends)


def _backend_metrics(backends: tuple[BackendFigures, ...]) -> Iterator[Metric]:
    """Per ComfyUI backend, labelled `backend` with its name."""
    info = GaugeMetricFamily("gateway_backend_info", "1 per ComfyUI backend, with its URL.", labels=["backend", "url"])
    up = GaugeMetricFamily("gateway_backend_up", "1 while the websocket to this ComfyUI backend is connected.",
                           labels=["backend"])
    in_flight = GaugeMetricFamily("gateway_backend_in_flight", "Prompts the gateway has in this ComfyUI backend.",
                                  labels=["backend"])
    limit = GaugeMetricFamily("gateway_backend_max_in_flight",
                              "The most prompts the gateway keeps in this ComfyUI backend at once.", labels=["backend"])
    swaps = CounterMetricFamily("gateway_backend_model_swaps",
                                "Checkpoint changes in this ComfyUI backend since the gateway started.",
                                labels=["backend"])
    loaded = GaugeMetricFamily("gateway_backend_loaded_checkpoint",
                               "1 for the checkpoint this ComfyUI backend has loaded, if known.",
                               labels=["backend", "checkpoint"])
    for backend in backends:
        info.add_metric([backend.name, backend.url], 1)
        up.add_metric([backend.name], int(backend.up))
        in_flight.add_metric([backend.name], backend.in_flight)
        limit.add_metric([backend.name], backend.max_in_flight)
        swaps.add_metric([backend.name], backend.model_swaps)
        if backend.loaded_checkpoint is not None:
            loaded.add_metric([backend.name, backend.loaded_checkpoint], 1)
    yield from (info, up, in_flight, limit, swaps, loaded)
