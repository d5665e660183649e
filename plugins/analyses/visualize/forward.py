"""The model's forward pass up to one layer, and no further.

Optimising an image for a unit of ``conv3_1`` needs the network only up to
``conv3_1``: the layers after it cost forward time (and, with autograd on, memory)
and contribute nothing to the gradient. :class:`LayerForward` runs the whole model
once, counting how often the layer's module is called in one forward (a shared
module may be called several times; the run's captures keep the last call), and
from then on stops the forward right after that call by raising from a forward hook.
The hook is removed in ``finally`` on every call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from probe.capture import no_inplace


class _Reached(Exception):
    """Raised by the hook once the layer's output exists (carries it)."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output


class LayerForward:
    """``forward(inputs) -> Tensor``: the output of ``module`` when ``model`` runs on ``inputs``.

    Args:
        model: The model (eval mode); in-place modules should be off (:func:`no_inplace`).
        module: The layer's module.
    """

    def __init__(self, model: nn.Module, module: nn.Module) -> None:
        self.model, self.module = model, module
        self.calls: int | None = None  # the module's calls per forward, from the first run

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        seen, last = 0, None

        def hook(_module: nn.Module, _inputs: tuple, output: object) -> None:
            nonlocal seen, last
            seen += 1
            last = output[0] if isinstance(output, (tuple, list)) else output
            if self.calls is not None and seen == self.calls:
                raise _Reached(last)

        handle = self.module.register_forward_hook(hook)
        try:
            self.model(inputs)
        except _Reached as reached:
            return reached.output
        finally:
            handle.remove()
        if not isinstance(last, torch.Tensor):
            raise RuntimeError("the layer's module was not called with a tensor output in "
                               "the model's forward")
        self.calls = seen
        return last


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """The model's parameters do not require grad within the block (restored in
    ``finally``): optimising an image needs the image's gradient only, so no backward
    step computes a weight gradient."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        for param in params:
            param.requires_grad_(False)
        yield
    finally:
        for param in params:
            param.requires_grad_(True)


__all__ = ["LayerForward", "frozen", "no_inplace"]
