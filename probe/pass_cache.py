"""Decoded batches kept from one pass to the next, so a data set is read once per run.

An analysis with two passes (dissection: thresholds, then tallies) would make the
runner read and decode every image twice: for image files with segmentation masks
that is most of the cost of the second pass. When a later pass needs the data
again, the runner keeps the batches the loader produced in the first pass, as
long as they fit a memory budget, and feeds the later passes from them; past the
budget it forgets them and reads the data again (nothing else changes).

The budget is :data:`DEFAULT_MIB` MiB of host memory, or the environment variable
``PROBE_PASS_CACHE_MIB`` (``0`` turns the cache off). Batches are copied when kept
and when handed to a pass that is not the last, so an analysis that changed a
batch in place cannot change what a later pass sees; the last pass gets the kept
tensors themselves (nothing reads them after it).

On the CPU the cache also keeps the first pass's **forward pass** — the model's
outputs and the activations of the layers the later passes capture — when no
analysis of a later pass needs gradients, so a later pass does not run the
model again (the same activations, bit for bit: the model is in eval mode). The
forward results count against the same budget; past it the cache drops them
first and keeps the batches alone while those fit. On an accelerator the
forward pass is cheap beside device memory, so only the batches are kept there.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

from probe.errors import ProbeError

#: Default budget in MiB.
DEFAULT_MIB = 2048
#: Environment variable that sets the budget in MiB (0: off).
ENV = "PROBE_PASS_CACHE_MIB"


def budget_bytes() -> int:
    """The budget in bytes, from ``PROBE_PASS_CACHE_MIB`` or :data:`DEFAULT_MIB`.

    Raises:
        ProbeError: when the variable is not a non-negative number.
    """
    text = os.environ.get(ENV, "").strip()
    if not text:
        return DEFAULT_MIB * 2**20
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise ProbeError(f"{ENV} must be a number of MiB (0 turns the cache off), got {text!r}")
    return int(value * 2**20)


def _bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, Mapping):
        return sum(_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_bytes(v) for v in value)
    return 0


def _copy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    return value


class PassCache:
    """The loader's batches of one pass, kept while they fit ``budget`` bytes.

    Args:
        budget: Bytes the kept batches may take (0: keep nothing).
        forward_layers: Layers whose activations to keep with each batch, with the
            model's outputs, so later passes need not run the model (``None``: keep
            the batches only).
    """

    def __init__(self, budget: int, forward_layers: set[str] | None = None) -> None:
        self.budget = budget
        self.forward_layers = forward_layers
        self._batches: list[Any] = []
        self._forwards: list[dict[str, Any]] | None = [] if forward_layers is not None else None
        self.bytes = 0
        self._forward_bytes = 0
        self._keeping = budget > 0
        self.complete = False
        self._spent: set[str] = set()  # what was handed to the last pass (once each)

    def keep(self, sample: Any, outputs: torch.Tensor | None = None,
             activations: Mapping[str, torch.Tensor] | None = None) -> None:
        """Keep a copy of one batch as read, and of its forward pass when wanted.

        Past the budget the forward passes are forgotten first; past it with the
        batches alone, everything is.
        """
        if not self._keeping:
            return
        size = _bytes(sample)
        forward = None
        if self._forwards is not None and outputs is not None and activations is not None:
            forward = {"outputs": outputs,
                       "activations": {k: v for k, v in activations.items()
                                       if k in self.forward_layers}}
            extra = _bytes(forward)
            if self.bytes + size + extra > self.budget:
                self._drop_forwards()
            else:
                self._forwards.append(_copy(forward))
                self._forward_bytes += extra
                self.bytes += extra
        elif self._forwards is not None:
            self._drop_forwards()
        if self.bytes + size > self.budget:
            self._keeping, self._batches, self._forwards, self.bytes = False, [], None, 0
            return
        self._batches.append(_copy(sample))
        self.bytes += size

    def _drop_forwards(self) -> None:
        self.bytes -= self._forward_bytes
        self._forwards, self._forward_bytes = None, 0

    def close(self) -> None:
        """The pass read every batch: what was kept can feed the next passes."""
        self.complete = self._keeping
        self._keeping = False

    @property
    def has_forward(self) -> bool:
        """Whether later passes can take the model's outputs and activations from here."""
        return self.complete and self._forwards is not None

    def __len__(self) -> int:
        return len(self._batches)

    def __iter__(self) -> Iterator[Any]:
        """Copies of the kept batches, in the order they were read."""
        return iter(self.batches())

    def batches(self, last: bool = False) -> Iterable[Any]:
        """The kept batches, in the order they were read: copies, or with ``last`` (no
        later pass reads them) the kept tensors themselves, each forgotten as it is
        handed out (nothing can read what an analysis changed, and memory is freed as
        the pass goes)."""
        if not self.complete:
            raise RuntimeError("the pass cache is not complete")
        return self._hand_out("batches", self._batches, last)

    def forwards(self, last: bool = False) -> Iterator[dict[str, Any]]:
        """The kept forward passes (``outputs``, ``activations``), batch by batch: copies,
        or with ``last`` the kept tensors themselves (as :meth:`batches`)."""
        if not self.has_forward:
            raise RuntimeError("the pass cache holds no forward passes")
        assert self._forwards is not None
        return iter(self._hand_out("forwards", self._forwards, last))

    def _hand_out(self, name: str, kept: list[Any], last: bool) -> _HandOut:
        """``kept`` as copies, or (``last``) as itself, once: it is spent afterwards."""
        if name in self._spent:
            raise RuntimeError(f"the pass cache's {name} were already handed to the last pass")
        if last:
            self._spent.add(name)
        return _HandOut(kept, forget=last)

    def record(self) -> dict[str, Any]:
        """JSON-ready: whether later passes were fed from memory (``forward``: the model
        was not run again either), and how much it held."""
        return {"used": self.complete, "forward": self.has_forward,
                "mib": round(self.bytes / 2**20, 2),
                "budget_mib": round(self.budget / 2**20, 2)}


class _HandOut:
    """The entries of a list, in order (sized, for the progress bar): copies, or with
    ``forget`` the entries themselves, each dropped from the list as it is yielded."""

    def __init__(self, kept: list[Any], forget: bool) -> None:
        self._kept, self._forget, self._size = kept, forget, len(kept)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Any]:
        for index in range(self._size):
            if not self._forget:
                yield _copy(self._kept[index])
                continue
            item, self._kept[index] = self._kept[index], None
            yield item
        if self._forget:
            self._kept.clear()
