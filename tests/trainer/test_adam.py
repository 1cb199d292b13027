"""The trainer's Adam: torch.optim.Adam's trajectory, GradScaler-compatible, no torch._dynamo import."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from trainer.adam import Adam


def network(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv1d(3, 8, 1), nn.Flatten(), nn.Linear(8 * 5, 4))


def trajectory(make_optimiser, *, steps: int = 6, scaler: torch.amp.GradScaler | None = None) -> list[torch.Tensor]:
    """Parameters after ``steps`` updates on a fixed sequence of batches."""
    net = network()
    optimiser = make_optimiser(net.parameters())
    data = torch.Generator().manual_seed(1)
    for _ in range(steps):
        inputs, targets = torch.randn(16, 3, 5, generator=data), torch.randint(0, 4, (16,), generator=data)
        loss = nn.functional.cross_entropy(net(inputs), targets)
        optimiser.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimiser.step()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(optimiser)
            scaler.step(optimiser)
            scaler.update()
    return [p.detach().clone() for p in net.parameters()]


def test_it_follows_torch_adam_step_for_step():
    ours = trajectory(lambda params: Adam(params, lr=1e-2))
    reference = trajectory(lambda params: torch.optim.Adam(params, lr=1e-2))
    start = [p.detach() for p in network().parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(ours, start)), "the parameters never moved"
    for mine, theirs in zip(ours, reference):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7)


def test_a_grad_scaler_drives_it_like_torch_adam():
    """The CUDA path scales the loss; GradScaler only needs param_groups and step()."""

    def scaler() -> torch.amp.GradScaler:
        return torch.amp.GradScaler("cpu", init_scale=2.0**10)

    ours = trajectory(lambda params: Adam(params, lr=1e-2), scaler=scaler())
    reference = trajectory(lambda params: torch.optim.Adam(params, lr=1e-2), scaler=scaler())
    for mine, theirs in zip(ours, reference):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7)


def test_parameters_without_a_gradient_are_left_alone():
    frozen, trained = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    optimiser = Adam([frozen, trained], lr=0.1)
    (trained * torch.tensor([1.0, -1.0, 2.0])).sum().backward()
    optimiser.step()
    assert torch.equal(frozen, torch.ones(3))
    assert not torch.equal(trained, torch.ones(3))
    optimiser.zero_grad()
    assert trained.grad is None


@pytest.mark.parametrize("options", [{"lr": 0}, {"eps": 0}, {"betas": (0.9, 1.0)}])
def test_nonsensical_hyper_parameters_are_refused(options):
    with pytest.raises(ValueError, match="hyper-parameters"):
        Adam([nn.Parameter(torch.ones(1))], **options)


def test_training_does_not_import_torch_dynamo():
    """The point of this module: a training process skips torch._dynamo's 1-3 s import."""
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from trainer.fit import LabelledSeries, fit
        from trainer.settings import TrainingSettings
        from tscore.labels import RowLabels

        rows = 120
        classes = np.zeros(rows, dtype=np.int64)
        classes[40:80] = 1
        values = np.random.default_rng(0).normal(size=(rows, 2)).astype(np.float32) + classes[:, None]
        samples = [LabelledSeries(values, RowLabels(classes, ranges={1: [(40, 79)]}), f"t{i}") for i in range(3)]
        fit(samples, ["Run"], ["a", "b"], TrainingSettings(_env_file=None, train_epochs=2, sequence_size=20, hidden_size=4))
        print("torch._dynamo" in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
