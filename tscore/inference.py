"""Running a trained network over a whole series: windows, batching, overlap averaging."""

from __future__ import annotations

import numpy as np
import torch

from tscore.network import SegmenterNet
from tscore.windows import overlap_weights, window_index, window_starts


def normalise(values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Per-channel standardisation with the statistics stored in the model."""
    return ((values - mean) / std).astype(np.float32, copy=False)


@torch.inference_mode()
def predict_probs(
    net: SegmenterNet,
    values: np.ndarray,
    window: int,
    *,
    device: torch.device | None = None,
    batch_windows: int = 1024,
) -> np.ndarray:
    """Class probabilities ``[T, K + 1]`` for a normalised ``[T, C]`` series.

    Windows of ``window`` rows overlap by 50 %; each row's probabilities are the weighted
    average of every window covering it. A series shorter than one window runs whole.
    """
    device = device or next(net.parameters()).device
    length = len(values)
    size = min(window, length)
    starts = window_starts(length, size, max(1, size // 2))
    index = torch.from_numpy(window_index(starts, size)).to(device)
    series = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(device)
    weights = torch.from_numpy(overlap_weights(size)).to(device)
    num_classes = net.spec.num_classes
    total = torch.zeros((num_classes, length), dtype=torch.float32, device=device)
    norm = torch.zeros(length, dtype=torch.float32, device=device)
    norm.index_add_(0, index.reshape(-1), weights.expand(len(index), -1).reshape(-1))
    autocast = device.type == "cuda"
    for chunk in torch.split(index, batch_windows):
        with torch.autocast(device_type=device.type, enabled=autocast):
            logits = net(series[chunk])
        # Classes-first: a softmax over a short contiguous axis is an order of magnitude faster.
        probs = torch.softmax(logits.float().transpose(1, 2), dim=1) * weights
        total.index_add_(1, chunk.reshape(-1), probs.transpose(0, 1).reshape(num_classes, -1))
    return (total / norm).T.contiguous().cpu().numpy()
