"""Running a trained network over a whole series: windows, batching, overlap averaging."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tscore.network import SegmenterNet
from tscore.windows import overlap_weights, window_index, window_starts


def normalise(values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Per-channel standardisation with the statistics stored in the model."""
    return ((values - mean) / std).astype(np.float32, copy=False)


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
    return predict_probs_many(net, [values], window, device=device, batch_windows=batch_windows)[0]


@torch.inference_mode()
def predict_probs_many(
    net: SegmenterNet,
    series: Sequence[np.ndarray],
    window: int,
    *,
    device: torch.device | None = None,
    batch_windows: int = 1024,
) -> list[np.ndarray]:
    """:func:`predict_probs` for several series at once.

    The series are laid end to end and their windows share the network calls, but no window
    crosses from one series into the next: many short series cost about as much as one long one.
    """
    device = device or next(net.parameters()).device
    lengths = [len(values) for values in series]
    offsets = np.cumsum([0, *lengths])
    num_classes = net.spec.num_classes
    if offsets[-1] == 0:
        return [np.zeros((0, num_classes), dtype=np.float32) for _ in series]
    joined = torch.from_numpy(np.concatenate([np.asarray(v, dtype=np.float32) for v in series if len(v)])).to(device)
    # Windows of equal length go through the network together; only series shorter than
    # ``window`` need a length of their own.
    starts_by_size: dict[int, list[np.ndarray]] = {}
    for length, offset in zip(lengths, offsets):
        if length:
            size = min(window, length)
            starts_by_size.setdefault(size, []).append(offset + window_starts(length, size, max(1, size // 2)))
    total = torch.zeros((num_classes, int(offsets[-1])), dtype=torch.float32, device=device)
    norm = torch.zeros(int(offsets[-1]), dtype=torch.float32, device=device)
    autocast = device.type == "cuda"
    for size, starts in starts_by_size.items():
        index = torch.from_numpy(window_index(np.concatenate(starts), size)).to(device)
        weights = torch.from_numpy(overlap_weights(size)).to(device)
        norm.index_add_(0, index.reshape(-1), weights.expand(len(index), -1).reshape(-1))
        for chunk in torch.split(index, batch_windows):
            with torch.autocast(device_type=device.type, enabled=autocast):
                logits = net(joined[chunk])
            # Classes-first: a softmax over a short contiguous axis is an order of magnitude faster.
            probs = torch.softmax(logits.float().transpose(1, 2), dim=1) * weights
            total.index_add_(1, chunk.reshape(-1), probs.transpose(0, 1).reshape(num_classes, -1))
    probs = (total / norm).T.contiguous().cpu().numpy()
    return np.split(probs, offsets[1:-1])
