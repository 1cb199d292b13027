"""Adam with torch.optim.Adam's exact update, without its one-time import of ``torch._dynamo``.

Every ``torch.optim`` optimizer imports ``torch._dynamo`` on first use (its ``__init__`` and
``step`` are wrapped by ``torch._disable_dynamo``). That import takes 1-3 s of CPU, paid by every
training process, which on a small CPU node is as long as a whole training run on a few tasks.
The trainer never compiles, so it steps its parameters with the same arithmetic as
``torch.optim.Adam`` (default options: no weight decay, no AMSGrad) on public tensor operations.
``tests/trainer/test_adam.py`` checks the two stay identical, alone and under a ``GradScaler``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


class Adam:
    """Adam (Kingma & Ba) over one parameter group.

    Duck-types the parts of ``torch.optim.Optimizer`` that the training loop and
    ``torch.amp.GradScaler`` use: ``param_groups``, ``zero_grad`` and ``step``.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        params = [p for p in params if p.requires_grad]
        if not params:
            raise ValueError("Adam got no parameters to optimise")
        if lr <= 0 or eps <= 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid Adam hyper-parameters: lr={lr}, betas={betas}, eps={eps}")
        self.param_groups = [{"params": params, "lr": lr, "betas": betas, "eps": eps}]
        self.steps = 0
        self._first_moments = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        self._second_moments = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients of every parameter (``set_to_none``) or zero them in place."""
        for param in self.param_groups[0]["params"]:
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            else:
                param.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        self.steps += 1
        step_size = group["lr"] / (1 - beta1**self.steps)
        second_moment_correction = math.sqrt(1 - beta2**self.steps)
        for param, first, second in zip(group["params"], self._first_moments, self._second_moments):
            if param.grad is None:
                continue
            grad = param.grad
            first.lerp_(grad, 1 - beta1)
            second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denominator = (second.sqrt() / second_moment_correction).add_(group["eps"])
            param.addcdiv_(first, denominator, value=-step_size)
