"""The ``equivariance`` accumulator: every measurement as sums over images, on the device."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch

from probe import Accumulator, Batch, RunContext
from probe.errors import OptionError
from probe.transforms import Grid, Transform, get_transforms

from . import tables
from .consistency import agreement, crop_shift
from .geometry import layer_grids
from .lie import OUTPUT, lie_derivatives
from .ridge import GramState
from .schema import TABLES


def model_dtype(model: torch.nn.Module, default: torch.dtype) -> torch.dtype:
    """The floating dtype of the model's parameters (then buffers); ``default`` if none."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            return tensor.dtype
    return default


def parse_magnitudes(entries: tuple[str, ...], known: list[str]) -> dict[str, tuple[str, bool]]:
    """``("translate-x=0:8:1px", "rotate=0;10;20")`` → ``{name: (spec, in_pixels)}``."""
    out: dict[str, tuple[str, bool]] = {}
    for entry in entries:
        name, sep, spec = entry.partition("=")
        name, spec = name.strip(), spec.strip()
        if not sep or not spec:
            raise OptionError(f"equivariance.magnitudes entries look like NAME=a;b;c or "
                              f"NAME=start:stop:step (add 'px' for input pixels), got {entry!r}")
        if name not in known:
            raise OptionError(f"equivariance.magnitudes names transform {name!r}, which is not "
                              f"in equivariance.transforms ({', '.join(known)})")
        pixels = spec.endswith("px")
        out[name] = (spec[:-2] if pixels else spec, pixels)
    return out


def _expand(spec: str, where: str) -> list[float]:
    try:
        if ":" in spec:
            start, stop, step = (float(v) for v in spec.split(":"))
            if step <= 0:
                raise ValueError
            count = math.floor((stop - start) / step + 1e-9) + 1
            return [start + i * step for i in range(count)]
        return [float(v) for v in spec.split(";") if v.strip()]
    except ValueError:
        raise OptionError(f"{where}: cannot read magnitudes {spec!r} (a;b;c or "
                          f"start:stop:step with step > 0)") from None


