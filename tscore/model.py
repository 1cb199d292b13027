"""A trained segmenter as stored on disk: network + normalisation + decoding + labels."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tscore.artifacts import META_FILE, WEIGHTS_FILE
from tscore.errors import InvalidInput, ModelNotFound
from tscore.inference import normalise, predict_probs
from tscore.network import NetworkSpec, SegmenterNet
from tscore.segments import Decoding, Segment, decode


@dataclass
class TrainedModel:
    """Everything needed to segment a series with one model version.

    Attributes:
        net: the network, in eval mode on its device.
        mean, std: per-channel normalisation learnt from the training data.
        window: rows per inference window (SEQUENCE_SIZE at training time).
        decoding: how probabilities become segments.
        meta: the full metadata of the version (labels, channels, version, metrics, ...).
    """

    net: SegmenterNet
    mean: np.ndarray
    std: np.ndarray
    window: int
    decoding: Decoding
    meta: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.meta.get("version", ""))

    @property
    def labels(self) -> list[str]:
        return list(self.meta.get("labels", []))

    @property
    def num_channels(self) -> int:
        return self.net.spec.num_channels

    @classmethod
    def load(cls, directory: str | Path, device: torch.device | None = None) -> TrainedModel:
        """Load a version directory (``model.pt`` + ``meta.json``).

        Raises:
            ModelNotFound: when either file is missing or unreadable.
        """
        directory = Path(directory)
        device = device or torch.device("cpu")
        try:
            meta = json.loads((directory / META_FILE).read_text())
            state = torch.load(directory / WEIGHTS_FILE, map_location=device, weights_only=True)
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            raise ModelNotFound(f"no loadable model in {directory}: {exc}") from exc
        net = SegmenterNet(NetworkSpec(**meta["network"])).to(device)
        net.load_state_dict(state)
        net.eval()
        return cls(
            net=net,
            mean=np.asarray(meta["normalisation"]["mean"], dtype=np.float32),
            std=np.asarray(meta["normalisation"]["std"], dtype=np.float32),
            window=int(meta["settings"]["sequence_size"]),
            decoding=Decoding.from_json(meta["decoding"]),
            meta=meta,
        )

    def save(self, directory: str | Path) -> None:
        """Write ``model.pt`` and ``meta.json`` into ``directory`` (a fresh, private one)."""
        directory = Path(directory)
        torch.save(self.net.state_dict(), directory / WEIGHTS_FILE)
        meta = dict(self.meta)
        meta["network"] = self.net.spec.to_json()
        meta["normalisation"] = {"mean": self.mean.tolist(), "std": self.std.tolist()}
        meta["decoding"] = self.decoding.to_json()
        (directory / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))

    def probabilities(self, values: np.ndarray) -> np.ndarray:
        """``[T, K + 1]`` class probabilities for a raw ``[T, C]`` series.

        Raises:
            InvalidInput: when the number of channels differs from the model's.
        """
        if values.ndim != 2 or values.shape[1] != self.num_channels:
            raise InvalidInput(
                f"series has shape {list(values.shape)}; this model expects [T, {self.num_channels}]"
            )
        if len(values) == 0:
            return np.zeros((0, self.net.spec.num_classes), dtype=np.float32)
        device = next(self.net.parameters()).device
        return predict_probs(self.net, normalise(values, self.mean, self.std), self.window, device=device)

    def segments(self, values: np.ndarray) -> tuple[list[Segment], np.ndarray]:
        """Segments (row indices, class ids ≥ 1) and the probabilities they came from."""
        probs = self.probabilities(values)
        return decode(probs, self.decoding), probs
