"""One project's segmenter as a KServe model (Open Inference Protocol V2)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput as KServeInvalidInput

from tscore.errors import InvalidInput
from tscore.memory import release_free_memory
from tscore.model import TrainedModel

log = logging.getLogger(__name__)

INPUT_NAME = "series"
SEGMENT_OUTPUTS = ("segment_start", "segment_end", "segment_label", "segment_score")
PROBS_OUTPUT = "probs"
RELEASE_AFTER_ROWS = 50_000


class SegmenterModel(Model):
    """Serves one model version under one name.

    ``load()`` reads the weights and only then marks the model ready.

    Input ``series``: ``FP32 [T, C]``. Outputs: ``segment_start``/``segment_end`` (INT64 row
    indices, inclusive), ``segment_label`` (INT64, 1-based index into the model's labels),
    ``segment_score`` (FP32), and ``probs`` (FP32 ``[T, K + 1]``) when requested through
    ``outputs`` or the request parameter ``probabilities: true``. Response parameters carry
    ``model_version`` and ``labels`` (a JSON list) so callers never guess which model answered.
    """

    def __init__(self, name: str, version_dir: Path, device: torch.device) -> None:
        super().__init__(name)
        self.version_dir = Path(version_dir)
        self.device = device
        self.trained: TrainedModel | None = None

    @property
    def version(self) -> str | None:
        return self.trained.version if self.trained else None

    def load(self) -> bool:
        """Load weights and metadata from ``version_dir``; ready only after success."""
        self.trained = TrainedModel.load(self.version_dir, self.device)
        self.ready = True
        log.info("model %s loaded version %s on %s", self.name, self.trained.version, self.device)
        return self.ready

    async def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None, response_headers: dict[str, str] | None = None
    ) -> InferResponse:
        """Segment the ``series`` input."""
        if not isinstance(payload, InferRequest):
            raise KServeInvalidInput("this model speaks the V2 protocol: POST /v2/models/<name>/infer")
        series = self._series(payload)
        want_probs = bool((payload.parameters or {}).get("probabilities")) or any(
            o.name == PROBS_OUTPUT for o in payload.request_outputs or []
        )
        trained = self.trained
        try:
            segments, probs = await asyncio.to_thread(trained.segments, series)
        except InvalidInput as exc:
            raise KServeInvalidInput(exc.message) from exc
        columns = {
            "segment_start": np.array([s.start for s in segments], dtype=np.int64),
            "segment_end": np.array([s.end for s in segments], dtype=np.int64),
            "segment_label": np.array([s.label for s in segments], dtype=np.int64),
            "segment_score": np.array([s.score for s in segments], dtype=np.float32),
        }
        if want_probs:
            columns[PROBS_OUTPUT] = probs.astype(np.float32)
        if len(series) >= RELEASE_AFTER_ROWS:
            del probs
            release_free_memory()  # the windows and activations of a long series are garbage now
        outputs = []
        for name, array in columns.items():
            output = InferOutput(name=name, shape=list(array.shape), datatype="INT64" if array.dtype == np.int64 else "FP32")
            output.set_data_from_numpy(array, binary_data=bool(payload.use_binary_outputs))
            outputs.append(output)
        return InferResponse(
            # V2 makes the request id optional, but KServe's REST response model requires one.
            response_id=payload.id or uuid.uuid4().hex,
            model_name=self.name,
            infer_outputs=outputs,
            parameters={"model_version": trained.version, "labels": json.dumps(trained.labels)},
            use_binary_outputs=payload.use_binary_outputs,
        )

    def _series(self, payload: InferRequest) -> np.ndarray:
        inputs = [i for i in payload.inputs if i.name == INPUT_NAME] or payload.inputs[:1]
        if not inputs:
            raise KServeInvalidInput(f"request has no {INPUT_NAME!r} input")
        tensor = inputs[0]
        if tensor.datatype != "FP32":
            raise KServeInvalidInput(f"input {tensor.name!r} must be FP32, got {tensor.datatype}")
        expected = self.trained.num_channels
        if len(tensor.shape) != 2 or tensor.shape[1] != expected or tensor.shape[0] < 1:
            raise KServeInvalidInput(f"input {tensor.name!r} has shape {tensor.shape}; expected [T, {expected}] with T >= 1")
        try:
            array = tensor.as_numpy()
        except Exception as exc:  # noqa: BLE001 - kserve raises several types for a malformed tensor
            raise KServeInvalidInput(f"input {tensor.name!r} data does not match its shape {tensor.shape}: {exc}") from exc
        if array.size != tensor.shape[0] * tensor.shape[1]:
            raise KServeInvalidInput(f"input {tensor.name!r} data does not match its shape {tensor.shape}")
        array = np.asarray(array, dtype=np.float32).reshape(tensor.shape)
        if not np.isfinite(array).all():
            raise KServeInvalidInput(f"input {tensor.name!r} contains NaN or infinite values")
        return array

    def get_input_types(self) -> list[dict[str, Any]]:
        channels = self.trained.num_channels if self.trained else -1
        return [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, channels]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        classes = self.trained.net.spec.num_classes if self.trained else -1
        return [
            {"name": "segment_start", "datatype": "INT64", "shape": [-1]},
            {"name": "segment_end", "datatype": "INT64", "shape": [-1]},
            {"name": "segment_label", "datatype": "INT64", "shape": [-1]},
            {"name": "segment_score", "datatype": "FP32", "shape": [-1]},
            {"name": PROBS_OUTPUT, "datatype": "FP32", "shape": [-1, classes]},
        ]
