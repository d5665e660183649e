"""Attributions of one unit's activation per exemplar to the input pixels, through Captum.

Every exemplar in a call may target a different unit and cell of the same layer:
the neuron selector (:class:`UnitSelector`) picks, for sample ``i``, the
activation ``y[i, unit_i, row_i, col_i]``, so the exemplars of many units go
through one Captum call. Integrated gradients evaluate the model on a batch of
``steps × N`` interpolated inputs, step-major, which the selector follows by
repeating its indices.

Methods (``METHODS``):

- ``deconvnet``: Zeiler & Fergus (2014) projection, Captum ``NeuronDeconvolution``
  (ReLU backward replaced by a ReLU of the gradient).
- ``guided-backprop``: Springenberg et al. (2015), Captum ``NeuronGuidedBackprop``.
- ``integrated-gradients``: Sundararajan et al. (2017), Captum
  ``NeuronIntegratedGradients`` (Gauss–Legendre, ``steps`` points) from a baseline.
- ``gradient``: the plain input gradient, Captum ``NeuronGradient`` (what the two
  ReLU-modifying methods reduce to in a network without ReLUs).
- ``grad-cam``: Selvaraju et al. (ICCV 2017), Captum ``LayerGradCam``: the feature
  maps ``A_c`` of a layer weighted by ``α_c``, the spatial mean of ``∂y/∂A_c``,
  summed over ``c`` and rectified, upsampled to the input by Captum's
  ``LayerAttribution.interpolate`` (bilinear). ``y`` is the sample's selected unit
  and cell; the feature layer is the unit's own (then ``α`` is one-hot and the map
  is the unit's rectified activation map over ``h·w``) or the layer before it.

Captum rewrites the backward pass of ``nn.ReLU`` modules only (a ReLU applied as a
function in ``forward`` keeps its ordinary gradient). In-place activations are
switched off for the call (Captum's hooks cannot see a tensor modified in place)
and restored afterwards.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn

from probe.capture import no_inplace

METHODS = ("deconvnet", "guided-backprop", "integrated-gradients", "gradient",
           "grad-cam")


class UnitSelector:
    """Captum neuron selector: sample ``i`` → ``output[i, unit_i, row_i, col_i]``.

    Args:
        units, rows, cols: ``Tensor[N]`` int64 per exemplar (rows/cols ignored for
            ``[N, K]`` outputs).
    """

    def __init__(self, units: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> None:
        self.units, self.rows, self.cols = units, rows, cols

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        repeats = output.shape[0] // len(self.units)  # integrated gradients: steps × N
        units = self.units.to(output.device).repeat(repeats)
        samples = torch.arange(output.shape[0], device=output.device)
        if output.dim() == 4:
            rows = self.rows.to(output.device).repeat(repeats)
            cols = self.cols.to(output.device).repeat(repeats)
            return output[samples, units, rows, cols]
        return output.reshape(output.shape[0], -1)[samples, units]


def unit_forward(model: nn.Module, layer: nn.Module,
                 selector: UnitSelector) -> Callable[[torch.Tensor], torch.Tensor]:
    """A forward function for Captum's layer methods: ``Tensor[N]``, each sample's selected
    activation of ``layer`` (the hook is removed in ``finally``)."""

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            model(inputs)
        finally:
            handle.remove()
        return selector(captured[-1])

    return forward


def grad_cam(model: nn.Module, layer: nn.Module, features: nn.Module, inputs: torch.Tensor,
             selector: UnitSelector) -> torch.Tensor:
    """``Tensor[N, 1, H, W]``: Grad-CAM of each sample's selected unit of ``layer`` on the
    maps of ``features`` (Captum ``LayerGradCam``, rectified), upsampled bilinearly to the
    input by ``LayerAttribution.interpolate``; a fully connected ``features`` output is
    one cell (a constant map)."""
    from captum.attr import LayerAttribution, LayerGradCam

    cam = LayerGradCam(unit_forward(model, layer, selector), features).attribute(
        inputs, relu_attributions=True)
    if cam.dim() == 2:  # [N, 1] from [N, K] features: no spatial map
        cam = cam[:, :, None, None]
    return LayerAttribution.interpolate(cam, tuple(inputs.shape[-2:]), "bilinear")


def attribute(model: nn.Module, layer: nn.Module, inputs: torch.Tensor,
              selector: UnitSelector, method: str, baseline: torch.Tensor,
              steps: int, features: nn.Module | None = None) -> torch.Tensor:
    """``Tensor[N, C, H, W]``: the attribution of each sample's selected unit to its input.

    Args:
        model: The model (eval mode).
        layer: The module whose output holds the units.
        inputs: ``Tensor[N, C, H, W]`` model inputs (normalised).
        selector: Which unit and cell of ``layer`` each sample explains.
        method: One of :data:`METHODS`.
        baseline: ``Tensor[1 or N, C, H, W]`` integrated gradients' baseline.
        steps: Integrated gradients' integration points.
        features: Grad-CAM's feature layer (default: ``layer``).

    Returns ``Tensor[N, 1, H, W]`` for Grad-CAM.
    """
    from captum.attr import (
        NeuronDeconvolution,
        NeuronGradient,
        NeuronGuidedBackprop,
        NeuronIntegratedGradients,
    )

    inputs = inputs.detach().requires_grad_()
    with no_inplace(model), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        if method == "deconvnet":
            return NeuronDeconvolution(model, layer).attribute(inputs, selector)
        if method == "guided-backprop":
            return NeuronGuidedBackprop(model, layer).attribute(inputs, selector)
        if method == "gradient":
            return NeuronGradient(model, layer).attribute(inputs, selector)
        if method == "grad-cam":
            return grad_cam(model, layer, layer if features is None else features, inputs,
                            selector)
        if method == "integrated-gradients":
            return NeuronIntegratedGradients(model, layer).attribute(
                inputs, selector, baselines=baseline.expand_as(inputs), n_steps=steps)
    raise ValueError(f"attribution method must be one of {', '.join(METHODS)}, got {method!r}")


__all__ = ["METHODS", "UnitSelector", "attribute", "grad_cam", "no_inplace", "unit_forward"]
