"""Capture: forward hooks on named layers, always removed in ``finally``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType

import torch
from torch import nn


class Capture:
    """Record the outputs of named modules during forward passes.

    Use as a context manager; hooks are removed on exit even when the forward
    pass raises. In-place activations (``ReLU(inplace=True)``) are switched off
    while capturing so a captured tensor is never overwritten by a later layer,
    and restored on exit.

    Args:
        model: The model to hook.
        layers: ``{layer name: module path}``.
        detach: Detach captured tensors from the autograd graph.

    Example:
        >>> with Capture(model, {"conv1": "features.0"}) as cap:
        ...     model(x)
        ...     acts = cap.take()
    """

    def __init__(self, model: nn.Module, layers: Mapping[str, str], detach: bool = True) -> None:
        self.model = model
        self.layers = dict(layers)
        self.detach = detach
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._inplace: list[nn.Module] = []
        self._store: dict[str, torch.Tensor] = {}
        modules = dict(model.named_modules())
        missing = [path for path in self.layers.values() if path not in modules]
        if missing:
            raise KeyError(f"model has no module {missing[0]!r}")
        self._modules = {name: modules[path] for name, path in self.layers.items()}

    def __enter__(self) -> Capture:
        try:
            for module in self.model.modules():
                if getattr(module, "inplace", False) is True:
                    module.inplace = False
                    self._inplace.append(module)
            for name, module in self._modules.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self.close()
            raise
        return self

    def _hook(self, name: str):
        def record(module: nn.Module, inputs: tuple, output: object) -> None:
            tensor = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(tensor, torch.Tensor):
                self._store[name] = tensor.detach() if self.detach else tensor
        return record

    def take(self) -> dict[str, torch.Tensor]:
        """Return the captured activations and forget them."""
        store, self._store = self._store, {}
        return store

    def close(self) -> None:
        """Remove every hook and restore in-place flags."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for module in self._inplace:
            module.inplace = True
        self._inplace.clear()
        self._store = {}

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def count_hooks(model: nn.Module) -> int:
    """Number of forward (pre-)hooks on any module of ``model`` (used by tests)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@contextmanager
def no_inplace(model: nn.Module) -> Iterator[None]:
    """Switch off ``inplace`` on every module for the block (restored in ``finally``), as
    :class:`Capture` does, so a layer's output is never overwritten by a later module
    (extra forwards and backwards of an analysis: attribution, feature visualisation)."""
    changed = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    try:
        for module in changed:
            module.inplace = False
        yield
    finally:
        for module in changed:
            module.inplace = True
