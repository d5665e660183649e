"""The ``equivariance`` analysis against the ground truths of REFERENCE §4 (items 1–5, 7, 8).

Every check goes through the analysis itself, driven by probe's one runner
(``probe.measure``, ``probe.analyze``, or ``probe.testing.drive`` for shards),
on the reference models of ``plugins/architectures/reference.py``, in float64
where the ground truth is exact.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import probe
from probe import ProbeDataset
from probe.plan import plan_run
from probe.plugins.analyses.equivariance.consistency import agreement, crop_shift
from probe.plugins.analyses.equivariance.lie import OUTPUT
from probe.plugins.architectures.reference import (
    BlurPool,
    ReferenceNet,
    Subsample,
    reference_layers,
)

FAST = {"lie": False, "consistency": False, "learned_maps": "none"}


def _noise(n: int, size: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float64)


def _net(**kwargs) -> ReferenceNet:
    return ReferenceNet(**{"channels": 6, "seed": 1, **kwargs}).double().eval()


class _Images(ProbeDataset):
    """A tensor of images in [0, 1] as a data set (index = position, no labels)."""

    name = "tensor-images"

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        self.channels = images.shape[1]
        self.image_size = images.shape[-1]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return {"image": self.images[index], "index": index}


def _float64_inputs(model: nn.Module) -> nn.Module:
    """``model`` in float64: the runner hands a model images in its own dtype, so every
    forward pass, and the analysis's measurements, are then float64."""
    return model.double()


def _tables(model: nn.Module, images: torch.Tensor, layers=None, **options):
    """``probe.measure`` on a float64 model, layer names as in ``layers`` (name → path)."""
    layers = reference_layers(model) if layers is None else layers
    tables = probe.measure(_float64_inputs(model), _Images(images),
                           [("equivariance", options)], layers=list(layers.values()),
                           batch_size=4)["equivariance"]
    names = {path: name for name, path in layers.items()}
    return {table: frame.assign(layer=frame["layer"].map(lambda v: names.get(v, v)))
            if "layer" in frame.columns else frame for table, frame in tables.items()}


def _errors(tables, transform: str) -> pd.DataFrame:
    errors = tables["errors"]
    return errors[errors["transform"] == transform]


def test_circular_stride1_model_commutes_with_every_integer_shift():
    """§4.1, §4.3: circular conv + ReLU commutes with circular shifts; global pooling invariant."""
    tables = _tables(_net(), _noise(4, 12), transforms=("shift-x", "shift-y"),
                     magnitudes=("shift-x=0:12:1px", "shift-y=0;1;5"), **FAST)
    errors = tables["errors"]
    assert sorted(set(_errors(tables, "shift-x")["pixels"])) == list(range(13))
    assert set(errors["layer"]) == {"conv1", "pool", "output", OUTPUT}
    assert errors["relative_error"].max() < 1e-12
    assert errors["exact_action"].all() and (errors["images"] == 4).all()
    # zero padding breaks it at the border
    zero = _tables(_net(padding="zeros"), _noise(4, 12), transforms=("shift-x",),
                   magnitudes=("shift-x=1px",), **FAST)
    assert _errors(zero, "shift-x").set_index("layer").loc["conv1", "relative_error"] > 1e-2


@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
def test_stride2_model_is_exact_only_for_multiples_of_its_total_stride(downsample):
    """§4.2 and §4.3: stride 2 (or max-pool 2×2) commutes with even shifts only; two stages: ×4."""
    tables = _tables(_net(stages=2, downsample=downsample), _noise(4, 16),
                     transforms=("shift-x",), magnitudes=("shift-x=0:8:1px",), **FAST)
    errors = _errors(tables, "shift-x")
    strides = {"conv1": 1, "down1": 2, "conv2": 2, "down2": 4, "conv3": 4, "pool": 4,
               "output": 4, OUTPUT: 4}
    for row in errors.itertuples():
        period = strides[row.layer]
        if row.pixels % period == 0:
            assert row.relative_error < 1e-12, (row.layer, row.pixels)
        else:
            assert row.relative_error > 1e-3, (row.layer, row.pixels)
    grid_rows = errors[errors["layer"].isin(["conv1", "down1", "conv2", "down2", "conv3"])]
    assert (grid_rows["stride"] == grid_rows["layer"].map(strides)).all()
    assert (grid_rows["exact_action"]
            == (grid_rows["pixels"] % grid_rows["stride"] == 0)).all()


