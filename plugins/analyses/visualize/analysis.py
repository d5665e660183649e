"""The ``visualize`` analysis: feature visualisation by activation maximisation.

Lucid's recipe (Olah, Mordvintsev & Schubert, Distill 2017; :mod:`.param`): a
decorrelated Fourier-space parametrisation with the ImageNet colour square root
and a sigmoid to pixels, random jitter, scale and rotation at every step, Adam,
a fixed seed. All targets of a layer are optimised **together**: a batch of
``M × images_per_unit`` images for ``M`` targets, sample ``i`` maximising target
``i // images_per_unit``. The targets are the layer's ``K`` units (objectives
``channel``, the mean of the unit's map, or ``neuron``, its centre cell) or the
layer's concept vectors from ``directions`` (objectives ``direction`` and
``direction_cossim``, :mod:`.objectives`, :mod:`.directions`). With
``images_per_unit > 1`` and ``diversity > 0`` the loss adds ``diversity`` × the mean
pairwise cosine similarity of the Gram matrices of a target's images at the layer
(Lucid's diversity term). The forward pass stops at the layer (:mod:`.forward`).

The data pass records each target's best data-set value of the same objective, so
the table gives the value reached and its ratio to that. ``param="pixel"``
optimises the model input itself under an L2 bound ``norm`` (projected after
each step, plain gradient ascent), with no transforms: for a unit linear in its
input the optimum is the filter itself, scaled to the bound — the test of the
optimiser.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from typing import Any

import numpy as np
import pandas as pd
import torch

from probe import Accumulator, Analysis, Batch, ModelHandle, Option, RunContext
from probe.errors import OptionError

from .directions import Directions, layer_directions, layers_with_directions, read_directions
from .forward import LayerForward, frozen, no_inplace
from .objectives import DIRECTION_OBJECTIVES, UNIT_OBJECTIVES, objective, sample_objective
from .param import FourierImage, robust
from .relu import redirected_relus


class VisualizeAccumulator(Accumulator):
    """Each target's best data-set objective (declared ``max``), then the optimisation.

    Args:
        layers: The layers to visualise.
        units: Each layer's width ``K``.
        settings: The analysis's settings.
        device: The run's device.
        directions: For a direction objective, each layer's concept vectors.
    """

    def __init__(self, layers: list[str], units: dict[str, int], settings: dict[str, Any],
                 device: torch.device, directions: dict[str, Directions] | None = None) -> None:
        self.layers, self.units, self.settings = layers, units, settings
        self.concepts = {layer: d.concepts for layer, d in (directions or {}).items()}
        self.vectors = {layer: torch.as_tensor(d.weights, dtype=torch.float32, device=device)
                        for layer, d in (directions or {}).items()}
        targets = {layer: len(self.concepts[layer]) if layer in self.concepts
                   else units[layer] for layer in layers}
        self.add_state("best", {layer: torch.full((targets[layer],), -torch.inf,
                                                  dtype=torch.float64, device=device)
                                for layer in layers}, "max")
        self.rows: list[dict[str, Any]] = []

    def update(self, batch: Batch) -> None:
        for layer in self.layers:
            value = objective(batch.activations[layer].detach().float(),
                              self.settings["objective"], self.vectors.get(layer)).amax(0)
            self.best[layer] = torch.maximum(self.best[layer], value.double())

    def after_passes(self, context: RunContext) -> None:
        per = self.settings["images_per_unit"]
        for layer in self.layers:
            concepts = self.concepts.get(layer)
            targets = self.vectors[layer] if concepts is not None else \
                torch.arange(self.units[layer], device=context.device)
            images, values = optimise_in_batches(context.handle, layer, context.input_shape,
                                                 targets, self.settings)
            best = self.best[layer].cpu().numpy()
            pixels = (images.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy() \
                if self.settings["param"] == "fourier" else None
            for i in range(images.shape[0]):
                target = i // per
                self.rows.append({
                    "layer": layer, "unit": -1 if concepts is not None else target,
                    "concept": concepts[target] if concepts is not None else "",
                    "index": i % per,
                    "value": float(values[i]), "best_data": float(best[target]),
                    "ratio": float(values[i] / best[target]) if best[target] != 0 else np.nan,
                    "channels": images.shape[1], "height": images.shape[2],
                    "width": images.shape[3],
                    "pixels": pixels[i].ravel() if pixels is not None else
                    images[i].float().cpu().numpy().ravel(),
                })

    def finalize(self, context: RunContext) -> dict[str, pd.DataFrame]:
        frame = pd.DataFrame(self.rows, columns=list(Visualize.tables["images"]))
        return {"images": frame.astype({"concept": str})}

    def artifacts(self, context: RunContext) -> dict[str, bytes]:
        """One PNG per Fourier image: ``visualize/<layer>/<unit>_<index>.png`` for a unit,
        ``visualize/<layer>/concept_<name>_<index>.png`` for a concept direction."""
        from probe.views import images as img

        if self.settings["param"] != "fourier":
            return {}
        out = {}
        for row in self.rows:
            array = np.asarray(row["pixels"], dtype=np.uint8).reshape(
                row["channels"], row["height"], row["width"])
            stem = artifact_stem(row["concept"], self.concepts.get(row["layer"], ())) \
                if row["concept"] else str(row["unit"])
            out[f"{row['layer']}/{stem}_{row['index']}.png"] = img.png_bytes(
                img.to_rgb(array.astype(np.float32) / 255))
        return out


def artifact_stem(concept: str, concepts: tuple[str, ...]) -> str:
    """``concept_<name>``, the name reduced to letters, digits, ``.``, ``_``, ``-``; a
    name that collides with another concept's gets its position appended."""
    def clean(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "concept"

    name = clean(concept)
    if sum(clean(c) == name for c in concepts) > 1:
        name = f"{name}-{concepts.index(concept)}"
    return f"concept_{name}"


def optimise_in_batches(handle: ModelHandle, layer: str, input_shape: tuple[int, ...],
                        targets: torch.Tensor, settings: dict[str, Any]
                        ) -> tuple[torch.Tensor, np.ndarray]:
    """:func:`optimise` over all ``targets`` of a layer, at most ``settings["batch"]`` of
    them per call (0: all in one), so that memory is bounded by one batch.

    Batch ``j`` (from target ``start``) is seeded ``seed + start``: the split changes the
    random starts and transforms, not how each batch is optimised.
    """
    size = settings.get("batch", 0) or len(targets)
    if size >= len(targets):
        return optimise(handle, layer, input_shape, targets, settings)
    images, values = [], []
    for start in range(0, len(targets), size):
        part = {**settings, "seed": settings["seed"] + start}
        got = optimise(handle, layer, input_shape, targets[start:start + size], part)
        images.append(got[0])
        values.append(got[1])
    return torch.cat(images), np.concatenate(values)


def optimise(handle: ModelHandle, layer: str, input_shape: tuple[int, ...],
             targets: torch.Tensor, s: dict[str, Any]) -> tuple[torch.Tensor, np.ndarray]:
    """All ``M`` targets of ``layer`` in one batch: ``(images [M·n, C, H, W], objective [M·n])``.

    Args:
        handle: The run's model handle (model, layer map, preprocessing).
        layer: The layer.
        input_shape: The model's ``(C, H, W)``; ``s["size"]`` overrides ``H, W``.
        targets: ``Tensor[M]`` unit indices for a unit objective, ``Tensor[M, K]``
            directions for a direction objective.
        s: The analysis's settings.

    Fourier images are in [0, 1] (then normalised by the model's preprocessing);
    pixel images are model inputs.
    """
    channels, height, width = input_shape
    if s["size"]:
        height = width = s["size"]
    per = s["images_per_unit"]
    device = handle.device
    targets = targets.to(device).repeat_interleave(per, dim=0)  # one per sample
    count = len(targets)
    generator = torch.Generator().manual_seed(s["seed"])
    if s["param"] == "fourier":
        image = FourierImage(count, channels, height, width, generator, device)
        params = [image.spectrum]
    else:
        start = 0.01 * torch.randn((count, channels, height, width), generator=generator)
        params = [torch.nn.Parameter(start.to(device))]
    # Adam for the Fourier image (Lucid); projected gradient ascent for a bounded input,
    # whose fixed point on the ball is the gradient's direction (Adam's is its sign)
    optimiser = torch.optim.Adam(params, lr=s["lr"]) if s["param"] == "fourier" else \
        torch.optim.SGD(params, lr=s["lr"])
    jitter = max(1, round(height / 16))
    forward = LayerForward(handle.model, handle.model.get_submodule(handle.layers[layer]))

    def model_input(transform: bool) -> torch.Tensor:
        if s["param"] != "fourier":
            return params[0]
        pixels = image()
        if transform and s["transforms"]:
            pixels = robust(pixels, generator, jitter, 0.1, 10.0)
        return handle.normalize(pixels)

    def values(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        act = forward(inputs)
        return sample_objective(act, s["objective"], targets), act

    redirect = redirected_relus(handle.model) if s["redirect_relu"] else nullcontext()
    with no_inplace(handle.model), frozen(handle.model):
        with torch.enable_grad(), redirect:
            for _ in range(s["steps"]):
                score, act = values(model_input(True))
                loss = -score.sum()
                if per > 1 and s["diversity"] > 0 and act.dim() == 4:
                    loss = loss + s["diversity"] * count * _similarity(act, per)
                grads = torch.autograd.grad(loss, params)
                optimiser.zero_grad(set_to_none=True)
                for p, g in zip(params, grads, strict=True):
                    p.grad = g
                optimiser.step()
                if s["param"] != "fourier":
                    with torch.no_grad():  # project onto the L2 ball of radius `norm`
                        norms = params[0].flatten(1).norm(dim=1).clamp(min=1e-12)
                        params[0].mul_((s["norm"] / norms).clamp(max=1.0).view(-1, 1, 1, 1))
        with torch.no_grad():
            final = model_input(False)
            score, _ = values(final)
            images = image() if s["param"] == "fourier" else final
    return images.detach(), score.double().cpu().numpy()


def _similarity(act: torch.Tensor, per: int) -> torch.Tensor:
    """Mean pairwise cosine similarity of the Gram matrices of each target's ``per`` images."""
    flat = act.flatten(2)  # [N, K, hw]
    gram = torch.einsum("nkp,nlp->nkl", flat, flat).flatten(1)
    gram = torch.nn.functional.normalize(gram, dim=1).view(-1, per, gram.shape[1])
    cos = torch.einsum("uad,ubd->uab", gram, gram)
    off = cos.sum(dim=(1, 2)) - cos.diagonal(dim1=1, dim2=2).sum(1)
    return off.sum() / (cos.shape[0] * per * (per - 1))


class Visualize(Analysis):
    """Feature visualisation (Olah et al. 2017, Lucid): images that maximise each unit or
    concept direction.

    See the module docstring for the recipe and the departures.
    """

    name = "visualize"
    description = "feature visualisation: an image optimised to excite each unit or " \
                  "concept direction (Lucid recipe, all of a layer in one batch)"
    options = (
        Option("layers", tuple, (), "layers to visualise (default: every layer of the run; "
               "with a direction objective, those with concept vectors)", item_type=str),
        Option("objective", str, "channel", "what is maximised",
               choices=UNIT_OBJECTIVES + DIRECTION_OBJECTIVES),
        Option("directions", str, "", "concept vectors for a direction objective: a run "
               "directory with concept-vectors, or a .parquet/.csv file of its columns"),
        Option("steps", int, 64, "optimisation steps", minimum=1),
        Option("lr", float, 0.05, "Adam learning rate", minimum=0.0),
        Option("size", int, 0, "image side (0 = the model's input size)", minimum=0),
        Option("param", str, "fourier", "parametrisation", choices=("fourier", "pixel")),
        Option("norm", float, 10.0, "L2 bound of the model input (param=pixel)",
               minimum=0.0),
        Option("transforms", bool, True, "random jitter, scale and rotation each step"),
        Option("images_per_unit", int, 1, "images per unit", minimum=1, maximum=16),
        Option("batch", int, 0, "most units (or directions) optimised together; their "
               "images_per_unit images each are one batch (0 = every unit of the layer: "
               "memory is one layer's batch)", minimum=0),
        Option("diversity", float, 0.0, "weight of the diversity term", minimum=0.0),
        Option("seed", int, 0, "seed of the initial images and the transforms"),
        Option("redirect_relu", bool, True, "Lucid's redirected ReLU gradient while "
               "optimising (a unit that starts silent can still be reached)"),
    )
    passes = 1
    tables = {"images": ("layer", "unit", "concept", "index", "value", "best_data", "ratio",
                         "channels", "height", "width", "pixels")}
    views_from = ("probe.plugins.analyses.visualize.views",)

    def __init__(self, **settings: object) -> None:
        super().__init__(**settings)
        s = self.settings
        if s["param"] == "pixel" and s["norm"] <= 0:
            raise OptionError(f"visualize.norm must be > 0 with param=pixel, got {s['norm']}")
        if s["objective"] in DIRECTION_OBJECTIVES and not s["directions"]:
            raise OptionError(f"visualize.directions must name a run directory with "
                              f"concept-vectors or a .parquet/.csv file with "
                              f"objective={s['objective']}, got none")
        self._frame: pd.DataFrame | None = None

    def _vectors(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = read_directions(self.settings["directions"])
        return self._frame

    def select_layers(self, context: RunContext) -> list[str]:
        if self.settings["objective"] not in DIRECTION_OBJECTIVES:
            return self.chosen_layers(context, self.settings["layers"])
        have = layers_with_directions(self._vectors())
        default = [layer for layer in context.layers if layer in have]
        if not default and not self.settings["layers"]:
            raise OptionError(f"visualize.directions: none of the run's layers "
                              f"({', '.join(context.layers)}) has concept vectors in "
                              f"{self.settings['directions']!r}; layers with vectors: "
                              f"{', '.join(sorted(have)) or 'none'}")
        return self.chosen_layers(context, self.settings["layers"], default)

    def accumulator(self, context: RunContext) -> VisualizeAccumulator:
        layers = self.select_layers(context)
        units = {layer: int(context.layer_shapes[layer][0]) for layer in layers}
        directions = None
        if self.settings["objective"] in DIRECTION_OBJECTIVES:
            directions = {layer: layer_directions(self._vectors(), layer, units[layer],
                                                  self.settings["directions"])
                          for layer in layers}
        return VisualizeAccumulator(layers, units, dict(self.settings), context.device,
                                    directions)


__all__ = ["Visualize", "VisualizeAccumulator", "artifact_stem", "objective", "optimise",
           "optimise_in_batches", "sample_objective"]
