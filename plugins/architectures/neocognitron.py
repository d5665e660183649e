"""A Neocognitron for digits, trained without labels by competitive learning.

Sources: K. Fukushima, "Neocognitron: a self-organizing neural network model for a
mechanism of pattern recognition unaffected by shift in position", Biological
Cybernetics 36, 1980; K. Fukushima, "Neocognitron for handwritten digit
recognition", Neurocomputing 51, 2003 (contrast-extracting layer, S-cells with
shunting inhibition and selectivity θ, add-if-silent learning).

* **UG**: contrast extraction, a fixed difference of Gaussians, rectified into an
  on-centre and an off-centre plane.
* **S-cells** (:class:`SLayer`): ``u_S = θ/(1−θ)·φ[(1 + Σ a·u_C)/(1 + θ·b·v) − 1]``
  with the inhibitory V-cell ``v = sqrt(Σ c·u_C²)`` (``c`` a fixed Gaussian
  window), ``b = sqrt(Σ a²/c)``, ``φ = max(·, 0)``: a shunting division whose
  selectivity θ sets how close (weighted cosine ≥ θ, for large inputs) a pattern
  must be to a plane's weights ``a`` to excite it.
* **C-cells**: ``ψ[Σ d·u_S]`` with a fixed Gaussian blur ``d``, stride 2 (thinning
  out), ``ψ(x) = φ(x)/(1 + φ(x))``.
* **Learning** (:func:`competitive_learning`, run by ``probe train`` as the
  ``prepare`` step, no labels): layer by layer, each image's S-layer is divided into
  competition areas; in each, the maximally responding S-cell (the winner)
  reinforces its plane's weights, ``Δa = q·c·u_C`` (weights are shared over the
  plane); where no cell responds but the input is not blank, an unused plane is
  seeded with that input (add-if-silent, Fukushima 2003).
* **Readout**: a linear layer on the last C layer (each feature standardised by
  running batch statistics, no parameters), fitted by backprop: the only use of
  labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from probe import ArchitectureSpec, Option, Register, TrainingStep, TrainRecipe, hookimpl


def gaussian(size: int, sigma: float) -> torch.Tensor:
    """A normalised ``Tensor[size, size]`` Gaussian (sums to 1)."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma ** 2))
    return g / g.sum()


