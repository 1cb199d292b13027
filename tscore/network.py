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
        downsample: the LSTM reads every ``downsample``-th step of a convolutional summary of
            the window; a full-resolution skip path keeps boundaries and instants sharp.
        conv_width: channels of the convolutional encoder.
    """

    num_channels: int
    num_classes: int
    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.2
    bidirectional: bool = True
    downsample: int = 5
    conv_width: int = 32

    def to_json(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


class SegmenterNet(nn.Module):
    """Convolution-fed LSTM tagger: ``[N, L, C]`` features → ``[N, L, K + 1]`` logits.

    A convolution encodes each step with its neighbours; a strided convolution summarises
    ``downsample`` steps at a time for the (bidirectional) LSTM, which carries the context across
    the window at a fraction of the per-step cost; the classifier sees each step's own encoding
    next to the LSTM state of its stretch.

    Every layer after the first convolution acts on single steps or on non-overlapping groups of
    steps, so it runs as a matrix product on channels-last tensors, about twice as fast on a CPU
    as the equivalent ``Conv1d``. The parameters stay ``Conv1d`` parameters, so the stored
    weights keep their layout.
    """

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        width, stride = spec.conv_width, max(1, spec.downsample)
        self.encoder = nn.Sequential(nn.Conv1d(spec.num_channels, width, 5, padding=2), nn.ReLU())
        self.summarise = nn.Conv1d(width, width, stride, stride=stride)
        self.lstm = nn.LSTM(
            input_size=width,
            hidden_size=spec.hidden_size,
            num_layers=spec.num_layers,
            dropout=spec.dropout if spec.num_layers > 1 else 0.0,
            bidirectional=spec.bidirectional,
            batch_first=True,
        )
        context = spec.hidden_size * (2 if spec.bidirectional else 1)
        # The classifier's first layer sees [local; context]; being linear, it is split so the
        # context half runs at the LSTM's reduced rate and only 32 channels are upsampled.
        self.local_in = nn.Conv1d(width, 32, 1)
        self.context_in = nn.Conv1d(context, 32, 1, bias=False)
        self.classify = nn.Conv1d(32, spec.num_classes, 1)

    def _drop_channels(self, features: torch.Tensor) -> torch.Tensor:
        """Spatial dropout on ``[N, L, C]``: whole channels of a window are dropped.

        Neighbouring steps of a channel are strongly correlated, so per-element masks regularise
        little, and drawing them costs a quarter of a CPU training step.
        """
        if not self.training or self.spec.dropout == 0:
            return features
        return nn.functional.dropout1d(features.transpose(1, 2), self.spec.dropout, training=True).transpose(1, 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Per-step logits ``[N, L, K + 1]`` for a batch of windows ``[N, L, C]``."""
        batch, length = features.shape[:2]
        stride = max(1, self.spec.downsample)
        local = self.encoder(features.transpose(1, 2)).transpose(1, 2).contiguous()  # [N, L, W]
        padding = (-length) % stride
        padded = nn.functional.pad(local, (0, 0, 0, padding)) if padding else local
        # The summarising convolution has stride == kernel: a product over each group of steps.
        groups = padded.reshape(batch, (length + padding) // stride, stride * self.spec.conv_width)
        summary = nn.functional.linear(groups, self.summarise.weight.permute(0, 2, 1).reshape(self.spec.conv_width, -1), self.summarise.bias)
        context, _ = self.lstm(summary)
        context = nn.functional.linear(self._drop_channels(context), self.context_in.weight[:, :, 0])
        context = context.repeat_interleave(stride, dim=1)[:, :length]
        hidden = torch.relu(nn.functional.linear(self._drop_channels(local), self.local_in.weight[:, :, 0], self.local_in.bias) + context)
        return nn.functional.linear(hidden, self.classify.weight[:, :, 0], self.classify.bias)


def pick_device(preference: str = "auto") -> torch.device:
    """``cuda`` when asked for or available under ``auto``, else ``cpu``."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")
