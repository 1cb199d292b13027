"""Label Studio ML-backend protocol types, tolerant to the variants real LS versions send."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    # LS adds fields between versions; unknown ones are kept, never rejected.
    model_config = ConfigDict(extra="allow")


class SetupRequest(_Lenient):
    """``POST /setup``: LS announces a project and its label config."""

    project: str | int | dict[str, Any] | None = None
    schema_: str | None = Field(None, alias="schema")
    hostname: str | None = None
    access_token: str | None = None
    extra_params: Any = None


class SetupResponse(BaseModel):
    """The version LS stores with every prediction; a change makes LS re-predict."""

    model_version: str


class Task(_Lenient):
    """One task of a /predict request."""

    id: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    project: int | str | None = None


class PredictRequest(_Lenient):
    """``POST /predict``: a batch of tasks of one project."""

    tasks: list[Task]
    project: str | int | dict[str, Any] | None = None
    label_config: str | None = None
    params: dict[str, Any] | None = None


class RegionValue(BaseModel):
    """Where a region lies, in the CSV's own time values."""

    start: Any
    end: Any
    instant: bool
    timeserieslabels: list[str]


class Region(BaseModel):
    """One predicted time-series region."""

    from_name: str
    to_name: str
    type: str = "timeserieslabels"
    score: float
    value: RegionValue


class TaskPrediction(BaseModel):
    """The prediction for one task."""

    result: list[Region]
    score: float
    model_version: str


class PredictResponse(BaseModel):
    """Exactly one item per task, in request order."""

    results: list[TaskPrediction]


class WebhookEvent(_Lenient):
    """``POST /webhook``: a project event (annotation saved, start training, ...)."""

    action: str
    project: int | str | dict[str, Any] | None = None
    annotation: dict[str, Any] | None = None
    task: dict[str, Any] | None = None


class StatusResponse(BaseModel):
    """``GET /health`` and ``GET /``."""

    status: str = "UP"
    model_class: str = "TimeSeriesSegmenter"
    orchestrator: str
