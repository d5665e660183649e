"""The hierarchy-of-parts view: link part detectors to the object detectors they feed.

Given the ``units`` table of ``dissection`` and a data set's ``part_parents``
table (``part_id, object_id``), every part-detector unit in an earlier layer is
paired with every object-detector unit in a later layer whose object has that
part. Each edge gets two strengths:

* ``weight_path``: with ``|W|`` the absolute weights of a convolution summed
  over its kernel (``Tensor[out, in]``; rows scaled by ``|γ|/sqrt(var + eps)``
  of a batch norm that follows it), the product of these matrices along
  the chain of convolutions from the part layer to the object layer, as the
  share of the object unit's total path mass that starts at the part unit
  (``NaN`` when the chain is not a plain sequence of convolutions);
* ``ablation_drop``: the relative drop ``(a - a') / |a|`` of the object unit's
  mean activation (over positions and a bounded sample of images) when the
  part unit's channel is set to 0 at the part layer's output, on the
  :class:`AblationSample` (the lowest-index inputs of the data set, kept in
  pass 2 as declared state; the ablations run in the accumulator's
  ``after_passes``, the step for model work after the data loop).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from probe import ModelHandle
from probe.architecture import conv_for_layer
from probe.state import State

EDGE_COLUMNS = ("part_layer", "part_unit", "part_label", "part_name", "part_iou",
                "object_layer", "object_unit", "object_label", "object_name", "object_iou",
                "weight_path", "ablation_drop", "ablation_baseline", "ablation_images")

#: Largest number of images in one ablation forward pass (sample × ablated units).
ABLATION_BATCH = 256


class AblationSample(State):
    """The ``limit`` lowest-index model inputs seen (a deterministic, mergeable sample).

    Declared tensors ``inputs`` (``Tensor[n, C, H, W]``) and ``indices``
    (``Tensor[n]``, data-set positions, ascending), ``n <= limit``; shards fold by
    :meth:`merge` (``merge_only``): the union, cut to the ``limit`` lowest
    indices, is the same whatever the sharding.
    """

    merge_only = True

    def __init__(self, limit: int, input_shape: Sequence[int], device: torch.device) -> None:
        self.limit = limit
        self.add_state("inputs", torch.zeros((0, *input_shape), device=device), "cat")
        self.add_state("indices", torch.zeros(0, dtype=torch.int64, device=device), "cat")

    def update(self, inputs: torch.Tensor, indices: torch.Tensor) -> None:
        """Offer ``inputs [B, C, H, W]`` at data-set ``indices [B]``."""
        if self.limit == 0:
            return
        inputs = torch.cat([self.inputs, inputs.to(self.inputs.device, self.inputs.dtype)])
        indices = torch.cat([self.indices, indices.to(self.indices.device, torch.int64)])
        order = indices.argsort(stable=True)[:self.limit]
        self.inputs, self.indices = inputs[order], indices[order]

    def merge(self, other: State) -> None:
        """Fold another shard's sample in."""
        if not isinstance(other, AblationSample):
            raise TypeError(f"cannot merge {type(other).__name__} into AblationSample")
        self.update(other.inputs, other.indices)


def candidate_edges(units: pd.DataFrame, part_parents: pd.DataFrame,
                    layer_order: Sequence[str]) -> pd.DataFrame:
    """Pairs (part detector in layer i, object detector in layer j > i) with part ∈ object.

    Args:
        units: The ``units`` table (``layer, unit, label, name, iou, is_detector``).
        part_parents: ``part_id, object_id`` rows.
        layer_order: Layer names, earliest first.
    """
    rank = {name: i for i, name in enumerate(layer_order)}
    det = units[units["is_detector"]].assign(order=lambda d: d["layer"].map(rank))
    parts = det[det["label"].isin(part_parents["part_id"])]
    objects = det[det["label"].isin(part_parents["object_id"])]
    pairs = parts.merge(part_parents.rename(columns={"part_id": "label"}), on="label")
    pairs = pairs.merge(objects, left_on="object_id", right_on="label",
                        suffixes=("_part", "_object"))
    pairs = pairs[pairs["order_part"] < pairs["order_object"]]
    out = pd.DataFrame({
        "part_layer": pairs["layer_part"], "part_unit": pairs["unit_part"],
        "part_label": pairs["label_part"], "part_name": pairs["name_part"],
        "part_iou": pairs["iou_part"],
        "object_layer": pairs["layer_object"], "object_unit": pairs["unit_object"],
        "object_label": pairs["label_object"], "object_name": pairs["name_object"],
        "object_iou": pairs["iou_object"],
    })
    return out.sort_values(["part_layer", "part_unit", "object_layer", "object_unit"],
                           key=lambda s: s.map(rank) if s.name.endswith("layer") else s,
                           kind="stable").reset_index(drop=True)


