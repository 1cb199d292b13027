"""Windowed inference over whole series (tscore.inference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tscore.inference import predict_probs, predict_probs_many
from tscore.network import NetworkSpec, SegmenterNet


@pytest.fixture(scope="module")
def net() -> SegmenterNet:
    torch.manual_seed(0)
    return SegmenterNet(NetworkSpec(num_channels=3, num_classes=4, num_layers=1)).eval()


def series(length: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(length, 3)).astype(np.float32)


def test_probabilities_cover_every_row_and_sum_to_one(net: SegmenterNet) -> None:
    probs = predict_probs(net, series(237, 1), 50)

    assert probs.shape == (237, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_many_series_at_once_match_each_series_alone(net: SegmenterNet) -> None:
    """Sharing network calls must not let a window see its neighbour series."""
    pieces = [series(120, 2), series(31, 3), series(0, 4), series(200, 5), series(50, 6)]

    together = predict_probs_many(net, pieces, 50)

    assert [len(p) for p in together] == [len(p) for p in pieces]
    for piece, joint in zip(pieces, together):
        np.testing.assert_allclose(joint, predict_probs(net, piece, 50) if len(piece) else np.zeros((0, 4)), rtol=1e-5, atol=1e-6)


def test_only_empty_series_give_empty_probabilities(net: SegmenterNet) -> None:
    assert [p.shape for p in predict_probs_many(net, [series(0, 7), series(0, 8)], 50)] == [(0, 4), (0, 4)]
