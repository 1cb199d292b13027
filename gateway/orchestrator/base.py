"""What the gateway needs from wherever predictors and trainings live."""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field


@dataclass
class PredictorEndpoint:
    """Where a project's model answers V2 requests."""

    base_url: str
    model_name: str


@dataclass
class ProjectTraining:
    """Training state of one project, as shown by ``/status`` and ``/metrics``."""

    project: int
    state: str = "idle"
    """``idle``, ``running`` or ``queued``."""
    follow_up_pending: bool = False
    served_version: str | None = None
    last_result: str | None = None
    """``published``, ``candidate``, ``failed``, ``refused`` (bad input), ``succeeded`` (a Kubernetes Job that completed) or None."""
    last_error: str | None = None
    last_reason: str | None = None
    last_started_at: str | None = None
    last_finished_at: str | None = None
    last_duration_s: float | None = None
    trainings_started: int = 0
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


class Orchestrator(abc.ABC):
    """Launches trainings and knows which version of which project is served where.

    Every method the request path calls answers from state held in memory: it never waits
    on a predictor, a trainer or a cluster.
    """

    name: str = "orchestrator"

    async def start(self) -> None:
        """Begin background work (predictor processes, cluster watches, ...)."""

    async def stop(self) -> None:
        """Stop background work."""

    @abc.abstractmethod
    def request_training(self, project: int, reason: str) -> None:
        """Ask for a training of ``project``; returns at once.

        At most one training per project runs; requests while one runs coalesce into
        exactly one follow-up training that starts after it.
        """

    @abc.abstractmethod
    def served_version(self, project: int) -> str | None:
        """The version currently served for ``project`` (None before the first rollout)."""

    @abc.abstractmethod
    def predictor_endpoint(self, project: int) -> PredictorEndpoint | None:
        """Where ``project``'s predictor answers, or None when it has no model."""

    @abc.abstractmethod
    def project_status(self, project: int) -> ProjectTraining:
        """Training and serving state of one project."""

    @abc.abstractmethod
    def projects(self) -> list[int]:
        """Projects this orchestrator knows about."""