def _conv_chain(model: nn.Module, start: str, end: str) -> list[nn.Module] | None:
    """Convolutions after the one behind ``start`` up to the one behind ``end`` (module paths)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    first, last = conv_for_layer(model, start), conv_for_layer(model, end)
    if first is None or last is None or not all(any(m is c for c in convs)
                                                for m in (first, last)):
        return None
    i = next(n for n, c in enumerate(convs) if c is first)
    j = next(n for n, c in enumerate(convs) if c is last)
    return convs[i + 1:j + 1] if j > i else None


def _following_batch_norms(model: nn.Module) -> dict[int, nn.BatchNorm2d]:
    """``{id(conv): the BatchNorm2d right after it in module order}`` (VGG-BN layout)."""
    out: dict[int, nn.BatchNorm2d] = {}
    previous = None
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d) and isinstance(previous, nn.Conv2d) and \
                module.num_features == previous.out_channels and \
                module.running_var is not None:
            out[id(previous)] = module
        if not isinstance(module, nn.Sequential):
            previous = module
    return out


def weight_path_matrix(model: nn.Module, start: str, end: str) -> torch.Tensor | None:
    """``Tensor[out_end, out_start]`` share of each end unit's |W|-path mass from each start unit.

    ``None`` when the convolutions between the two layers do not chain (groups,
    branches, channel counts that do not match).
    """
    chain = _conv_chain(model, start, end)
    if not chain:
        return None
    first = conv_for_layer(model, start)
    norms = _following_batch_norms(model)
    paths = torch.eye(first.out_channels, dtype=torch.float64)
    for conv in chain:
        if conv.groups != 1 or conv.in_channels != paths.shape[0]:
            return None
        strength = conv.weight.detach().abs().sum(dim=(2, 3)).double().cpu()  # [out, in]
        norm = norms.get(id(conv))
        if norm is not None:  # eval-mode batch norm scales each output channel
            scale = norm.weight.detach().abs().double().cpu() if norm.affine else 1.0
            strength = strength * (scale / (norm.running_var.double().cpu() + norm.eps).sqrt()
                                   ).view(-1, 1)
        paths = strength @ paths
    total = paths.sum(1, keepdim=True)
    return torch.where(total > 0, paths / total.clamp(min=1e-300), torch.zeros_like(paths))


def add_weight_paths(edges: pd.DataFrame, model: nn.Module,
                     layers: Mapping[str, str]) -> pd.DataFrame:
    """Fill the ``weight_path`` column of ``edges``."""
    edges = edges.copy()
    edges["weight_path"] = np.nan
    for (part_layer, object_layer), rows in edges.groupby(["part_layer", "object_layer"]):
        matrix = weight_path_matrix(model, layers[part_layer], layers[object_layer])
        if matrix is None:
            continue
        values = matrix.numpy()[rows["object_unit"].to_numpy(dtype=np.int64),
                                rows["part_unit"].to_numpy(dtype=np.int64)]
        edges.loc[rows.index, "weight_path"] = values
    return edges


def add_ablation_drops(edges: pd.DataFrame, handle: ModelHandle, inputs: torch.Tensor,
                       layers: Mapping[str, str], max_units: int) -> pd.DataFrame:
    """Fill ``ablation_drop`` (and baseline) by zeroing each part unit on ``inputs``.

    Args:
        edges: Candidate edges.
        handle: The run's model handle.
        inputs: ``Tensor[n, C, H, W]`` normalised model inputs (bounded sample).
        layers: ``{layer name: module path}``.
        max_units: Most part units ablated (highest part IoU first); the others
            keep ``NaN``.
    """
    edges = edges.copy()
    edges["ablation_drop"] = np.nan
    edges["ablation_baseline"] = np.nan
    edges["ablation_images"] = len(inputs)
    if edges.empty or len(inputs) == 0:
        return edges
    parts = (edges.sort_values("part_iou", ascending=False, kind="stable")
             .drop_duplicates(["part_layer", "part_unit"]).head(max_units))
    object_layers = list(dict.fromkeys(edges["object_layer"]))
    with torch.no_grad():
        _, base = handle.capture(inputs, object_layers)
        baseline = {name: base[name].flatten(2).mean(2).mean(0).double().cpu()
                    for name in object_layers}  # {layer: Tensor[K]}
        n = len(inputs)
        group = max(1, ABLATION_BATCH // n)
        for part_layer, rows in parts.groupby("part_layer", sort=False):
            units = rows["part_unit"].to_numpy(dtype=np.int64, copy=True)
            module = handle.model.get_submodule(layers[part_layer])
            for start in range(0, len(units), group):
                chunk = torch.as_tensor(units[start:start + group], device=inputs.device)
                means = _ablated_means(handle, module, inputs, chunk, object_layers)
                _record(edges, part_layer, chunk.cpu().numpy(), means, baseline)
    return edges


def _ablated_means(handle: ModelHandle, module: nn.Module, inputs: torch.Tensor,
                   units: torch.Tensor, object_layers: list[str]) -> dict[str, torch.Tensor]:
    """``{layer: Tensor[G, K]}`` mean activations with unit ``units[g]`` zeroed in copy g."""
    g, n = len(units), len(inputs)

    def zero(mod: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        keep = torch.ones((g, output.shape[1]), dtype=output.dtype, device=output.device)
        keep[torch.arange(g, device=output.device), units] = 0
        shape = (g, 1, output.shape[1]) + (1,) * (output.dim() - 2)
        return (output.reshape(g, n, *output.shape[1:]) * keep.view(shape)).reshape(output.shape)

    hook = module.register_forward_hook(zero)
    try:
        _, acts = handle.capture(inputs.repeat(g, *([1] * (inputs.dim() - 1))), object_layers)
    finally:
        hook.remove()
    return {name: a.reshape(g, n, a.shape[1], -1).mean(3).mean(1).double().cpu()
            for name, a in acts.items()}


def _record(edges: pd.DataFrame, part_layer: str, units: np.ndarray,
            means: dict[str, torch.Tensor], baseline: dict[str, torch.Tensor]) -> None:
    for g, unit in enumerate(units):
        rows = edges[(edges["part_layer"] == part_layer) & (edges["part_unit"] == unit)]
        for object_layer, sub in rows.groupby("object_layer"):
            obj = sub["object_unit"].to_numpy()
            base = baseline[object_layer].numpy()[obj]
            after = means[object_layer][g].numpy()[obj]
            with np.errstate(divide="ignore", invalid="ignore"):
                drop = np.where(np.abs(base) > 0, (base - after) / np.abs(base), np.nan)
            edges.loc[sub.index, "ablation_drop"] = drop
            edges.loc[sub.index, "ablation_baseline"] = base
