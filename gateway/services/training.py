"""``/webhook``: Label Studio events → training requests."""

from __future__ import annotations

import logging
from collections import defaultdict

from gateway.metrics import GatewayMetrics
from gateway.orchestrator.base import Orchestrator
from gateway.protocol import WebhookEvent
from tscore.errors import InvalidInput
from tscore.projects import parse_project_id

log = logging.getLogger(__name__)

ANNOTATION_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_DELETED", "ANNOTATIONS_CREATED", "ANNOTATIONS_DELETED"})
TRAINING_ACTIONS = frozenset({"START_TRAINING", "PROJECT_UPDATED"})


class TrainingService:
    """Decides which events start a training (START_TRAINING_EACH_N_UPDATES) and hands them on."""

    def __init__(self, orchestrator: Orchestrator, metrics: GatewayMetrics, each_n_updates: int) -> None:
        self.orchestrator = orchestrator
        self.metrics = metrics
        self.each_n_updates = each_n_updates
        self._updates: defaultdict[int, int] = defaultdict(int)

    def handles(self, action: str) -> bool:
        """Whether an action is one this backend acts on (others are acknowledged and ignored)."""
        return action in ANNOTATION_ACTIONS or action in TRAINING_ACTIONS

    def on_event(self, event: WebhookEvent) -> bool:
        """Record an event; returns whether a training was requested. Never blocks.

        Raises:
            InvalidInput: the event names no valid project.
        """
        action = event.action
        project_ref = event.project
        if project_ref is None and event.annotation:
            project_ref = event.annotation.get("project")
        if project_ref is None and event.task:
            project_ref = event.task.get("project")
        if project_ref is None:
            raise InvalidInput(f"{action} event names no project")
        project = parse_project_id(project_ref)
        if action in TRAINING_ACTIONS:
            self.orchestrator.request_training(project, action)
            self.metrics.webhook_events.labels(action, "training").inc()
            return True
        self._updates[project] += 1
        if self._updates[project] % self.each_n_updates:
            self.metrics.webhook_events.labels(action, "counted").inc()
            return False
        self.orchestrator.request_training(project, f"{action} (update {self._updates[project]})")
        self.metrics.webhook_events.labels(action, "training").inc()
        return True
