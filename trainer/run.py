"""One training run: data → fit → validation gate → versioned artifact → rollout."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field

import torch

from trainer.fit import FitResult, fit, validation_score
from trainer.labelstudio import TrainingData, build_training_data
from trainer.publish import LocalPublisher, NoPublisher, Publisher
from trainer.settings import TrainingSettings
from tscore.artifacts import ArtifactStore, utc_now_iso
from tscore.errors import ModelNotFound
from tscore.model import TrainedModel

log = logging.getLogger(__name__)


@dataclass
class TrainingOutcome:
    """What a run produced; printed as the trainer's last line and stored as ``STATUS.json``."""

    project: int
    status: str
    """``published`` (serving now) or ``candidate`` (kept back by the validation gate)."""
    version: str
    served_version: str | None
    validation_score: float
    served_score: float | None
    reason: str
    metrics: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    skipped_tasks: dict = field(default_factory=dict)
    finished_at: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def make_publisher(settings: TrainingSettings) -> Publisher:
    """The rollout implementation selected by ``PUBLISHER``."""
    if settings.publisher == "local":
        return LocalPublisher(settings.predictor_url)
    if settings.publisher == "kubernetes":
        from trainer.kubernetes import KubernetesPublisher

        return KubernetesPublisher.from_settings(settings)
    return NoPublisher()


def gate(candidate: float, served: float | None, margin: float) -> tuple[bool, str]:
    """Whether a new version may replace the served one, and why."""
    if served is None:
        return True, "no comparable served version"
    if candidate >= served - margin:
        return True, f"validation macro F1 {candidate:.3f} vs served {served:.3f} (margin {margin})"
    return False, f"validation macro F1 {candidate:.3f} is worse than the served version's {served:.3f} by more than {margin}"


def served_score(store: ArtifactStore, project: int, result: FitResult, data: TrainingData) -> tuple[str | None, float | None]:
    """The served version and its score on the new validation data (None when not comparable)."""
    version = store.current(project)
    if version is None:
        return None, None
    try:
        served = TrainedModel.load(store.version_dir(project, version), torch.device("cpu"))
    except ModelNotFound:
        return version, None
    if served.labels != list(data.config.labels) or served.meta.get("channels") != list(data.config.channels):
        return version, None
    return version, validation_score(served, result.validation)


async def train_project(project: int, settings: TrainingSettings, publisher: Publisher | None = None, data: TrainingData | None = None) -> TrainingOutcome:
    """Run one training for ``project`` and roll the result out when the gate allows it."""
    started = time.perf_counter()
    store = ArtifactStore(settings.model_dir)
    publisher = publisher or make_publisher(settings)
    data = data or await build_training_data(project, settings)
    fetched = time.perf_counter()
    result = await asyncio.to_thread(fit, data.samples, list(data.config.labels), list(data.config.channels), settings)
    trained = time.perf_counter()
    candidate = validation_score(result.model, result.validation)
    previous, previous_score = served_score(store, project, result, data)
    accepted, reason = gate(candidate, previous_score, settings.validation_gate_margin)

    result.model.meta.update(
        project=project,
        created_at=utc_now_iso(),
        metrics={**result.metrics, "validation_score": candidate},
        training={"epochs": result.epochs, "seconds": round(result.seconds, 3), "stop_reason": result.stop_reason, "tasks": len(data.samples)},
        label_config={"from_name": data.config.from_name, "to_name": data.config.to_name, "time_column": data.config.time_column},
    )

    version = store.next_version(project)
    result.model.meta["version"] = version
    store.write_version(project, result.model.save, version=version)
    outcome = TrainingOutcome(
        project=project,
        status="published" if accepted else "candidate",
        version=version,
        served_version=version if accepted else previous,
        validation_score=candidate,
        served_score=previous_score,
        reason=reason,
        metrics=result.metrics,
        skipped_tasks={str(k): v for k, v in data.skipped.items()},
    )
    try:
        if accepted:
            store.publish(project, version)
            try:
                await asyncio.to_thread(publisher.rollout, project, version)
            except Exception:
                # The previous version keeps serving: CURRENT goes back to it.
                if previous:
                    store.publish(project, previous)
                else:
                    store.unpublish(project)
                outcome.status, outcome.served_version = "failed", previous
                raise
        else:
            log.warning("project %s: version %s kept as a candidate: %s", project, version, reason)
    finally:
        outcome.timings = {"fetch_s": round(fetched - started, 3), "fit_s": round(trained - fetched, 3), "total_s": round(time.perf_counter() - started, 3)}
        outcome.finished_at = utc_now_iso()
        store.write_status(project, outcome.to_json())
    store.prune(project, settings.keep_versions)
    log.info("project %s: %s %s (%s)", project, outcome.status, version, reason)
    return outcome
