"""Lucid's redirected ReLU gradient, so a unit that starts silent can still be optimised.

A unit behind a ReLU that no pixel of the starting image excites has a zero gradient:
plain ascent never moves. Lucid (``redirected_relu_grad``, on by default in
``render_vis``) changes the ReLU's backward pass during optimisation only: for an
image whose ordinary ReLU gradient is zero everywhere, it passes the gradient through
the negative inputs too, except where it would push them lower. The forward pass is
unchanged, so the values reached and reported are the model's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class RedirectedReLU(torch.autograd.Function):
    """``relu(x)`` forward; Lucid's redirected gradient backward (per image)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        negative = x < 0
        ctx.save_for_backward(negative)  # one byte per entry is all the backward needs
        return x.masked_fill(negative, 0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (negative,) = ctx.saved_tensors
        relu_grad = grad.masked_fill(negative, 0)
        # descent on the loss moves x by -grad: grad > 0 at x < 0 pushes it lower
        if negative.dim() == 0:
            return relu_grad if bool(relu_grad != 0) else \
                grad.masked_fill(negative & (grad > 0), 0)
        alive = relu_grad.flatten(1).ne(0).any(1)  # per image of the batch
        if bool(alive.all()):  # the usual case once the images excite their units
            return relu_grad
        redirected = grad.masked_fill(negative & (grad > 0), 0)
        return torch.where(alive.view(-1, *([1] * (grad.dim() - 1))), relu_grad, redirected)


@contextmanager
def redirected_relus(model: nn.Module) -> Iterator[int]:
    """Within the block every ``nn.ReLU`` of ``model`` back-propagates the redirected
    gradient (in-place ones run out of place); yields how many were changed.

    A ReLU written as a function in ``forward`` keeps its ordinary gradient.
    """
    modules = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    inplace = [m.inplace for m in modules]
    own = [m.__dict__.get("forward") for m in modules]
    try:
        for module in modules:
            # the module's forward replaced (not hooked) so the ReLU runs once, not twice
            module.inplace = False
            module.forward = RedirectedReLU.apply
        yield len(modules)
    finally:
        for module, flag, forward in zip(modules, inplace, own, strict=True):
            module.inplace = flag
            if forward is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = forward