def _d4_symmetric(model: nn.Module) -> nn.Module:
    """Average every kernel over flips and quarter turns (a D4-invariant filter bank)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                w = module.weight
                copies = [torch.rot90(v, k, dims=(-2, -1)) for v in (w, w.flip(-1))
                          for k in range(4)]
                w.copy_(torch.stack(copies).mean(0))
    return model


@pytest.mark.parametrize(("size", "exact"), [(21, True), (25, True), (24, False), (23, False)])
def test_flip_and_rot90_through_strided_layers_need_matching_sizes(size, exact):
    """§4.4 and §4.8: with symmetric kernels flips and rot90 are exact iff (n + 2p − k) % s == 0."""
    model = _d4_symmetric(_net(stages=2))
    tables = _tables(model, _noise(2, size), transforms=("hflip", "rot90"), **FAST)
    errors = tables["errors"]
    moved = errors[errors["magnitude"] != 0]
    assert set(moved["magnitude"]) == {1.0, 2.0, 3.0}
    strided = moved[moved["layer"].isin(["down2", "conv3", OUTPUT])]
    if exact:
        assert moved["relative_error"].max() < 1e-12
        assert moved["exact_action"].all()
    else:
        # half-turns of an even grid stay exact on even sizes only at stride-1 layers
        assert strided["relative_error"].min() > 1e-3
        assert not moved[moved["layer"] == "down2"]["exact_action"].all()
    assert moved[moved["layer"] == "conv1"]["relative_error"].max() < 1e-12


def test_learned_map_recovers_the_partner_swap_of_a_flip_closed_filter_bank():
    """§3, §4.4: a bank closed under flips: the fitted 1×1 map is the partner-swap permutation."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 3, padding=1).double()
    with torch.no_grad():
        conv.weight[3:] = conv.weight[:3].flip(-1)
        conv.bias[3:] = conv.bias[:3]
    model = nn.Sequential(conv, nn.ReLU()).eval()
    tables = _tables(model, _noise(8, 10), {"conv": "1"}, transforms=("hflip",),
                     lie=False, consistency=False, ridge=1e-10)
    maps = tables["learned_maps"].set_index("layer").loc["conv"]
    assert maps["one_minus_r2"] < 1e-8
    assert maps["spatial_one_minus_r2"] > 0.3 and maps["identity_one_minus_r2"] > 0.3
    assert maps["fit_positions"] == maps["held_positions"] == 4 * 100
    units = tables["learned_map_units"]
    assert units["partner"].tolist() == [3, 4, 5, 0, 1, 2]
    np.testing.assert_allclose(units["weight"], 1.0, atol=1e-6)
    np.testing.assert_allclose(units["bias"], 0.0, atol=1e-6)
    weights = tables["learned_map_weights"]
    matrix = weights.pivot(index="unit", columns="source_unit", values="weight").to_numpy()
    np.testing.assert_allclose(matrix, np.roll(np.eye(6), 3, axis=1), atol=1e-6)


def _lie_relative(model: nn.Module, images: torch.Tensor, layers, transform="shift-x"):
    tables = _tables(model, images, layers, transforms=(transform,),
                     magnitudes=(f"{transform}=0",), consistency=False, learned_maps="none")
    return tables["lie"].set_index("layer")["relative"], tables["lie_attribution"]


def test_lie_derivative_is_zero_for_linear_circular_conv_and_not_for_nonlinear_layers():
    """§4.7: a linear circular conv has zero Lie derivative for shifts; ReLU and max-pool do not."""
    conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular").double()
    images = _noise(4, 8, channels=2)
    linear, _ = _lie_relative(nn.Sequential(conv).eval(), images, {"conv": "0"})
    assert linear["conv"] < 1e-12
    relu, _ = _lie_relative(nn.Sequential(conv, nn.ReLU()).eval(), images, {"relu": "1"})
    assert relu["relu"] > 1e-2
    pooled, _ = _lie_relative(nn.Sequential(conv, nn.MaxPool2d(2)).eval(), images,
                              {"pool": "1"})
    assert pooled["pool"] > 1e-2