class EquivarianceAccumulator(Accumulator):
    """Sums over images of every measurement; all state float64 on the model's device."""

    def __init__(self, settings: Mapping[str, Any], context: RunContext,
                 layers: list[str]) -> None:
        self.settings = dict(settings)
        self.layers = layers
        self.transforms: list[Transform] = get_transforms(settings["transforms"])
        names = [t.name for t in self.transforms]
        self.overrides = parse_magnitudes(settings["magnitudes"], names)
        self.handle = context.handle
        self.device = context.device
        self.seed = context.seed
        self._draw_chunks: dict[int, torch.Tensor] = {}
        self.input_size: tuple[int, int] | None = None
        self.grids: dict[str, Grid | None] = {}
        self.order: list[str] = []
        self.sweep: dict[str, list[float]] = {}
        self.map_keys: set[tuple[str, float]] = set()
        self.errors: dict[tuple[str, str, float], torch.Tensor] = {}
        self.images: dict[tuple[str, float], int] = {}
        self.maps: dict[tuple[str, str, float], tuple[GramState, GramState]] = {}
        self.lie: dict[str, dict[str, torch.Tensor]] = {}
        self.consistency: dict[str, torch.Tensor] = {}
        self.output_dims = 0

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["handle"] = None  # the model travels separately; shards merge only sums
        return state

    # -- set-up on the first batch -----------------------------------------------------
    def _setup(self, batch: Batch, dtype: torch.dtype) -> None:
        h, w = batch.images.shape[-2:]
        self.input_size = (int(h), int(w))
        paths = {name: self.handle.layers[name] for name in self.layers}
        grids, order = layer_grids(self.handle.model, {**paths, OUTPUT: ""},
                                   batch.inputs[:1].to(dtype))
        # A single cell (global pooling, LeNet's C5) can only be compared to itself:
        # treat it like an output without a grid, i.e. as meant to be invariant.
        self.grids = {n: None if g is not None and g.size == (1, 1) else g
                      for n, g in grids.items()}
        self.order = [n for n in order if n != OUTPUT]
        self.output_dims = batch.outputs.dim()
        for transform in self.transforms:
            if transform.name in self.overrides:
                spec, pixels = self.overrides[transform.name]
                values = _expand(spec, f"equivariance.magnitudes {transform.name}")
                if pixels:
                    unit = transform.pixels(1.0, int(w))
                    if not math.isfinite(unit):
                        raise OptionError(f"equivariance.magnitudes: transform "
                                          f"{transform.name} has no pixel unit; drop 'px'")
                    values = [v / unit for v in values]
            else:
                values = list(transform.default_magnitudes(int(w)))
            self.sweep[transform.name] = values
            for grid in self.grids.values():
                if grid is not None:
                    try:
                        transform.check_grid(grid)
                    except ValueError as exc:
                        raise OptionError(f"transform {transform.name}: {exc}") from None
            moved = [v for v in values if v != transform.identity]
            mode = self.settings["learned_maps"]
            if mode == "all" or (mode == "discrete" and not transform.continuous):
                self.map_keys.update((transform.name, v) for v in moved)
            elif mode == "discrete" and moved:
                farthest = max(moved, key=lambda v: abs(v - transform.identity))
                self.map_keys.add((transform.name, farthest))

    # -- the batch step ----------------------------------------------------------------------
    def update(self, batch: Batch) -> None:
        dtype = model_dtype(self.handle.model, batch.images.dtype)
        if self.input_size is None:
            self._setup(batch, dtype)
        images = batch.images.to(dtype)
        base = {name: batch.activations[name].to(dtype) for name in self.layers}
        base[OUTPUT] = batch.outputs.to(dtype)
        held = (batch.indices % 2 == 1).to(images.device)
        for transform in self.transforms:
            for magnitude in self.sweep[transform.name]:
                self._direct(transform, magnitude, images, base, held)
        if self.settings["lie"]:
            for transform in self.transforms:
                if transform.continuous:
                    self._lie(transform, images)
        outputs = batch.outputs
        # per-pixel comparison needs outputs at the input's resolution
        comparable = outputs.dim() == 2 or (outputs.dim() == 4
                                            and outputs.shape[-2:] == images.shape[-2:])
        if self.settings["consistency"] and comparable:
            self._consistency(batch, images)

    def _direct(self, transform: Transform, magnitude: float, images: torch.Tensor,
                base: Mapping[str, torch.Tensor], held: torch.Tensor) -> None:
        key = (transform.name, magnitude)
        self.images[key] = self.images.get(key, 0) + len(images)
        if magnitude == transform.identity:
            moved = dict(base)
        else:
            inputs = self.handle.normalize(transform.apply(images, magnitude))
            outputs, moved = self.handle.capture(inputs, self.layers)
            moved = {n: v.to(images.dtype) for n, v in moved.items()}
            moved[OUTPUT] = outputs.to(images.dtype)
        for layer in [*self.layers, OUTPUT]:
            plain, target = base[layer], moved[layer]
            grid = self.grids.get(layer)
            if plain.dim() == 4 and grid is not None:
                acted, mask = transform.act(plain, magnitude, grid)
                weight = mask.to(plain.dtype)
                cells = mask.sum() * len(plain)
            else:
                acted, weight = plain, torch.ones((), dtype=plain.dtype, device=plain.device)
                cells = torch.tensor(len(plain), device=plain.device)
            sums = torch.stack([(((target - acted) ** 2) * weight).sum().double(),
                                ((acted ** 2) * weight).sum().double(), cells.double()])
            index = (layer, transform.name, magnitude)
            self.errors[index] = self.errors.get(index, 0) + sums
            if key in self.map_keys and layer != OUTPUT and plain.dim() in (2, 4):
                self._fit_rows(index, acted, target, plain, weight, held)

    def _fit_rows(self, index: tuple[str, str, float], acted: torch.Tensor, target: torch.Tensor,
                  plain: torch.Tensor, weight: torch.Tensor, held: torch.Tensor) -> None:
        units = plain.shape[1]
        if index not in self.maps:
            self.maps[index] = (GramState.zeros(units, plain.device),
                                GramState.zeros(units, plain.device))
        if plain.dim() == 4:
            mask = weight.bool()
            rows = [t.movedim(1, -1)[:, mask] for t in (acted, target, plain)]  # [B, n, K]
        else:
            rows = [t[:, None, :] for t in (acted, target, plain)]
        for half, select in zip(self.maps[index], (~held, held), strict=True):
            if bool(select.any()):
                half.update(*(r[select].reshape(-1, units) for r in rows))

    def _lie(self, transform: Transform, images: torch.Tensor) -> None:
        result, _ = lie_derivatives(self.handle, images, transform, self.order, self.grids,
                                    self.grids.get(OUTPUT))
        sums = self.lie.setdefault(transform.name, {})

        def add(name: str, value: torch.Tensor) -> None:
            sums[name] = sums.get(name, 0) + value.sum().double()

        add("images", torch.ones_like(result.total))
        add("total", result.total)
        add("closure", result.closure)
        for end, value in result.parts.items():
            add(f"part:{end}", value)
            add(f"dot:{end}", result.dots[end])
        for layer, value in result.layers.items():
            add(f"layer:{layer}", value)
            add(f"norm:{layer}", result.norms[layer])

    def _draws(self, indices: torch.Tensor) -> torch.Tensor:
        """Two random crop offsets (y, x) per data-set index, as fractions in [0, 1).

        Drawn in fixed chunks of indices from the run's seed, so an image gets the
        same offsets whichever shard or batch it falls in.
        """
        chunk = 4096
        out = torch.empty(len(indices), 4, dtype=torch.float64)
        for c in indices.div(chunk, rounding_mode="floor").unique().tolist():
            if c not in self._draw_chunks:
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + c)
                self._draw_chunks[c] = torch.rand(chunk, 4, generator=generator,
                                                  dtype=torch.float64)
            chosen = indices.div(chunk, rounding_mode="floor") == c
            out[chosen] = self._draw_chunks[c][indices[chosen] % chunk]
        return out

    def _consistency(self, batch: Batch, images: torch.Tensor) -> None:
        h = images.shape[-1]
        pad = max(1, round(self.settings["consistency_shift"] * h))
        draws = self._draws(batch.indices.cpu())
        off = torch.floor(draws * (2 * pad + 1)).long().to(images.device)
        forward = self.handle.forward
        normalize = self.handle.normalize
        first = (off[:, 0], off[:, 1])
        second = (off[:, 2], off[:, 3])
        out1 = forward(normalize(crop_shift(images, *first, pad)))
        out2 = forward(normalize(crop_shift(images, *second, pad)))
        agree, n, _, _ = agreement(out1, out2, first, second, pad)
        sums = self.consistency
        for name, value in (("agree", agree), ("pairs", n)):
            sums[name] = sums.get(name, 0) + value
        labels = batch.labels.to(images.device)
        outputs = batch.outputs
        if outputs.dim() == 2:
            known = labels >= 0
            sums["correct"] = sums.get("correct", 0) + (
                (outputs.argmax(1) == labels) & known).double().sum()
            sums["labelled"] = sums.get("labelled", 0) + known.double().sum()
        elif batch.target is not None:
            target = batch.target.to(images.device)
            known = target >= 0
            sums["correct"] = sums.get("correct", 0) + (
                (outputs.argmax(1) == target) & known).double().sum()
            sums["labelled"] = sums.get("labelled", 0) + known.double().sum()
        steps = self.settings["consistency_steps"]
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
            step = torch.stack([n, change, flipped])
            sums[f"step:{k}"] = sums.get(f"step:{k}", 0) + step

    # -- merging and finishing ---------------------------------------------------------------
    def merge(self, other: Accumulator) -> None:
        if not isinstance(other, EquivarianceAccumulator):
            raise TypeError(f"cannot merge {type(other).__name__} into EquivarianceAccumulator")
        if self.input_size is None:
            self.__dict__.update({k: v for k, v in other.__dict__.items() if k != "handle"})
            return
        if other.input_size is None:
            return
        for key, value in other.errors.items():
            self.errors[key] = self.errors.get(key, 0) + value.to(self.device)
        for key, count in other.images.items():
            self.images[key] = self.images.get(key, 0) + count
        for key, (fit, held) in other.maps.items():
            if key in self.maps:
                self.maps[key][0].merge(fit)
                self.maps[key][1].merge(held)
            else:
                self.maps[key] = (fit, held)
        for name, sums in other.lie.items():
            mine = self.lie.setdefault(name, {})
            for key, value in sums.items():
                mine[key] = mine.get(key, 0) + value.to(self.device)
        for key, value in other.consistency.items():
            self.consistency[key] = self.consistency.get(key, 0) + value.to(self.device)

    def finalize(self) -> dict[str, pd.DataFrame]:
        result = {name: pd.DataFrame(columns=list(cols)) for name, cols in TABLES.items()}
        if self.input_size is None:
            return result
        result["errors"] = tables.error_table(self)
        result["learned_maps"], result["learned_map_units"] = tables.map_tables(self)
        result["learned_map_weights"] = tables.weights_table(self)
        if self.lie:
            result["lie"], result["lie_attribution"] = tables.lie_tables(self)
        if self.consistency:
            result["consistency"], result["shift_curve"] = tables.consistency_tables(self)
        return result


