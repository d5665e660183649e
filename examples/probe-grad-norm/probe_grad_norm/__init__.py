"""probe-grad-norm: how strongly does each unit depend on the input image?

For every captured layer and unit ``k``: the mean over images of the L2 norm of
``d(sum_{h,w} a_k) / d input``, the gradient of the unit's spatially summed
activation with respect to the model input (``batch.inputs``, i.e. after the
model's preprocessing). The analysis declares ``gradients = True``, so the
host's own forward keeps its graph and no extra forward pass is run.

All units of a layer are differentiated at once with a batched
vector-Jacobian product (``is_grads_batched=True``), in chunks bounded by
``chunk_elements``. State is two declared sums, so shards reduce exactly with
no merge code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from probe import Accumulator, Analysis, Batch, Option, Register, RunContext, hookimpl

__all__ = ["GradNorm", "GradNormAccumulator", "probe_register_analyses"]


def _sum_dtype(device: torch.device) -> torch.dtype:
    """float64 sums where the device has float64 (MPS does not)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _input_grad_norms(per_unit: torch.Tensor, inputs: torch.Tensor,
                      chunk_elements: int) -> torch.Tensor:
    """``[B, K]`` unit values attached to ``inputs`` -> ``[K, B]`` input-gradient L2 norms.

    Images do not interact in an eval-mode forward, so the gradient of
    ``per_unit[:, k].sum()`` holds each image's own gradient in its slice.
    """
    batch, units = per_unit.shape
    per_input = inputs[0].numel()
    chunk = max(1, min(units, chunk_elements // max(1, batch * per_input)))
    norms = []
    for start in range(0, units, chunk):
        stop = min(units, start + chunk)
        # one-hot cotangents: row i selects unit start + i for every image
        cotangents = torch.zeros((stop - start, batch, units), dtype=per_unit.dtype,
                                 device=per_unit.device)
        cotangents[torch.arange(stop - start), :, torch.arange(start, stop)] = 1
        try:
            (grads,) = torch.autograd.grad(per_unit, inputs, grad_outputs=cotangents,
                                           retain_graph=True, is_grads_batched=True)
        except torch.cuda.OutOfMemoryError:
            raise
        except RuntimeError:
            # an operation without a vmap rule: one backward per unit instead
            grads = torch.stack([
                torch.autograd.grad(per_unit, inputs, grad_outputs=c, retain_graph=True)[0]
                for c in cotangents])
        norms.append(grads.flatten(2).norm(dim=2))        # [chunk, B]
    return torch.cat(norms)


class GradNormAccumulator(Accumulator):
    """Per-unit sums of input-gradient norms and an image count, declared as sums."""

    def __init__(self, layers: list[str], units: dict[str, int], chunk_elements: int,
                 device: torch.device) -> None:
        self.layers, self.units, self.chunk_elements = layers, units, chunk_elements
        dtype = _sum_dtype(device)
        self.add_state("norms", {layer: torch.zeros(units[layer], dtype=dtype, device=device)
                                 for layer in layers}, "sum")     # [units] sum over images
        self.add_state("images", torch.zeros((), dtype=torch.int64, device=device), "sum")

    def update(self, batch: Batch) -> None:
        inputs = batch.inputs
        with torch.enable_grad():      # the host enables it for gradients=True; be explicit
            for layer in self.layers:
                act = batch.activations[layer]      # attached to batch.inputs
                units = self.units[layer]
                per_unit = act.reshape(act.shape[0], act.shape[1], -1).sum(2)[:, :units]
                norms = _input_grad_norms(per_unit, inputs, self.chunk_elements)
                self.norms[layer] += norms.sum(dim=1).to(self.norms[layer].dtype)
        self.images += len(batch.indices)

    def finalize(self, context: RunContext) -> dict[str, pd.DataFrame]:
        images = int(self.images.item())
        frames = []
        for layer in self.layers:
            sums = self.norms[layer].double().cpu().numpy()
            mean = sums / images if images else np.full_like(sums, np.nan)
            frames.append(pd.DataFrame({"layer": layer, "unit": np.arange(len(sums)),
                                        "grad_norm": mean, "images": images}))
        if not frames:
            return {"units": pd.DataFrame({"layer": pd.Series(dtype=str),
                                           "unit": pd.Series(dtype=np.int64),
                                           "grad_norm": pd.Series(dtype=np.float64),
                                           "images": pd.Series(dtype=np.int64)})}
        return {"units": pd.concat(frames, ignore_index=True)}


class GradNorm(Analysis):
    """Mean input-gradient L2 norm of every unit's spatially summed activation."""

    name = "grad-norm"
    description = "per-unit mean L2 norm of d(sum_hw activation)/d input over images"
    options = (
        Option("layers", tuple, (), "layers to measure (default: every selected layer)",
               item_type=str),
        Option("max_units", int, 0, "measure only the first N units of each layer (0: all)",
               minimum=0),
        Option("chunk_elements", int, 2**26,
               "gradient values held at once per batched backward (units x batch x input)",
               minimum=1),
    )
    passes = 1
    gradients = True
    tables = {"units": ("layer", "unit", "grad_norm", "images")}

    def select_layers(self, context: RunContext) -> list[str]:
        selected = super().select_layers(context)
        wanted = list(self.settings["layers"])
        if not wanted:
            return selected
        unknown = [layer for layer in wanted if layer not in selected]
        if unknown:
            raise ValueError(f"grad-norm.layers: {', '.join(unknown)} not among the run's "
                             f"layers ({', '.join(selected)})")
        return [layer for layer in selected if layer in wanted]       # input to output

    def accumulator(self, context: RunContext) -> GradNormAccumulator:
        layers = self.select_layers(context)
        cap = self.settings["max_units"]
        units = {}
        for layer in layers:
            total = context.layer_shapes[layer][0]
            units[layer] = min(total, cap) if cap else total
        return GradNormAccumulator(layers, units, self.settings["chunk_elements"],
                                   context.device)

    @classmethod
    def figures(cls, tables: Mapping[str, pd.DataFrame]) -> list[Any]:
        import plotly.express as px

        units = tables["units"]
        figure = px.box(units, x="layer", y="grad_norm", points="all", hover_data=["unit"],
                        log_y=bool(len(units)) and bool((units["grad_norm"] > 0).all()),
                        title="grad-norm: mean input-gradient norm per unit")
        figure.update_yaxes(title="mean ||d sum(a_k) / d input||")
        return [figure]


@hookimpl
def probe_register_analyses(register: Register) -> None:
    register(GradNorm)
