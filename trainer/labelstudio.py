"""Fetching a project's labelled tasks from Label Studio and turning them into training samples."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from trainer.fit import LabelledSeries
from trainer.settings import TrainingSettings
from tscore.errors import DataFetchError, InvalidInput, SegmenterError
from tscore.fetch import TaskDataFetcher
from tscore.labelconfig import LabelConfig, parse_label_config
from tscore.labels import annotations_to_rows
from tscore.series import read_series

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """What a training run learns from."""

    config: LabelConfig
    samples: list[LabelledSeries]
    skipped: dict[int, str] = field(default_factory=dict)
    """Task id → why it was left out (unreadable CSV, no usable regions, ...)."""


def _as_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    if hasattr(item, "model_dump"):
        return item.model_dump()
    return dict(item)


def fetch_labelled_tasks(client: LabelStudio, project: int, page_size: int) -> tuple[str, list[dict[str, Any]]]:
    """The project's label config and every task that has at least one usable annotation."""
    label_config = client.projects.get(id=project).label_config
    tasks = []
    for task in client.tasks.list(project=project, fields="all", page_size=page_size):
        task = _as_dict(task)
        annotations = [_as_dict(a) for a in task.get("annotations") or []]
        if any(not a.get("was_cancelled") for a in annotations):
            task["annotations"] = annotations
            tasks.append(task)
    return label_config, tasks


async def build_training_data(project: int, settings: TrainingSettings, client: LabelStudio | None = None) -> TrainingData:
    """Download the labelled tasks' CSVs and paint their annotations onto rows.

    Tasks that cannot be read are skipped and reported, never fatal on their own.

    Raises:
        InvalidInput: the label config is unusable or no task could be used.
    """
    client = client or LabelStudio(base_url=settings.label_studio_url, api_key=settings.label_studio_api_key, timeout=settings.download_timeout)
    try:
        label_config, tasks = await asyncio.to_thread(fetch_labelled_tasks, client, project, settings.label_studio_page_size)
    except (httpx.HTTPError, ApiError) as exc:
        detail = f"{exc.status_code} {str(exc.body)[:200]}" if isinstance(exc, ApiError) else f"{exc.__class__.__name__}: {exc}"
        raise DataFetchError(f"cannot read project {project} from Label Studio at {settings.label_studio_url}: {detail}") from exc
    config = parse_label_config(label_config)
    fetcher = TaskDataFetcher.from_settings(settings)
    data = TrainingData(config=config, samples=[])
    try:
        for task in tasks:
            task_id = int(task.get("id", -1))
            try:
                raw = await fetcher.fetch((task.get("data") or {}).get(config.data_key))
                series = await asyncio.to_thread(read_series, raw, config, max_rows=settings.max_series_rows)
                target = annotations_to_rows(task["annotations"], series, config)
            except SegmenterError as exc:
                data.skipped[task_id] = exc.message
                log.warning("task %s skipped: %s", task_id, exc.message)
                continue
            if not (target.classes > 0).any():
                data.skipped[task_id] = "no regions with a configured label"
                continue
            data.samples.append(LabelledSeries(series.values, target, name=f"task {task_id}"))
    finally:
        await fetcher.aclose()
    if not data.samples:
        raise InvalidInput(f"project {project} has no usable labelled tasks ({len(tasks)} annotated, {len(data.skipped)} skipped)")
    log.info("project %s: %d labelled task(s), %d skipped", project, len(data.samples), len(data.skipped))
    return data
