"""The ``attribution`` analysis: where each unit's response comes from in its top images.

Pass 1 keeps each unit's top-``top_k`` images by their peak activation (the
maximum over the map), with the same rule as ``unit-stats`` (exact
:class:`probe.stats.TopK`, ties to the lower data-set index), so the exemplars
are ``unit-stats``' ranks ``0 … top_k − 1``; the peak cell is kept with each.
After the data loop the exemplars of a layer go through Captum in batches of
``batch`` (:mod:`.methods`), each sample explaining its own unit's activation
at its own peak cell: the Zeiler & Fergus (ECCV 2014) deconvnet projection,
guided backpropagation (Springenberg et al. 2015), integrated gradients
(Sundararajan et al. 2017) from a black image, and Grad-CAM (Selvaraju et al.
2017) on the unit's own layer or the one before it (``gradcam_layer``).
Attributions are with respect to the model's input after its normalisation,
summed over input channels and
stored downsampled to at most ``map_size`` pixels a side; the ``total`` column
is the sum over every input entry at full resolution, and ``f_input`` /
``f_baseline`` are the unit's activation at the input and at the baseline, so
integrated gradients' completeness (``total = f_input − f_baseline``) can be
read off the table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from probe import Accumulator, Analysis, Batch, Option, RunContext
from probe.errors import OptionError
from probe.stats import TopK, as_maps

from .methods import METHODS, UnitSelector, attribute


class AttributionAccumulator(Accumulator):
    """Per layer, every unit's top-k images with the flat index of the peak cell.

    State: one :class:`TopK` per layer (``reduce="merge"``, the exact top-k
    merge), so shards reduce with no code here.
    """

    def __init__(self, layers: list[str], shapes: dict[str, tuple[int, ...]],
                 settings: dict[str, Any], device: torch.device) -> None:
        self.layers, self.settings = layers, settings
        self.shapes = {layer: tuple(shapes[layer]) for layer in layers}
        self.add_state("top", {layer: TopK(shapes[layer][0], settings["top_k"], device, (1,))
                               for layer in layers}, "merge")
        self.rows: list[dict[str, Any]] = []

    def update(self, batch: Batch) -> None:
        for layer in self.layers:
            maps = as_maps(batch.activations[layer].detach().float())
            peak, where = maps.flatten(2).max(dim=2)  # [B, K]
            self.top[layer].update(peak.T, batch.indices, where.T[..., None].float())

    def after_passes(self, context: RunContext) -> None:
        """Captum on the kept exemplars, a batch of them (of many units) per call."""
        model = context.model
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()),
                     torch.float32)
        cache: dict[int, torch.Tensor] = {}
        for layer in self.layers:
            top = self.top[layer]
            indices = top.indices.cpu()
            units, ranks = torch.nonzero(indices >= 0, as_tuple=True)
            if len(units) == 0:
                continue
            images = indices[units, ranks]
            flat = top.payload[units, ranks, 0].cpu().long()  # type: ignore[index]
            width = self.shapes[layer][2] if len(self.shapes[layer]) == 3 else 1
            rows, cols = flat // width, flat % width
            values = top.values.cpu()[units, ranks]
            self._layer(context, model, layer, dtype, cache, units, ranks, images, rows, cols,
                        values)

    def _layer(self, context: RunContext, model: torch.nn.Module, layer: str,
               dtype: torch.dtype, cache: dict[int, torch.Tensor], units: torch.Tensor,
               ranks: torch.Tensor, images: torch.Tensor, rows: torch.Tensor,
               cols: torch.Tensor, values: torch.Tensor) -> None:
        s = self.settings
        module = context.module(layer)
        features = feature_module(context, layer, s["gradcam_layer"])
        for first in range(0, len(units), s["batch"]):
            part = slice(first, first + s["batch"])
            raw = torch.stack([self._image(context, int(i), cache) for i in images[part]])
            inputs = context.handle.normalize(raw.to(context.device, dtype))
            baseline = context.handle.normalize(torch.zeros_like(inputs[:1]))
            selector = UnitSelector(units[part], rows[part], cols[part])
            with torch.no_grad():
                _, act = context.handle.capture(inputs, [layer])
                f_input = selector(act[layer]).double().cpu().numpy()
                _, act = context.handle.capture(baseline.expand_as(inputs), [layer])
                f_base = selector(act[layer]).double().cpu().numpy()
            for method in s["methods"]:
                attr = attribute(model, module, inputs, selector, method, baseline,
                                 s["steps"], features).detach()
                total = attr.double().sum(dim=(1, 2, 3)).cpu().numpy()
                heat = attr.sum(1, keepdim=True).float()
                if max(heat.shape[-2:]) > s["map_size"]:
                    scale = s["map_size"] / max(heat.shape[-2:])
                    size = (max(1, round(heat.shape[-2] * scale)),
                            max(1, round(heat.shape[-1] * scale)))
                    heat = F.adaptive_avg_pool2d(heat, size)
                heat_np = heat[:, 0].cpu().numpy()
                for i in range(heat_np.shape[0]):
                    j = first + i
                    self.rows.append({
                        "layer": layer, "unit": int(units[j]), "rank": int(ranks[j]),
                        "image": int(images[j]), "method": method, "value": float(values[j]),
                        "cell_y": int(rows[j]), "cell_x": int(cols[j]),
                        "height": heat_np.shape[1], "width": heat_np.shape[2],
                        "map": heat_np[i].ravel().astype(np.float32),
                        "total": float(total[i]), "f_input": float(f_input[i]),
                        "f_baseline": float(f_base[i]),
                    })

    @staticmethod
    def _image(context: RunContext, index: int, cache: dict[int, torch.Tensor]) -> torch.Tensor:
        if index not in cache:
            cache[index] = context.dataset[index]["image"]
        return cache[index]

    def finalize(self, context: RunContext) -> dict[str, pd.DataFrame]:
        columns = list(Attribution.tables["heatmaps"])
        frame = pd.DataFrame(self.rows, columns=columns)
        if not self.rows:
            frame = frame.astype({"unit": "int64", "rank": "int64", "image": "int64"})
        return {"heatmaps": frame}


def feature_module(context: RunContext, layer: str, which: str) -> torch.nn.Module:
    """Grad-CAM's feature layer for units of ``layer``: its own module (``own``) or the
    module of the layer before it in the model's layer map (``previous``; the first
    layer uses its own)."""
    own = context.module(layer)
    if which == "own":
        return own
    from probe.plan import model_layers

    order = {module: i for i, (_, module) in enumerate(context.model.named_modules())}
    try:
        paths = set(model_layers(context.model).values())
    except Exception:  # a model whose layer map cannot be rebuilt: the run's layers
        paths = set()
    paths |= set(context.layers.values())
    before = [context.model.get_submodule(p) for p in paths]
    before = [m for m in before if order[m] < order[own]]
    return max(before, key=order.__getitem__) if before else own


class Attribution(Analysis):
    """Deconvnet, guided backprop, integrated gradients and Grad-CAM of each unit over its
    top images.

    See the module docstring for the method, the exemplars and the departures.
    """

    name = "attribution"
    description = "deconvnet / guided backprop / integrated gradients / Grad-CAM of each " \
                  "unit over its top images (Captum)"
    options = (
        Option("layers", tuple, (), "layers to attribute (default: every layer of the run)",
               item_type=str),
        Option("methods", tuple, ("deconvnet", "guided-backprop", "integrated-gradients"),
               f"attribution methods ({', '.join(METHODS)})", item_type=str),
        Option("top_k", int, 4, "exemplars per unit (unit-stats' top ranks)", minimum=1,
               maximum=64),
        Option("steps", int, 16, "integrated gradients' integration points", minimum=1),
        Option("batch", int, 64, "exemplars per Captum call", minimum=1),
        Option("map_size", int, 64, "largest side of stored heat maps", minimum=1),
        Option("gradcam_layer", str, "own", "Grad-CAM's feature maps: the unit's own layer "
               "or the layer before it", choices=("own", "previous")),
    )
    passes = 1
    tables = {"heatmaps": ("layer", "unit", "rank", "image", "method", "value", "cell_y",
                           "cell_x", "height", "width", "map", "total", "f_input",
                           "f_baseline")}

    views_from = ("probe.plugins.analyses.attribution.views",)

    def __init__(self, **settings: object) -> None:
        super().__init__(**settings)
        unknown = [m for m in self.settings["methods"] if m not in METHODS]
        if unknown or not self.settings["methods"]:
            raise OptionError(f"attribution.methods must be some of {', '.join(METHODS)}, "
                              f"got {', '.join(self.settings['methods']) or 'none'}")

    def select_layers(self, context: RunContext) -> list[str]:
        return self.chosen_layers(context, self.settings["layers"])

    def accumulator(self, context: RunContext) -> AttributionAccumulator:
        if context.dataset is None:
            raise OptionError("attribution needs a data set (its exemplars are images)")
        return AttributionAccumulator(self.select_layers(context), context.layer_shapes,
                                      dict(self.settings), context.device)


__all__ = ["Attribution", "AttributionAccumulator"]
