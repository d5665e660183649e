"""The ``receptive-field`` analysis: theoretical and effective receptive fields per layer and unit.

Theoretical: size, jump and start per axis of every captured layer from the
convolution arithmetic of the executed module graph (Dumoulin & Visin 2018;
:mod:`probe.receptive_field`), from one forward pass on a blank input.

Effective (Luo, Li, Urtasun & Zemel, NeurIPS 2016): the mean over images of
``|∂ y_centre / ∂ x|``, the input gradient of the centre cell of a layer's map,
summed over input channels. Per layer the gradient signal is 1 at the centre
cell of every channel (the paper's "gradient 1 at the centre of the output
plane"); per unit it is the unit's own centre cell, all units of a chunk in
one batched backward. Departures: the gradient is taken with respect to the
model's input after its preprocessing (the normalised image), over the first
``images`` images of the data set (Luo et al. average over many images; the
default keeps CPU runs short), and the ERF's size is summarised by the radius
of the smallest square around the centre cell holding ``share`` of the
gradient mass (:mod:`.effective`), so it reads on the same axis as the
theoretical size.
"""

from __future__ import annotations

import torch

from probe import Accumulator, Analysis, Batch, Option, RunContext
from probe.errors import OptionError
from probe.receptive_field import Field, layer_fields

from .effective import centre_cell, distance_bins, radial_mass
from .tables import build_tables


def _dtype(model: torch.nn.Module) -> torch.dtype:
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


class ReceptiveFieldAccumulator(Accumulator):
    """Summed input-gradient maps (per layer) and radial gradient mass (per unit).

    State (declared sums, so shards reduce with no merge code): per layer the
    ``[H, W]`` sum over images of ``|∂ Σ_k y_k,centre / ∂ x|``; per layer and
    unit the ``[K, bins]`` mass of ``|∂ y_k,centre / ∂ x|`` per half-pixel
    distance bin; the number of images used.
    """

    def __init__(self, layers: list[str], fields: dict[str, Field], units: dict[str, int],
                 settings: dict, device: torch.device) -> None:
        self.layers, self.fields, self.settings = layers, fields, settings
        self.bins = {layer: distance_bins(fields[layer], device) for layer in layers}
        self.count = {layer: int(self.bins[layer].max()) + 1 for layer in layers}
        self.add_state("maps", {layer: torch.zeros(fields[layer].grid.input_size,
                                                   dtype=torch.float64, device=device)
                                for layer in layers}, "sum")
        if settings["per_unit"]:
            self.add_state("profiles", {
                layer: torch.zeros((units[layer], self.count[layer]), dtype=torch.float64,
                                   device=device) for layer in layers}, "sum")
        self.add_state("images", torch.zeros((), dtype=torch.int64, device=device), "sum")

    def update(self, batch: Batch) -> None:
        limit = self.settings["images"]
        keep = (batch.indices < limit) if limit > 0 else torch.ones_like(batch.indices,
                                                                          dtype=torch.bool)
        keep = keep.to(batch.inputs.device)
        if not bool(keep.any()):
            return
        weight = keep.to(batch.inputs.dtype)
        for layer in self.layers:
            act = batch.activations[layer]
            if act.dim() == 4:
                row, col = centre_cell(self.fields[layer])
                cell = act[:, :, row, col]  # [B, K]
            else:
                cell = act.reshape(act.shape[0], -1)
            (grad,) = torch.autograd.grad((cell.sum(1) * weight).sum(), batch.inputs,
                                          retain_graph=True)
            self.maps[layer] += grad.abs().sum(1).double()[keep].sum(0)
            if self.settings["per_unit"]:
                self._units(layer, cell, batch.inputs, weight)
        self.images += keep.sum()

    def _units(self, layer: str, cell: torch.Tensor, inputs: torch.Tensor,
               weight: torch.Tensor) -> None:
        """Each unit's centre-cell input gradient, a chunk of units per batched backward."""
        units, chunk = cell.shape[1], self.settings["chunk"]
        for first in range(0, units, chunk):
            n = min(chunk, units - first)
            seeds = torch.zeros((n, *cell.shape), dtype=cell.dtype, device=cell.device)
            seeds[torch.arange(n), :, first + torch.arange(n)] = weight
            (grads,) = torch.autograd.grad(cell, inputs, grad_outputs=seeds,
                                           is_grads_batched=True, retain_graph=True)
            per_unit = grads.abs().sum(2).double().sum(1)  # [n, H, W]
            self.profiles[layer][first:first + n] += radial_mass(
                per_unit, self.bins[layer], self.count[layer])

    def finalize(self, context: RunContext) -> dict:
        profiles = ({layer: self.profiles[layer].cpu().numpy() for layer in self.layers}
                    if self.settings["per_unit"] else None)
        maps = {layer: self.maps[layer].cpu().numpy() for layer in self.layers}
        layer_profiles = {layer: radial_mass(self.maps[layer][None], self.bins[layer],
                                             self.count[layer]).cpu().numpy()
                          for layer in self.layers}
        return build_tables(self.layers, self.fields, maps, layer_profiles, profiles,
                            int(self.images), self.settings["share"])


class ReceptiveField(Analysis):
    """Theoretical (Dumoulin & Visin 2018) and effective (Luo et al. 2016) receptive fields.

    See the module docstring for the definitions and the departures from the paper.
    """

    name = "receptive-field"
    description = "theoretical receptive field per layer and effective (gradient) field " \
                  "per layer and unit"
    options = (
        Option("layers", tuple, (), "layers to measure (default: every layer of the run)",
               item_type=str),
        Option("share", float, 0.9, "share of the gradient mass inside the effective radius",
               minimum=0.01, maximum=1.0),
        Option("images", int, 16, "images whose gradients are averaged (the first N of the "
               "data set; 0 = all)", minimum=0),
        Option("per_unit", bool, True, "also measure every unit's own effective field"),
        Option("chunk", int, 64, "units per batched backward pass", minimum=1),
    )
    passes = 1
    gradients = True
    tables = {
        "layers": ("layer", "map_height", "map_width", "size_y", "size_x", "jump_y", "jump_x",
                   "start_y", "start_x", "centre_y", "centre_x", "exact", "spatial",
                   "effective_radius", "effective_size", "images"),
        "units": ("layer", "unit", "effective_radius", "effective_size"),
        "maps": ("layer", "y", "x", "gradient"),
    }

    views_from = ("probe.plugins.analyses.receptive_field.views",)

    def select_layers(self, context: RunContext) -> list[str]:
        return self.chosen_layers(context, self.settings["layers"])

    def accumulator(self, context: RunContext) -> ReceptiveFieldAccumulator:
        layers = self.select_layers(context)
        blank = context.handle.normalize(torch.zeros(
            (1, *context.input_shape), dtype=_dtype(context.model), device=context.device))
        try:
            fields, _ = layer_fields(context.model, {n: context.layers[n] for n in layers},
                                     blank)
        except ValueError as exc:
            raise OptionError(f"receptive-field: {exc}") from None
        units = {layer: int(context.layer_shapes[layer][0]) for layer in layers}
        return ReceptiveFieldAccumulator(layers, fields, units, dict(self.settings),
                                         context.device)


__all__ = ["ReceptiveField", "ReceptiveFieldAccumulator"]
