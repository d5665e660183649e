"""The ``equivariance`` accumulator: every measurement as declared sums, on the device.

All state is allocated in :meth:`EquivarianceAccumulator.__init__` from the
:class:`~.sweep.Sweep` (so every rank declares the same keys in the same
order) and reduces as sums; there is no merge code. Extra forward passes on
transformed inputs go through ``batch.handle``, inside the runner's batch step.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import torch

from probe import Accumulator, Batch, ModelHandle, RunContext
from probe.transforms import Transform

from . import tables
from .consistency import ConsistencySums, agreement, crop_draws, crop_shift
from .lie import OUTPUT, LieSums, lie_derivatives
from .ridge import GramState
from .schema import TABLES
from .sweep import ErrorKey, Sweep


class EquivarianceAccumulator(Accumulator):
    """Sums over images of every measurement; all state float64 on the run's device.

    State:
        errors: ``Tensor[len(sweep.error_keys), 3]``: Σ‖f(g·x) − g′·f(x)‖²,
            Σ‖g′·f(x)‖² and compared cells, per (layer, transform, magnitude).
        images: ``Tensor[len(sweep.points)]`` int64: images measured per
            (transform, magnitude).
        maps_fit, maps_held: ``{(layer, transform, magnitude): GramState}`` of
            the learned maps, even and odd data-set indices.
        lie: ``{transform: LieSums}`` (continuous transforms, when ``lie``).
        consistency: a :class:`ConsistencySums` (when measured).

    Args:
        sweep: The run's measurement plan (``None``: no data, empty tables).
        device: Where the state lives.
        seed: The run's seed (crop offsets of the consistency measure).
    """

    def __init__(self, sweep: Sweep | None, device: torch.device, seed: int = 0) -> None:
        self.sweep = sweep
        self.seed = seed
        if sweep is None:
            return
        z = {"dtype": torch.float64, "device": device}
        self.error_rows = {key: i for i, key in enumerate(dict.fromkeys(sweep.error_keys))}
        self.point_rows = {key: i for i, key in enumerate(sweep.points)}
        self.add_state("errors", torch.zeros(len(self.error_rows), 3, **z), "sum")
        self.add_state("images", torch.zeros(len(self.point_rows), dtype=torch.int64,
                                             device=device), "sum")
        self.add_state("maps_fit", {k: GramState(sweep.units[k[0]], device)
                                    for k in sweep.fitted})
        self.add_state("maps_held", {k: GramState(sweep.units[k[0]], device)
                                     for k in sweep.fitted})
        self.add_state("lie", {name: LieSums(sweep.order, device)
                               for name in sweep.lie_transforms})
        if sweep.consistency:
            self.add_state("consistency", ConsistencySums(sweep.consistency_steps, device))

    # -- the batch step ----------------------------------------------------------------------
    def update(self, batch: Batch) -> None:
        sweep, handle = self.sweep, batch.handle
        if sweep is None:
            return
        if handle is None:
            raise RuntimeError("equivariance runs extra forward passes through batch.handle, "
                               "which this batch lacks (build batches with the runner)")
        # measure in the dtype the model computes in (float64 models: float64)
        dtype = batch.outputs.dtype if batch.outputs.is_floating_point() else batch.images.dtype
        images = batch.images.to(dtype)
        base = {name: batch.activations[name].to(dtype) for name in sweep.layers}
        base[OUTPUT] = batch.outputs.to(dtype)
        held = (batch.indices % 2 == 1).to(images.device)
        with torch.no_grad():
            for transform in sweep.transforms:
                for magnitude in sweep.magnitudes[transform.name]:
                    self._direct(handle, transform, magnitude, images, base, held)
        for name in sweep.lie_transforms:
            result, _ = lie_derivatives(handle, images, sweep.transform(name), sweep.order,
                                        sweep.grids, sweep.grids.get(OUTPUT))
            self.lie[name].update(result)
        if sweep.consistency:
            with torch.no_grad():
                self._consistency(handle, batch, images)

    def _direct(self, handle: ModelHandle, transform: Transform, magnitude: float,
                images: torch.Tensor, base: Mapping[str, torch.Tensor],
                held: torch.Tensor) -> None:
        sweep = self.sweep
        assert sweep is not None
        self.images[self.point_rows[(transform.name, magnitude)]] += len(images)
        if magnitude == transform.identity:
            moved = dict(base)
        else:
            inputs = handle.normalize(transform.apply(images, magnitude))
            outputs, moved = handle.capture(inputs, sweep.layers)
            moved = {n: v.to(images.dtype) for n, v in moved.items()}
            moved[OUTPUT] = outputs.to(images.dtype)
        for layer in [*sweep.layers, OUTPUT]:
            plain, target = base[layer], moved[layer]
            grid = sweep.grids.get(layer)
            if plain.dim() == 4 and grid is not None:
                acted, mask = transform.act(plain, magnitude, grid)
                weight = mask.to(plain.dtype)
                cells = mask.sum() * len(plain)
            else:
                acted, weight = plain, torch.ones((), dtype=plain.dtype, device=plain.device)
                cells = torch.tensor(len(plain), device=plain.device)
            sums = torch.stack([(((target - acted) ** 2) * weight).sum().double(),
                                ((acted ** 2) * weight).sum().double(), cells.double()])
            key: ErrorKey = (layer, transform.name, magnitude)
            self.errors[self.error_rows[key]] += sums.to(self.errors.device)
            if key in self.maps_fit:
                self._fit_rows(key, acted, target, plain, weight, held)

    def _fit_rows(self, key: ErrorKey, acted: torch.Tensor, target: torch.Tensor,
                  plain: torch.Tensor, weight: torch.Tensor, held: torch.Tensor) -> None:
        units = plain.shape[1]
        if plain.dim() == 4:
            mask = weight.bool()
            rows = [t.movedim(1, -1)[:, mask] for t in (acted, target, plain)]  # [B, n, K]
        else:
            rows = [t[:, None, :] for t in (acted, target, plain)]
        for half, select in ((self.maps_fit[key], ~held), (self.maps_held[key], held)):
            if bool(select.any()):
                half.update(*(r[select].reshape(-1, units) for r in rows))

    def _consistency(self, handle: ModelHandle, batch: Batch, images: torch.Tensor) -> None:
        sweep = self.sweep
        assert sweep is not None
        sums: ConsistencySums = self.consistency
        h = images.shape[-1]
        pad = max(1, round(sweep.consistency_shift * h))
        draws = crop_draws(batch.indices, self.seed)
        off = torch.floor(draws * (2 * pad + 1)).long().to(images.device)
        forward, normalize = handle.forward, handle.normalize
        first, second = (off[:, 0], off[:, 1]), (off[:, 2], off[:, 3])
        out1 = forward(normalize(crop_shift(images, *first, pad)))
        out2 = forward(normalize(crop_shift(images, *second, pad)))
        agree, n, _, _ = agreement(out1, out2, first, second, pad)
        sums.agree += agree
        sums.pairs += n
        labels = batch.labels.to(images.device)
        outputs = batch.outputs
        truth = labels if outputs.dim() == 2 else \
            batch.target.to(images.device) if batch.target is not None else None
        if truth is not None:
            known = truth >= 0
            sums.correct += ((outputs.argmax(1) == truth) & known).double().sum()
            sums.labelled += known.double().sum()
        steps = sweep.consistency_steps
        zeros = torch.zeros(len(images), dtype=torch.long, device=images.device)
        shifted = [forward(normalize(crop_shift(images, zeros + steps - k, zeros + steps - k,
                                                steps))) for k in range(steps + 1)]
        classes = labels if outputs.dim() == 2 else None
        if classes is not None:
            classes = torch.where(classes >= 0, classes, shifted[0].argmax(1))
        for k in range(steps):
            a = (zeros + steps - k, zeros + steps - k)
            b = (zeros + steps - k - 1, zeros + steps - k - 1)
            _, n, change, flipped = agreement(shifted[k], shifted[k + 1], a, b, steps, classes)
            sums.steps[k] += torch.stack([n, change, flipped])

    # -- finishing ---------------------------------------------------------------------------
    def finalize(self, context: RunContext) -> dict[str, pd.DataFrame]:
        result = {name: pd.DataFrame(columns=list(cols)) for name, cols in TABLES.items()}
        sweep = self.sweep
        if sweep is None or int(self.images.sum()) == 0:
            return result
        result["errors"] = tables.error_table(sweep, list(self.error_rows), self.errors,
                                              list(self.point_rows), self.images)
        # in the sweep's order: a cross-rank reduction re-keys dicts in sorted order
        fits = [(key, self.maps_fit[key], self.maps_held[key]) for key in sweep.fitted]
        result["learned_maps"], result["learned_map_units"] = tables.map_tables(sweep.ridge,
                                                                                fits)
        result["learned_map_weights"] = tables.weights_table(sweep.ridge, fits)
        if self.lie:
            result["lie"], result["lie_attribution"] = tables.lie_tables(
                sweep, [(name, self.lie[name]) for name in sweep.lie_transforms])
        if sweep.consistency:
            result["consistency"], result["shift_curve"] = tables.consistency_tables(
                sweep, self.consistency)
        return result