class ContrastLayer(nn.Module):
    """UG: on- and off-centre responses ``φ(±DoG * x)`` (DoG σ 1 and 2 px, 7×7)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        dog = gaussian(7, 1.0) - gaussian(7, 2.0)
        weight = torch.stack([dog, -dog])[:, None].repeat(1, in_channels, 1, 1) / in_channels
        self.register_buffer("weight", weight.float())
        # the functional convolution's geometry, for receptive-field arithmetic
        self.kernel_size, self.stride, self.padding = 7, 1, 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(F.conv2d(x, self.weight.to(x.dtype), padding=self.padding))


class SLayer(nn.Module):
    """S-cells with shunting inhibition; ``conv.weight`` holds the planes' weights ``a``."""

    def __init__(self, in_channels: int, planes: int, size: int, theta: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, planes, size, padding=size // 2, bias=False)
        self.conv.weight.requires_grad_(False)
        with torch.no_grad():
            self.conv.weight.zero_()  # every plane unused until learning seeds it
        window = gaussian(size, size / 4) * size * size  # c(ν), mean 1 over the window
        self.register_buffer("window", window.float().expand(1, in_channels, size, size)
                             .clone())
        self.theta, self.size = theta, size
        self.out = nn.Identity()

    def inhibition(self, u: torch.Tensor) -> torch.Tensor:
        """The V-cell ``v = sqrt(Σ c·u²)``, ``Tensor[B, 1, H, W]``."""
        return F.conv2d(u * u, self.window.to(u.dtype), padding=self.size // 2).clamp_min(0) \
            .sqrt()

    def response(self, u: torch.Tensor, theta: float) -> torch.Tensor:
        """S-cell output at selectivity ``theta``."""
        a = self.conv.weight.to(u.dtype)
        b = (a * a / self.window.to(u.dtype)).sum((1, 2, 3)).sqrt().view(1, -1, 1, 1)
        e = F.conv2d(u, a, padding=self.size // 2)
        ratio = (1 + e) / (1 + theta * b * self.inhibition(u))
        return theta / (1 - theta) * F.relu(ratio - 1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.out(self.response(u, self.theta))


class CLayer(nn.Module):
    """C-cells: Gaussian blur (σ = size/4) per plane, stride 2, ``ψ = φ/(1 + φ)``."""

    def __init__(self, size: int = 5) -> None:
        super().__init__()
        self.register_buffer("blur", (gaussian(size, size / 4) * 4).float()[None, None])
        self.kernel_size, self.stride, self.padding = size, 2, size // 2

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        weight = self.blur.to(u.dtype).expand(u.shape[1], 1, -1, -1)
        x = F.relu(F.conv2d(u, weight, stride=2, padding=self.padding, groups=u.shape[1]))
        return x / (1 + x)


class Neocognitron(nn.Module):
    """UG → (S → C) × 3 → linear readout, for ``Tensor[B, C, H, W]`` inputs."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 32,
                 planes: tuple[int, ...] = (16, 32, 32), sizes: tuple[int, ...] = (7, 5, 5),
                 thetas: tuple[float, ...] = (0.6, 0.6, 0.55)) -> None:
        super().__init__()
        self.ug = ContrastLayer(in_channels)
        channels, side = 2, input_size
        self.s_layers = nn.ModuleList()
        self.c_layers = nn.ModuleList()
        for k, size, theta in zip(planes, sizes, thetas, strict=True):
            self.s_layers.append(SLayer(channels, k, size, theta))
            self.c_layers.append(CLayer())
            channels, side = k, (side + 1) // 2
        # standardised features for the readout (running statistics, no parameters)
        self.norm = nn.BatchNorm1d(channels * side * side, affine=False)
        self.readout = nn.Linear(channels * side * side, num_classes)

    def stage_input(self, x: torch.Tensor, stage: int) -> torch.Tensor:
        """The C-layer output feeding S-layer ``stage`` (0 = the UG output)."""
        u = self.ug(x)
        for s, c in list(zip(self.s_layers, self.c_layers, strict=True))[:stage]:
            u = c(s(u))
        return u

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.stage_input(x, len(self.s_layers))
        return self.readout(self.norm(u.flatten(1)))


def neocognitron_layers(model: Neocognitron) -> dict[str, str]:
    """``ug``, then ``s1 c1 s2 c2 s3 c3`` and ``output``."""
    layers = {"ug": "ug"}
    for i in range(len(model.s_layers)):
        layers[f"s{i + 1}"] = f"s_layers.{i}.out"
        layers[f"c{i + 1}"] = f"c_layers.{i}"
    layers["output"] = "readout"
    return layers


@torch.no_grad()
def learn_stage(layer: SLayer, inputs: torch.Tensor, theta: float, area: int, rate: float,
                seeds_per_batch: int, blank: float) -> dict[str, int]:
    """One batch of unsupervised competitive learning for one S-layer.

    ``inputs`` are ``Tensor[B, C, H, W]`` C-cell maps; responses are taken at the
    learning selectivity ``theta`` (higher than recognition's, as in Fukushima 2003).
    In each ``area × area`` competition area of each image the winner (largest
    response over planes and positions) adds ``rate · c · u`` (its input window) to its plane; up to
    ``seeds_per_batch`` silent areas whose V-cell exceeds ``blank`` seed unused planes.

    Returns the batch's counts: competition ``areas``, areas ``won`` by a responding
    cell, planes ``seeded``.
    """
    weight = layer.conv.weight
    k, size = weight.shape[0], layer.size
    resp = layer.response(inputs, theta)
    best, plane = resp.max(1)  # [B, H, W]
    top, where = F.max_pool2d(best[:, None], area, area, return_indices=True)
    top, where = top.flatten(1), where.flatten(1)  # [B, A]
    windows = F.unfold(inputs, size, padding=size // 2)  # [B, C·k·k, H·W]
    window_c = layer.window.flatten()
    won = top > 0
    if won.any():
        idx = where[won]
        batch = won.nonzero()[:, 0]
        picked = windows[batch, :, idx]  # [N, C·k·k]
        planes = plane.flatten(1)[batch, idx]
        update = torch.zeros(k, picked.shape[1], dtype=weight.dtype, device=weight.device)
        update.index_add_(0, planes, (rate * picked * window_c).to(weight.dtype))
        weight.add_(update.view_as(weight))
    used = weight.flatten(1).abs().sum(1) > 0
    free = (~used).nonzero().flatten()
    seeded = 0
    if len(free) and seeds_per_batch:
        v = layer.inhibition(inputs)
        energy, at = F.max_pool2d(v, area, area, return_indices=True)
        energy, at = energy.flatten(1), at.flatten(1)
        silent = (~won) & (energy > blank)
        candidates = silent.nonzero()
        if len(candidates):
            order = torch.argsort(energy[silent], descending=True)[:min(len(free),
                                                                        seeds_per_batch)]
            rows = candidates[order]
            picked = windows[rows[:, 0], :, at[rows[:, 0], rows[:, 1]]]
            weight.view(k, -1)[free[:len(rows)]] = (picked * window_c).to(weight.dtype)
            seeded = len(rows)
    return {"areas": int(won.numel()), "won": int(won.sum()), "seeded": seeded}


def competitive_learning(model: Neocognitron, batches: Iterable[torch.Tensor],
                         generator: torch.Generator, *, images: int = 400, chunk: int = 8,
                         area: int = 8, rate: float = 0.1, seeds_per_batch: int = 1,
                         blank: float = 0.05,
                         learning_thetas: tuple[float, ...] = (0.85, 0.8, 0.75)
                         ) -> Iterator[TrainingStep]:
    """Train every S-layer in turn, without labels, on up to ``images`` training images.

    Yields a :class:`probe.TrainingStep` after each chunk of images, staged ``s1``,
    ``s2``, ``s3``, with the stage's ``planes_used`` so far, the share of competition
    areas ``won`` by a responding cell, the planes ``seeded`` (add-if-silent) and the
    relative ``weight_change`` of the chunk.
    """
    del generator  # the order of ``batches`` is already seeded
    pool, count = [], 0
    for batch in batches:
        pool.append(batch)
        count += len(batch)
        if count >= images:
            break
    data = torch.cat(pool)[:images]
    chunks = range(0, len(data), chunk)
    total, done = len(chunks) * len(model.s_layers), 0
    for stage, layer in enumerate(model.s_layers):
        for start in chunks:
            with torch.no_grad():
                before = layer.conv.weight.detach().clone()
                inputs = model.stage_input(data[start:start + chunk], stage)
                counts = learn_stage(layer, inputs, learning_thetas[stage],
                                     max(area >> stage, 2), rate, seeds_per_batch, blank)
                weight = layer.conv.weight
                change = float((weight - before).norm() / weight.norm().clamp_min(1e-12))
                used = int((weight.flatten(1).abs().sum(1) > 0).sum())
            done += 1
            yield TrainingStep(f"s{stage + 1}", done, total, {
                "planes_used": used, "won": counts["won"] / max(counts["areas"], 1),
                "seeded": counts["seeded"], "weight_change": change})


def build_neocognitron(num_classes: int, in_channels: int, input_size: int,
                       planes: tuple[int, ...], thetas: tuple[float, ...]) -> Neocognitron:
    """Build the Neocognitron (S-layers empty until ``probe train`` runs the learning)."""
    from probe.errors import OptionError

    if len(planes) != 3 or len(thetas) != 3:
        raise OptionError(f"arch neocognitron options planes and thetas need 3 values, got "
                          f"{tuple(planes)} and {tuple(thetas)}")
    if not all(0 < t < 1 for t in thetas):
        raise OptionError(f"arch neocognitron thetas must lie in (0, 1), got {tuple(thetas)}")
    return Neocognitron(num_classes, in_channels, input_size, tuple(planes), (7, 5, 5),
                        tuple(thetas))


@hookimpl
def probe_register_architectures(register: Register) -> None:
    register(ArchitectureSpec(
        name="neocognitron",
        build=build_neocognitron,
        task="classification",
        family="neocognitron",
        input_size=32,
        in_channels=1,
        options=(
            Option("num_classes", int, 10, "number of output classes", minimum=2),
            Option("in_channels", int, 1, "input channels", minimum=1),
            Option("input_size", int, 32, "input side in pixels", minimum=8),
            Option("planes", tuple, (16, 32, 32), "S-planes of S1, S2, S3", item_type=int),
            Option("thetas", tuple, (0.6, 0.6, 0.55), "selectivity θ of S1, S2, S3",
                   item_type=float),
        ),
        layers=neocognitron_layers,
        description="Neocognitron (Fukushima 1980/2003), unsupervised competitive learning",
        train=TrainRecipe(dataset="digits", dataset_options={"split": "train"}, epochs=15,
                          batch_size=64, lr=1e-2),
        prepare=competitive_learning,
    ))
