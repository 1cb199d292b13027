"""Prometheus metrics of the gateway (one registry per app, so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class GatewayMetrics:
    """Every metric the gateway exports on ``/metrics``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("ts_segmenter_http_requests_total", "HTTP requests by route and status.", ["route", "status"], registry=r)
        self.latency = Histogram(
            "ts_segmenter_http_request_seconds", "HTTP request latency by route.", ["route"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 100),
        )
        self.webhook_events = Counter("ts_segmenter_webhook_events_total", "Webhook events by action and outcome.", ["action", "outcome"], registry=r)
        self.predicted_tasks = Counter("ts_segmenter_predicted_tasks_total", "Tasks answered by /predict, by outcome.", ["outcome"], registry=r)
        self.trainings = Counter("ts_segmenter_trainings_total", "Finished trainings by project and result.", ["project", "result"], registry=r)
        self.trainings_started = Counter("ts_segmenter_trainings_started_total", "Trainings launched by project.", ["project"], registry=r)
        self.training_seconds = Histogram(
            "ts_segmenter_training_seconds", "Wall time of trainings.", registry=r,
            buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600),
        )
        self.training_active = Gauge("ts_segmenter_training_active", "1 while a project's training runs.", ["project"], registry=r)
        self.training_pending = Gauge("ts_segmenter_training_follow_up_pending", "1 while a follow-up training is queued.", ["project"], registry=r)
        self.served_version = Gauge("ts_segmenter_served_version_info", "The version served per project (value 1).", ["project", "version"], registry=r)
        self.orchestrator_errors = Counter("ts_segmenter_orchestrator_errors_total", "Failures talking to the runtime (processes, cluster).", ["operation"], registry=r)

    def set_served(self, project: int, old: str | None, new: str | None) -> None:
        """Move the served-version info gauge from ``old`` to ``new``."""
        if old and old != new:
            try:
                self.served_version.remove(str(project), old)
            except KeyError:
                pass
        if new:
            self.served_version.labels(str(project), new).set(1)