def accumulate(model: torch.nn.Module, images: torch.Tensor, layers: Mapping[str, str], *,
               labels: torch.Tensor | None = None, indices: torch.Tensor | None = None,
               batch_size: int = 32, mean: tuple[float, ...] = (0.0,),
               std: tuple[float, ...] = (1.0,), seed: int = 0,
               **options: Any) -> EquivarianceAccumulator:
    """Run the analysis on a tensor of images without a run directory (notebooks, tests).

    The same batch step as ``probe run``: one captured forward pass per batch,
    then :meth:`EquivarianceAccumulator.update`, under ``torch.no_grad``. The
    model's dtype is kept (float64 models give float64 measurements).

    Args:
        model: The model (put in eval mode).
        images: ``Tensor[N, C, H, W]`` raw images in [0, 1].
        layers: ``{layer name: module path}`` in input-to-output order.
        labels: ``Tensor[N]`` class labels (default: unknown, -1).
        indices: ``Tensor[N]`` data-set positions (default ``arange(N)``); they
            pick the held-out half of the learned maps and the crop offsets.
        batch_size: Images per batch.
        mean, std: Input normalisation.
        seed: The run's seed.
        **options: Options of the ``equivariance`` analysis.

    Returns:
        The accumulator (``finalize()`` gives the tables; ``merge`` combines shards).
    """
    from probe.analysis import ModelHandle
    from probe.capture import Capture

    model = model.eval()
    device = images.device
    dtype = model_dtype(model, images.dtype)
    handle = ModelHandle(model, layers, mean, std)
    from .analysis import Equivariance

    analysis = Equivariance(**options)
    context = RunContext(model=model, handle=handle, layers=dict(layers), device=device,
                         seed=seed)
    acc = analysis.accumulator(context)
    n = len(images)
    labels = torch.full((n,), -1, dtype=torch.long) if labels is None else labels
    indices = torch.arange(n) if indices is None else indices
    with torch.no_grad(), Capture(model, dict(layers)) as capture:
        for start in range(0, n, batch_size):
            chunk = images[start:start + batch_size].to(dtype)
            inputs = handle.normalize(chunk)
            outputs = model(inputs)
            acc.update(Batch(images=chunk, inputs=inputs,
                             indices=indices[start:start + batch_size].to(device),
                             labels=labels[start:start + batch_size].to(device),
                             outputs=outputs, activations=capture.take()))
    return acc
