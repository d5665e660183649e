"""probe.transforms: actions on images and on feature grids, registration of user transforms."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from probe import hookimpl
from probe.errors import PluginError, ProbeError
from probe.host import Host, get_host
from probe.transform_registry import get_transforms
from probe.transforms import Grid, Transform, builtin_transforms, resample

BUILTIN = {t.name: t for t in builtin_transforms()}


def _images(n: int = 2, c: int = 3, size: int = 8) -> torch.Tensor:
    return torch.randn(n, c, size, size, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64)


def test_builtins_are_registered_through_the_plugin_host():
    names = get_host().transforms.names()
    assert set(BUILTIN) <= set(names)
    assert [t.name for t in get_transforms(["hflip", "rot90"])] == ["hflip", "rot90"]
    with pytest.raises(ProbeError, match=r"unknown transform 'shear'.*hflip"):
        get_transforms(["shear"])


@pytest.mark.parametrize("pixels", [0, 1, 3, 5, 8])
def test_circular_shift_is_a_roll_in_normalised_units(pixels):
    x = _images()
    assert torch.equal(BUILTIN["shift-x"].apply(x, pixels / 8), x.roll(pixels, -1))
    assert torch.equal(BUILTIN["shift-y"].apply(x, pixels / 8), x.roll(pixels, -2))


def test_sub_pixel_shift_is_linear_interpolation_and_zero_fill_has_a_mask():
    x = _images()
    half = BUILTIN["shift-x"].apply(x, 0.5 / 8)
    torch.testing.assert_close(half, (x + x.roll(1, -1)) / 2, rtol=0, atol=1e-15)
    moved, mask = BUILTIN["translate-x"].act(x, 2 / 8)
    assert torch.equal(moved[..., 2:], x[..., :-2]) and (moved[..., :2] == 0).all()
    assert mask.tolist() == [[False, False] + [True] * 6] * 8


def test_flips_and_quarter_turns_equal_torch():
    x = _images()
    assert torch.equal(BUILTIN["hflip"].apply(x, 1), x.flip(-1))
    assert torch.equal(BUILTIN["vflip"].apply(x, 1), x.flip(-2))
    for k in range(4):
        assert torch.equal(BUILTIN["rot90"].apply(x, k), torch.rot90(x, k, dims=(-2, -1)))
    # the interpolated rotation agrees with the exact one at 90° (weights exactly 0/1)
    torch.testing.assert_close(BUILTIN["rotate"].apply(x, 90.0),
                               torch.rot90(x, 1, dims=(-2, -1)), rtol=0, atol=1e-12)
    assert torch.equal(BUILTIN["scale"].apply(x, 1.0), x)


def test_rotation_matches_an_analytic_smooth_image_inside_the_disk():
    size = 33
    grid = Grid.image(size, size)
    py, px = grid.normalised(torch.device("cpu"))
    image = (torch.cos(3 * px) * torch.sin(2 * py + 0.3))[None, None]
    theta = math.radians(20.0)
    # content rotated counter-clockwise on screen: value at p comes from R(θ)p
    c, s = math.cos(theta), math.sin(theta)
    sy, sx = c * py + s * px, c * px - s * py
    expected = (torch.cos(3 * sx) * torch.sin(2 * sy + 0.3))[None, None]
    rotated, mask = BUILTIN["rotate"].act(image, 20.0)
    error = (rotated - expected)[..., mask].abs().max()
    assert error < 0.02  # bilinear error on a smooth image, inside the central disk
    assert not mask[0, 0] and mask[size // 2, size // 2]


def test_action_on_a_strided_grid_converts_the_shift():
    # A stride-2 subsampling grid of a 16-px input: cells at input pixels 0, 2, 4, ...
    grid = Grid((8, 8), (16, 16), (2.0, 2.0), (0.0, 0.0))
    z = _images(size=8)
    shift = BUILTIN["shift-x"]
    for pixels in (2, 4, 6):  # even input shifts are whole cells: an exact roll by pixels/2
        moved, mask = shift.act(z, pixels / 16, grid)
        assert torch.equal(moved, z.roll(pixels // 2, -1)) and mask.all()
        assert shift.is_exact(pixels / 16, grid)
    moved, _ = shift.act(z, 1 / 16, grid)  # odd: half a cell, interpolated
    torch.testing.assert_close(moved, (z + z.roll(1, -1)) / 2, rtol=0, atol=1e-15)
    assert not shift.is_exact(1 / 16, grid)
    # a flip is exact only on a centred grid (cell centres symmetric about the image centre)
    assert not grid.is_centred and not BUILTIN["hflip"].is_exact(1, grid)
    pooled = Grid((8, 8), (16, 16), (2.0, 2.0), (0.5, 0.5))  # 2×2 pooling
    assert pooled.is_centred and BUILTIN["hflip"].is_exact(1, pooled)
    assert torch.equal(BUILTIN["hflip"].act(z, 1, pooled)[0], z.flip(-1))


def test_one_sided_derivative_at_the_identity():
    x = _images()
    t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    moved = BUILTIN["shift-x"].apply(x, t)
    (grad,) = torch.autograd.grad((moved * x).sum(), t)
    # right derivative: d/dt x(u − 8t) at t = 0⁺ is 8·(x(u−1) − x(u))
    expected = (8 * (x.roll(1, -1) - x) * x).sum()
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)
    h = 1e-3  # bilinear resampling is linear in t between grid points: no truncation error
    finite = ((BUILTIN["shift-x"].apply(x, h) - x) / h * x).sum()
    torch.testing.assert_close(grad, finite, rtol=1e-9, atol=1e-9)


def test_resample_wraps_or_masks():
    z = torch.arange(4.0).view(1, 1, 1, 4)
    cy = torch.zeros(1, 4, dtype=torch.float64)
    cx = torch.tensor([[-1.0, 0.5, 2.0, 3.5]], dtype=torch.float64)
    wrapped, mask = resample(z, cy, cx, wrap=True)
    assert wrapped.flatten().tolist() == [3.0, 0.5, 2.0, 1.5] and mask.all()
    zero, mask = resample(z, cy, cx, wrap=False)
    assert zero.flatten().tolist() == [0.0, 0.5, 2.0, 1.5]
    assert mask.flatten().tolist() == [False, True, True, False]


def test_act_checks_its_arguments():
    with pytest.raises(ValueError, match="grid size"):
        BUILTIN["hflip"].act(_images(size=8), 1, Grid.image(4, 4))
    with pytest.raises(ValueError, match="square"):
        BUILTIN["rot90"].act(torch.zeros(1, 1, 4, 6), 1)
    logits = torch.randn(2, 5)
    assert torch.equal(BUILTIN["rot90"].act(logits, 1)[0], logits)  # no grid: invariant


class Shear(Transform):
    name = "shear"
    description = "horizontal shear"
    unit = "shear factor"

    def source(self, py, px, magnitude):
        return py, px - magnitude * py


class _ShearPlugin:
    @hookimpl
    def probe_register_transforms(self, register):
        register(Shear())


class _NotATransformPlugin:
    @hookimpl
    def probe_register_transforms(self, register):
        class Fake:
            name = "fake"
        register(Fake())


def test_users_register_their_own_transforms():
    host = Host()
    host.load()
    host.add_plugin(_ShearPlugin(), "shear-plugin")
    shear = host.transforms.get("shear")
    assert host.plugins["shear-plugin"].registered == {"transforms": ["shear"]}
    x = _images(size=9)
    # torch's grid_sample with the same inverse map (x' = x − 0.25·y, normalised units)
    axis = torch.linspace(-8 / 9, 8 / 9, 9, dtype=torch.float64)
    py, px = torch.meshgrid(axis, axis, indexing="ij")
    where = torch.stack([px - 0.25 * py, py], -1)[None].expand(2, 9, 9, 2)
    expected = F.grid_sample(x, where, mode="bilinear", padding_mode="zeros",
                             align_corners=False)
    torch.testing.assert_close(shear.apply(x, 0.25), expected, rtol=0, atol=1e-12)
    with pytest.raises(PluginError, match=r"plugin bad.*Transform instances"):
        host.add_plugin(_NotATransformPlugin(), "bad")
