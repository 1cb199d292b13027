"""The segmentation network (tscore.network)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tscore.network import NetworkSpec, SegmenterNet


def conv_reference(net: SegmenterNet, features: torch.Tensor) -> torch.Tensor:
    """The network written with the ``Conv1d`` modules themselves (how its weights are defined)."""
    length, stride = features.shape[1], net.spec.downsample
    local = net.encoder(features.transpose(1, 2))
    padding = (-length) % stride
    summary = net.summarise(nn.functional.pad(local, (0, padding)))
    context, _ = net.lstm(summary.transpose(1, 2))
    context = net.context_in(context.transpose(1, 2)).repeat_interleave(stride, dim=2)[:, :, :length]
    return net.classify(torch.relu(net.local_in(local) + context)).transpose(1, 2)


@pytest.mark.parametrize(("length", "layers"), [(50, 1), (47, 2), (3, 1)])
def test_matrix_products_compute_the_convolutions_the_weights_define(length: int, layers: int) -> None:
    """Stored models keep their meaning: the fast path equals the Conv1d layers it replaces."""
    torch.manual_seed(0)
    net = SegmenterNet(NetworkSpec(num_channels=6, num_classes=5, num_layers=layers)).eval()
    features = torch.randn(4, length, 6)

    with torch.no_grad():
        torch.testing.assert_close(net(features), conv_reference(net, features), rtol=1e-5, atol=1e-5)


def test_training_drops_whole_channels_and_evaluation_drops_nothing() -> None:
    torch.manual_seed(0)
    net = SegmenterNet(NetworkSpec(num_channels=2, num_classes=3, dropout=0.5))
    features = torch.ones(8, 10, 2)

    dropped = net.train()._drop_channels(features)
    kept_per_channel = (dropped != 0).all(dim=1) | (dropped == 0).all(dim=1)

    assert kept_per_channel.all(), "a channel is either kept for the whole window or dropped"
    assert (dropped == 0).any() and (dropped == 2).any()
    assert torch.equal(net.eval()._drop_channels(features), features)
