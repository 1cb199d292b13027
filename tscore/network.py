"""The segmentation network: a recurrent tagger that gives every time step a class distribution."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class NetworkSpec:
    """Hyper-parameters that define the network's shape; stored with every model.

    Attributes:
        num_channels: input features per time step.
        num_classes: output classes including background (class 0).
        hidden_size: LSTM hidden units per direction (seed: HIDDEN_SIZE).
        num_layers: stacked LSTM layers.
        dropout: dropout between layers and before the classifier.
        bidirectional: read each window in both directions (segment boundaries need the future).
    """

    num_channels: int
    num_classes: int
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.2
    bidirectional: bool = True

    def to_json(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


class SegmenterNet(nn.Module):
    """Multi-layer LSTM tagger: ``[N, L, C]`` features → ``[N, L, K + 1]`` logits."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        self.lstm = nn.LSTM(
            input_size=spec.num_channels,
            hidden_size=spec.hidden_size,
            num_layers=spec.num_layers,
            dropout=spec.dropout if spec.num_layers > 1 else 0.0,
            bidirectional=spec.bidirectional,
            batch_first=True,
        )
        width = spec.hidden_size * (2 if spec.bidirectional else 1)
        self.head = nn.Sequential(nn.Dropout(spec.dropout), nn.Linear(width, spec.num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Per-step logits for a batch of windows."""
        hidden, _ = self.lstm(features)
        return self.head(hidden)


def pick_device(preference: str = "auto") -> torch.device:
    """``cuda`` when asked for or available under ``auto``, else ``cpu``."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")