def test_aliasing_ranking_subsample_over_average_pool_over_blur_pool():
    """§4.7: on white noise, plain subsampling > 2×2 average pooling > binomial blur-pool."""
    images = _noise(8, 16, channels=1)
    values = {}
    for name, op in (("subsample", Subsample(2)), ("avgpool", nn.AvgPool2d(2)),
                     ("blurpool", BlurPool(2))):
        relative, _ = _lie_relative(nn.Sequential(op).double().eval(), images, {"down": "0"})
        values[name] = relative["down"]
    assert values["subsample"] > values["avgpool"] > values["blurpool"] > 0
    # the same ranking inside a network sharing its weights across the three variants
    inside = {name: _lie_relative(_net(stages=1, downsample=name), _noise(4, 16), None)[0]
              for name in ("stride", "avgpool", "blurpool")}
    assert inside["stride"]["down1"] > inside["avgpool"]["down1"] > inside["blurpool"]["down1"]


@pytest.mark.parametrize("transform", ["shift-x", "translate-x", "rotate", "scale"])
def test_chain_rule_parts_sum_as_vectors_to_the_end_to_end_lie_derivative(transform):
    """§3: per-layer contributions J_{>i} L f_i sum as vectors to L F (float64)."""
    model = _net(stages=2, downsample="maxpool")
    _, parts = _lie_relative(model, _noise(4, 16), None, transform)
    assert parts["closure"].max() < 1e-12
    assert abs(parts["share"].sum() - 1) < 1e-12
    assert parts["layer"].tolist() == ["conv1", "down1", "conv2", "down2", "conv3", "pool",
                                       "output", OUTPUT]
    assert (parts["total_lee"] > 0).all()
    # after global pooling nothing has a grid; a circular shift does not change a global mean
    after = ["pool", "output", OUTPUT] if transform == "shift-x" else ["output", OUTPUT]
    assert parts.set_index("layer").loc[after, "contribution_sq"].max() \
        < 1e-20 * parts["total_lee"].iloc[0]


def test_end_to_end_lie_derivative_equals_a_one_sided_finite_difference():
    from probe.analysis import ModelHandle
    from probe.plugins.analyses.equivariance.lie import lie_derivatives
    from probe.receptive_field import layer_grids
    from probe.transform_registry import get_transforms

    model = _net(stages=1)
    layers = reference_layers(model)
    images = _noise(2, 12)
    handle = ModelHandle(model, layers, probe.Preprocessing())
    grids, order = layer_grids(model, layers, images[:1])
    (shift,) = get_transforms(["shift-x"])
    _, vectors = lie_derivatives(handle, images, shift, order, grids, None)
    h = 1e-6
    with torch.no_grad():
        finite = (model(shift.apply(images, h)) - model(images)) / h
    torch.testing.assert_close(vectors["total"], finite, rtol=1e-4, atol=1e-6)


def test_two_shards_reduced_through_declared_state_equal_one_pass():
    """Shards (images 0, 2, ... and 1, 3, ...) reduced only through the declared sums."""
    from probe.testing import drive

    model = _float64_inputs(_net(stages=1))
    options = {"transforms": ("shift-x", "hflip"), "magnitudes": ("shift-x=0;1;2px",),
               "consistency_steps": 2}
    plan = plan_run(model, _Images(_noise(8, 12)), [("equivariance", options)],
                    layers=list(reference_layers(model).values()), batch_size=3)
    accumulator, _, whole = drive(plan, torch.device("cpu"), shards=1)
    assert "merge" not in vars(type(accumulator))  # no merge code: declared sums reduce
    _, _, merged = drive(plan, torch.device("cpu"), shards=2)
    for name, frame in whole.items():
        pd.testing.assert_frame_equal(merged[name].reset_index(drop=True),
                                      frame.reset_index(drop=True), rtol=1e-9,
                                      check_dtype=False)
    assert len(whole["consistency"]) == 1 and len(whole["learned_maps"]) > 0
    assert (whole["errors"]["images"] == 8).all()


