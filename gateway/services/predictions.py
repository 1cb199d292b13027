"""``/predict``: tasks → series → V2 inference → Label Studio regions."""

from __future__ import annotations

import asyncio
import json
import logging
from functools import lru_cache
from typing import Any

import numpy as np

from gateway.metrics import GatewayMetrics
from gateway.orchestrator.base import Orchestrator
from gateway.predictor_client import PredictorClient
from gateway.protocol import PredictRequest, Task
from tscore.errors import InvalidInput, SegmenterError
from tscore.fetch import TaskDataFetcher
from tscore.labelconfig import LabelConfig, parse_label_config
from tscore.memory import release_free_memory
from tscore.projects import parse_project_id
from tscore.series import Series, read_series

log = logging.getLogger(__name__)

UNTRAINED = "untrained"
#: CSVs up to this size are parsed on the event loop: under a millisecond, less than a thread hop.
INLINE_PARSE_BYTES = 256 * 1024
#: After a task this large, freed memory is handed back to the OS (see tscore.memory).
RELEASE_AFTER_BYTES = 4 * 1024 * 1024
DEFAULT_PROJECT = 0  # the seed's fallback when a request names no project


@lru_cache(maxsize=64)
def cached_label_config(xml: str) -> LabelConfig:
    """Label configs repeat on every request; parse each once."""
    return parse_label_config(xml)


def request_project(request: PredictRequest) -> int:
    """The project of a predict request: its ``project`` field, else the tasks', else 0."""
    if request.project not in (None, ""):
        return parse_project_id(request.project)
    for task in request.tasks:
        if task.project not in (None, ""):
            return parse_project_id(task.project)
    return DEFAULT_PROJECT


def untrained_version(project: int) -> str:
    """The version reported before a project has a model."""
    return f"p{project}-{UNTRAINED}"


def empty_prediction(version: str) -> dict[str, Any]:
    """A :class:`~gateway.protocol.TaskPrediction` without regions."""
    return {"result": [], "score": 0.0, "model_version": version}


class PredictionService:
    """Answers Label Studio's batched predict requests."""

    def __init__(self, orchestrator: Orchestrator, fetcher: TaskDataFetcher, predictor: PredictorClient, metrics: GatewayMetrics, *, concurrency: int, max_rows: int) -> None:
        self.orchestrator = orchestrator
        self.fetcher = fetcher
        self.predictor = predictor
        self.metrics = metrics
        self.concurrency = concurrency
        self.max_rows = max_rows

    def model_version(self, project: int) -> str:
        """What ``/setup`` reports: the served version, from memory only."""
        return self.orchestrator.served_version(project) or untrained_version(project)

    async def predict(self, request: PredictRequest) -> dict[str, Any]:
        """One prediction per task, in order, as a :class:`~gateway.protocol.PredictResponse` dict.

        Plain dicts rather than the protocol's models: building and validating a model per
        region costs more than the rest of the mapping, and the values are valid by construction.

        A task that fails (unreadable CSV, missing channel, ...) gets an empty prediction and
        is logged, so one bad task does not cost the batch; when every task fails, the first
        task's error is raised with its HTTP status.
        """
        project = request_project(request)
        if not request.label_config:
            raise InvalidInput("predict request has no label_config")
        config = cached_label_config(request.label_config)
        version = self.model_version(project)
        endpoint = self.orchestrator.predictor_endpoint(project)
        if endpoint is None:
            self.metrics.predicted_tasks.labels("untrained").inc(len(request.tasks))
            return {"results": [empty_prediction(version) for _ in request.tasks]}

        limit = asyncio.Semaphore(self.concurrency)

        async def one(task: Task) -> dict[str, Any] | SegmenterError:
            async with limit:
                try:
                    prediction, size = await self._predict_task(task, config, endpoint.base_url, endpoint.model_name)
                    if size >= RELEASE_AFTER_BYTES:
                        release_free_memory()  # the task's CSV, series and tensors are garbage now
                    return prediction
                except SegmenterError as exc:
                    log.warning("project %s task %s: %s", project, task.id, exc.message)
                    self.metrics.predicted_tasks.labels(type(exc).__name__).inc()
                    return exc

        outcomes = await asyncio.gather(*(one(task) for task in request.tasks))
        errors = [o for o in outcomes if isinstance(o, SegmenterError)]
        if errors and len(errors) == len(outcomes):
            raise errors[0]
        self.metrics.predicted_tasks.labels("ok").inc(len(outcomes) - len(errors))
        return {"results": [empty_prediction(version) if isinstance(o, SegmenterError) else o for o in outcomes]}

    async def _predict_task(self, task: Task, config: LabelConfig, base_url: str, model: str) -> tuple[dict[str, Any], int]:
        """One task's prediction and the size of its CSV."""
        reference = task.data.get(config.data_key)
        if reference is None:
            raise InvalidInput(f"task {task.id} has no data field {config.data_key!r}")
        raw = await self.fetcher.fetch(reference)
        if len(raw) <= INLINE_PARSE_BYTES:
            series = read_series(raw, config, max_rows=self.max_rows)
        else:
            series = await asyncio.to_thread(read_series, raw, config, max_rows=self.max_rows)
        inferred = await self.predictor.infer(base_url, model, series.values)
        return to_prediction(inferred.outputs, inferred.parameters, series, config), len(raw)


def to_prediction(outputs: dict[str, np.ndarray], parameters: dict, series: Series, config: LabelConfig) -> dict[str, Any]:
    """Map the predictor's row-indexed segments onto LS regions in the CSV's own time values.

    Returns a :class:`~gateway.protocol.TaskPrediction` as a dict whose regions are
    :class:`~gateway.protocol.Region` dicts, fields in the models' order.
    """
    try:
        labels = json.loads(parameters.get("labels", "[]"))
        starts, ends = outputs["segment_start"], outputs["segment_end"]
        classes, scores = outputs["segment_label"], outputs["segment_score"]
    except (KeyError, ValueError, TypeError) as exc:
        raise SegmenterError(f"predictor response lacks segment outputs: {exc}", status_code=502) from exc
    regions = []
    for start, end, label, score in zip(starts.tolist(), ends.tolist(), classes.tolist(), scores.tolist()):
        if not 1 <= label <= len(labels) or labels[label - 1] not in config.labels:
            continue  # a label the current config no longer has
        if not (0 <= start <= end < len(series)):
            continue
        regions.append({
            "from_name": config.from_name,
            "to_name": config.to_name,
            "type": "timeserieslabels",
            "score": round(float(score), 4),
            "value": {"start": series.time_value(start), "end": series.time_value(end), "instant": start == end, "timeserieslabels": [labels[label - 1]]},
        })
    overall = float(np.mean([r["score"] for r in regions])) if regions else 0.0
    return {"result": regions, "score": round(overall, 4), "model_version": str(parameters.get("model_version", ""))}