def test_consistency_helpers_and_segmentation_outputs():
    images = _noise(3, 6)
    pad = 2
    oy, ox = torch.tensor([0, 2, 4]), torch.tensor([4, 1, 2])
    cropped = crop_shift(images, oy, ox, pad)
    padded = torch.nn.functional.pad(images, (pad,) * 4)
    for b in range(3):
        assert torch.equal(cropped[b], padded[b, :, oy[b]:oy[b] + 6, ox[b]:ox[b] + 6])
    # a per-pixel classifier that is translation-equivariant agrees wherever both crops see
    other = (torch.tensor([1, 1, 0]), torch.tensor([0, 3, 3]))
    agree, n, change, flipped = agreement(cropped, crop_shift(images, *other, pad), (oy, ox),
                                          other, pad)
    assert agree == n and flipped == 0 and change < 1e-12

    def seen(o1: int, o2: int) -> int:  # original-image pixels both crops see, along one axis
        return len(set(range(o1 - pad, o1 - pad + 6)) & set(range(o2 - pad, o2 - pad + 6))
                   & set(range(6)))

    assert n == sum(seen(int(a), int(c)) * seen(int(b), int(d))
                    for a, b, c, d in zip(oy, ox, *other, strict=True))
    tables = _tables(nn.Identity(), _noise(4, 8), {}, transforms=("hflip",), lie=False,
                     learned_maps="none", consistency_steps=2)
    summary = tables["consistency"].iloc[0]
    assert summary["task"] == "segmentation" and summary["unit_compared"] == "pixel"
    assert summary["consistency"] == 1.0 and summary["top1_change"] == 0.0
    assert np.isnan(summary["accuracy"])  # no segmentation targets given


def test_circular_conv_operator_is_block_circulant_and_diagonalised_by_the_dft():
    """§4.5: the operator matrix of a circular conv commutes with the shift actions, is a
    polynomial in them (block-circulant), and the 2-D DFT diagonalises it with the
    kernel's FFT as eigenvalues."""
    from probe.transform_registry import get_transforms

    n = 6
    torch.manual_seed(3)
    conv = nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular", bias=False).double()
    basis = torch.eye(n * n, dtype=torch.float64).view(n * n, 1, n, n)
    with torch.no_grad():
        operator = conv(basis).view(n * n, n * n).T  # column j = response to basis image j
    shift_x, shift_y = get_transforms(["shift-x", "shift-y"])
    sx = shift_x.apply(basis, 1 / n).view(n * n, n * n).T
    sy = shift_y.apply(basis, 1 / n).view(n * n, n * n).T
    torch.testing.assert_close(operator @ sx, sx @ operator, rtol=0, atol=1e-14)
    torch.testing.assert_close(operator @ sy, sy @ operator, rtol=0, atol=1e-14)
    impulse = operator[:, 0].view(n, n)  # response to a unit impulse at (0, 0)
    polynomial = sum(impulse[i, j] * torch.linalg.matrix_power(sy, i)
                     @ torch.linalg.matrix_power(sx, j) for i in range(n) for j in range(n))
    torch.testing.assert_close(operator, polynomial, rtol=0, atol=1e-14)
    # DFT: eigenvalues = FFT of the kernel, flipped (cross-correlation) and centred on (0, 0)
    w = conv.weight.detach()[0, 0]
    embedded = torch.zeros(n, n, dtype=torch.float64)
    for a in range(3):
        for b in range(3):
            embedded[(1 - a) % n, (1 - b) % n] = w[a, b]
    eigen = torch.fft.fft2(embedded).flatten()
    f1 = torch.fft.fft(torch.eye(n, dtype=torch.complex128), dim=0)
    dft = torch.kron(f1, f1)
    diagonal = dft @ operator.to(torch.complex128) @ torch.linalg.inv(dft)
    torch.testing.assert_close(diagonal, torch.diag(eigen), rtol=0, atol=1e-12)
