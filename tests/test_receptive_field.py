"""``receptive-field``: theoretical fields against gradient support and hand-computed values,
effective fields against the n-fold convolution of box filters (Luo et al. 2016)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

import probe
from probe.cli import main
from probe.host import get_host
from probe.receptive_field import layer_fields

#: Small options per architecture family (the arithmetic does not depend on width).
SMALL = {
    "lenet": {},
    "reference": {"width": 0.5},
    "alexnet": {"width": 0.05, "fc_width": 8, "input_size": 64},
    "vgg": {"width": 0.05, "fc_width": 8, "input_size": 32},
    "deformable": {"width": 0.05, "fc_width": 8, "input_size": 32},
    "deconvnet": {"width": 0.05, "fc_width": 8, "input_size": 32, "depth": 2},
    "neocognitron": {"planes": (2, 2, 2)},
    "natural_v1": {"filters": 4, "patches": 1000, "iterations": 2},
    # circular: every S2 patch size is valid at every cell; β small: no exp underflow
    "hmax": {"bands": 2, "patch_sizes": (2, 4), "prototypes": 2, "input_size": 32,
             "circular": True, "beta": 1e-3},
}
#: Families built for one input channel (digits).
GREY = {"lenet", "neocognitron", "natural_v1", "hmax"}
ARCHS = sorted(spec.name for spec in get_host().architectures if spec.family in SMALL)
FAMILY = {spec.name: spec.family for spec in get_host().architectures}
SIZE = {spec.name: spec.input_size for spec in get_host().architectures}


class SmoothMaxPool(nn.MaxPool2d):
    """Max pooling's geometry, but the gradient reaches every cell of the window.

    Max pooling routes the gradient to one cell per window, so the input gradient's
    support would be smaller than the field; average pooling of the same kernel,
    stride and padding has the same field and no such routing. The max's indices are
    still returned for unpooling.
    """

    def forward(self, x: torch.Tensor):  # type: ignore[override]
        avg = F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                           count_include_pad=False)
        if self.return_indices:
            _, indices = F.max_pool2d(x, self.kernel_size, self.stride, self.padding,
                                      self.dilation, self.ceil_mode, return_indices=True)
            return avg, indices
        return avg


def _positive(model: nn.Module) -> nn.Module:
    """Weights ~ U(0.5, 1.5)/fan-in and biases 0.1, so nothing cancels and ReLUs pass.

    Also kernels kept as buffers named ``weight`` (the Neocognitron's contrast layer,
    whose difference of Gaussians would cancel on a constant input).
    """
    generator = torch.Generator().manual_seed(0)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.MaxPool2d:
                smooth = SmoothMaxPool(child.kernel_size, child.stride, child.padding,
                                       child.dilation, child.return_indices, child.ceil_mode)
                setattr(module, child_name, smooth)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1:
                fan = param[0].numel()
                param.copy_((0.5 + torch.rand(param.shape, generator=generator)) / fan)
            else:
                param.fill_(0.1 if "bias" in name else 1.0)
        for name, buffer in model.named_buffers():  # a functional convolution's kernel
            if name.rsplit(".", 1)[-1] == "weight" and buffer.dim() > 1:
                fan = buffer[0].numel()
                buffer.copy_((0.5 + torch.rand(buffer.shape, generator=generator)) / fan)
    for module in model.modules():
        if hasattr(module, "reset_offsets"):  # deformable blocks: zero offsets
            module.reset_offsets()
    return model.eval()


def _axis_support(centre: float, size: float, length: int, circular: bool) -> set[int]:
    low = math.ceil(centre - (size - 1) / 2 - 1e-9)
    high = math.floor(centre + (size - 1) / 2 + 1e-9)
    if circular:
        return set(range(length)) if high - low + 1 >= length else \
            {p % length for p in range(low, high + 1)}
    return set(range(max(0, low), min(length - 1, high) + 1))


def _dataset(name: str, size: int):
    channels = 1 if FAMILY[name] in GREY else 3
    if channels == 1:
        return probe.load_dataset("digits", size=2, image_size=size)
    return probe.load_dataset("parts", size=2, image_size=size)


def _gradient_support(model: nn.Module, path: str, size: int, channels: int,
                      cells: list[tuple[int, int]]):
    """Per cell: the rows and columns where ∂ Σ_k y_k(cell) / ∂ x is non-zero (or None)."""
    module = dict(model.named_modules())[path]
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, i, o: seen.append(o[0] if isinstance(o, tuple)
                                                                       else o))
    x = torch.ones((1, channels, size, size), requires_grad=True)
    try:
        model(x)
    finally:
        handle.remove()
    act = seen[-1]
    out = []
    for cell in cells:
        value = act[0, :, cell[0], cell[1]].sum() if act.dim() == 4 else act[0].sum()
        (grad,) = torch.autograd.grad(value, x, retain_graph=True)
        mask = grad[0].abs().sum(0) > 0
        if not bool(mask.any()):
            out.append(None)
            continue
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        full = mask[rows][:, cols].all()  # the support is a rectangle (a product of sets)
        out.append((set(rows.tolist()), set(cols.tolist()), bool(full)))
    return out


class ResidualSum(nn.Module):
    """Two 3×3 convolutions plus the identity, summed outside any module, then a 3×3."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 3, 3, padding=1)
        self.out = nn.Conv2d(3, 2, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.b(self.a(x)) + x)


def _smooth_hmax(monkeypatch: pytest.MonkeyPatch) -> None:
    """HMAX's maxima with their geometry but a gradient to every cell they pool.

    As :class:`SmoothMaxPool` for modules: C1's max over two scales and a grid becomes
    their mean and an average over the grid, C2's global max a global mean.
    """
    from probe.plugins.architectures import hmax

    def c1(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        both = (first + second) / 2
        if self.circular:
            bottom, right = (hmax.pool_geometry(side, self.kernel_size, self.overlap, True)[2]
                             for side in both.shape[-2:])
            both = F.pad(both, (0, right, 0, bottom), mode="circular")
        return F.avg_pool2d(both, self.kernel_size, self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s2 = [out(self.s2(m)) for out, m in zip(self.s2_out, self.c1_maps(x), strict=True)]
        return self.readout(self.c2(torch.stack([m.mean((-2, -1)) for m in s2]).mean(0)))

    monkeypatch.setattr(hmax.C1Band, "forward", c1)
    monkeypatch.setattr(hmax.HMAX, "forward", forward)


@pytest.mark.parametrize("arch", [*ARCHS, "torchvision:resnet18", "residual-sum"])
def test_theoretical_field_is_the_exact_support_of_the_input_gradient(arch, monkeypatch):
    if arch == "hmax":
        _smooth_hmax(monkeypatch)
    options = SMALL.get(FAMILY.get(arch, ""), {})
    model = _positive(ResidualSum() if arch == "residual-sum" else
                      probe.load_model(arch, seed=0, **options))
    size = options.get("input_size", SIZE.get(arch, 32))
    channels = 1 if FAMILY.get(arch) in GREY else 3
    data = _dataset(arch, size) if arch in FAMILY else probe.load_dataset("parts", size=2,
                                                                           image_size=size)
    tables = probe.measure(model, data, [("receptive-field", {"images": 1, "per_unit": False})],
                           batch_size=2, device="cpu")["receptive-field"]
    circular = any(getattr(m, "padding_mode", "zeros") == "circular" for m in model.modules())
    layers = probe.layer_map(model)
    rows = tables["layers"].set_index("layer")
    assert list(rows.index) == list(layers)
    checked = 0
    for layer, path in layers.items():
        row = rows.loc[layer]
        h, w = int(row["map_height"]), int(row["map_width"])
        cells = sorted({(0, 0), (h // 2, w // 2), (h - 1, w - 1)})
        supports = _gradient_support(model, path, size, channels, cells)
        for cell, support in zip(cells, supports, strict=True):
            if support is None:  # unpooled zeros, zeroed offset predictors: no gradient
                continue
            if bool(row["spatial"]):
                cy = row["start_y"] + row["jump_y"] * cell[0]
                cx = row["start_x"] + row["jump_x"] * cell[1]
            else:
                cy, cx = row["centre_y"], row["centre_x"]
            expected = (_axis_support(cy, row["size_y"], size, circular),
                        _axis_support(cx, row["size_x"], size, circular), True)
            assert support == expected, (layer, cell)
            checked += 1
        assert checked, f"{layer}: no cell had a gradient"
    assert checked >= len(layers)


VGG16 = {  # (size, jump): Dumoulin & Visin arithmetic by hand; conv5_3 196/16, pool5 212/32
    "conv1_1": (3, 1), "conv1_2": (5, 1), "pool1": (6, 2), "conv2_1": (10, 2),
    "conv2_2": (14, 2), "pool2": (16, 4), "conv3_1": (24, 4), "conv3_2": (32, 4),
    "conv3_3": (40, 4), "pool3": (44, 8), "conv4_1": (60, 8), "conv4_2": (76, 8),
    "conv4_3": (92, 8), "pool4": (100, 16), "conv5_1": (132, 16), "conv5_2": (164, 16),
    "conv5_3": (196, 16), "pool5": (212, 32),
}
LENET5 = {"c1": (5, 1, 2.0), "s2": (6, 2, 2.5), "c3": (14, 2, 6.5), "s4": (16, 4, 7.5),
          "c5": (32, 4, 15.5)}  # (size, jump, start): 5×5 convs, 2×2 subsampling, 32 px


def _run(tmp_path, capsys, *args):
    out = tmp_path / "run"
    code = main(["run", *args, "--analysis", "receptive-field", "--device", "cpu",
                 "--out", str(out), "--quiet"])
    capsys.readouterr()
    assert code == 0
    return probe.load_run(out).table("receptive-field", "layers").set_index("layer")


def test_lenet5_fields_by_hand_through_probe_run(tmp_path, capsys):
    rows = _run(tmp_path, capsys, "--arch", "lenet5", "--dataset", "digits",
                "--set", "dataset.size=4", "--set", "receptive-field.images=2")
    for layer, (size, jump, start) in LENET5.items():
        assert tuple(rows.loc[layer, ["size_y", "size_x", "jump_y", "jump_x", "start_y",
                                      "start_x"]]) == (size, size, jump, jump, start, start)
    assert bool(rows.loc["c5", "exact"]) and not bool(rows.loc["f6", "spatial"])


def test_vgg16_fields_by_hand_through_probe_run(tmp_path, capsys):
    rows = _run(tmp_path, capsys, "--arch", "vgg16", "--set", "arch.width=0.05",
                "--set", "arch.fc_width=8", "--set", "arch.input_size=32",
                "--dataset", "parts", "--set", "dataset.size=2",
                "--set", "dataset.image_size=32", "--set", "receptive-field.images=1",
                "--set", "receptive-field.per_unit=false")
    for layer, (size, jump) in VGG16.items():
        assert (rows.loc[layer, "size_y"], rows.loc[layer, "jump_x"]) == (size, jump), layer
    # AlexNet conv1 (torchvision: 11×11, stride 4): r = 11, j = 4
    alex = probe.load_model("alexnet", seed=0, width=0.05, fc_width=8, input_size=64)
    fields, _ = layer_fields(
        alex, probe.layer_map(alex), torch.zeros(1, 3, 64, 64))
    assert (fields["conv1"].size, fields["conv1"].jump) == ((11.0, 11.0), (4.0, 4.0))


class BoxStack(nn.Module):
    """``n`` uniform 3×3 convolutions (weights 1/9), one channel, no nonlinearity."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1, bias=False)
                                     for _ in range(n)])
        with torch.no_grad():
            for conv in self.convs:
                conv.weight.fill_(1 / 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


@pytest.mark.parametrize("n", [1, 3, 5])
def test_effective_field_of_uniform_convs_is_the_n_fold_box_convolution(n):
    model = BoxStack(n)
    data = probe.load_dataset("digits", size=6)
    share = 0.9
    tables = probe.measure(model, data, [("receptive-field", {"share": share})], batch_size=3,
                           device="cpu", preprocessing=probe.Preprocessing((0.5,), (0.25,)))
    t = tables["receptive-field"]
    last = f"convs.{n - 1}"
    pixels = t["maps"][t["maps"]["layer"] == last]
    size = int(pixels["y"].max()) + 1
    measured = np.zeros((size, size))
    measured[pixels["y"], pixels["x"]] = pixels["gradient"]
    # ground truth: the box filter convolved with itself n times, centred on pixel size // 2
    kernel = np.ones((1, 1)) / 1.0
    box = np.ones((3, 3)) / 9
    for _ in range(n):
        padded = np.pad(kernel, 2)
        kernel = np.array([[np.sum(padded[i:i + 3, j:j + 3] * box)
                            for j in range(padded.shape[1] - 2)]
                           for i in range(padded.shape[0] - 2)])
    expected = np.zeros((size, size))
    c, half = size // 2, n
    expected[c - half:c + half + 1, c - half:c + half + 1] = kernel
    # the gradient is taken w.r.t. the normalised input: no preprocessing factor
    np.testing.assert_allclose(measured, expected, rtol=1e-5, atol=1e-9)
    # the radius: the smallest square around the centre holding `share` of the mass
    mass = [expected[c - r:c + r + 1, c - r:c + r + 1].sum() for r in range(n + 1)]
    radius = next(r for r in range(n + 1) if mass[r] >= share * expected.sum() - 1e-12)
    layer = t["layers"].set_index("layer").loc[last]
    assert layer["effective_radius"] == radius and layer["size_y"] == 2 * n + 1
    # every unit (one channel) has the layer's field
    units = t["units"][t["units"]["layer"] == last]
    assert units["effective_radius"].tolist() == [radius]
    # √n growth (Luo et al.): the std of the 1-D marginal is √(n·2/3) pixels
    marginal = expected.sum(1)
    offsets = np.arange(size) - c
    std = math.sqrt(float((marginal * offsets ** 2).sum() / marginal.sum()))
    assert std == pytest.approx(math.sqrt(n * 2 / 3), rel=1e-9)


def test_conforms_to_the_analysis_contract():
    from probe.plugins.analyses.receptive_field import ReceptiveField
    from probe.testing import check_analysis

    check_analysis(ReceptiveField, options={"images": 0, "chunk": 4},
                   dataset_options={"size": 8}, batch_size=2, layers=["c1", "s4", "f6"])


def test_views_draw_the_fields(tmp_path, capsys):
    from probe import views
    from probe.plugins.analyses.receptive_field import ReceptiveField
    from probe.plugins.analyses.receptive_field.views import THEORETICAL
    from probe.views import RunView

    out = tmp_path / "run"
    code = main(["run", "--arch", "lenet5", "--dataset", "digits", "--set", "dataset.size=6",
                 "--analysis", "receptive-field", "--analysis", "unit-stats",
                 "--set", "unit-stats.top_k=2", "--device", "cpu", "--out", str(out),
                 "--quiet"])
    capsys.readouterr()
    assert code == 0
    run = RunView(probe.load_run(out))
    blocks = ReceptiveField.unit_views(run, "c3", 0)
    pictures, crops = [b for b in blocks if isinstance(b, views.Pictures)]
    top = run.unit_rows("unit-stats", "top_images", "c3", 0).sort_values("rank")
    from probe.views.images import thumbnail, to_rgb

    for crop, (_, row) in zip(crops.items, top.iterrows(), strict=True):
        # the crop is the peak cell's 14×14 field, rows/cols [2i, 2i + 14), grey past 32 px
        i, j = np.unravel_index(int(np.argmax(row["map"])), (10, 10))
        digit = to_rgb(run.image(int(row["image"])))
        field = np.full((14, 14, 3), 128, dtype=np.uint8)
        seen = digit[2 * i:2 * i + 14, 2 * j:2 * j + 14]
        field[:seen.shape[0], :seen.shape[1]] = seen
        got = np.asarray(Image.open(io.BytesIO(crop.png)).convert("RGB"))
        np.testing.assert_array_equal(got, thumbnail(field, 96))
    assert len(pictures.items) == len(top) == 2
    for picture, (_, row) in zip(pictures.items, top.iterrows(), strict=True):
        # the peak cell from the stored 10×10 map (not downsampled), its field by hand:
        # c3 has size 14, jump 2, start 6.5 → rows/cols [6.5 + 2i − 6.5, 6.5 + 2i + 6.5]
        i, j = np.unravel_index(int(np.argmax(row["map"])), (10, 10))
        rgb = np.asarray(Image.open(io.BytesIO(picture.png)).convert("RGB"))
        factor = rgb.shape[0] // 32  # 32 px digits drawn at 128 px
        top_px, left_px = 2 * i * factor, 2 * j * factor
        bottom_px = min(32, 2 * i + 14) * factor - 1
        assert tuple(rgb[top_px, left_px + factor]) == THEORETICAL
        assert tuple(rgb[bottom_px, left_px + factor]) == THEORETICAL
        assert tuple(rgb[(top_px + bottom_px) // 2, left_px]) == THEORETICAL
    layer_blocks = ReceptiveField.layer_views(run, "c3")
    assert any(isinstance(b, views.Figure) for b in layer_blocks)
    (section,) = ReceptiveField.report_sections(run)
    assert [type(b) for b in section.blocks] == [views.Figure, views.Table]


def test_bad_option_is_one_line(capsys, tmp_path):
    code = main(["run", "--arch", "lenet5", "--dataset", "digits", "--analysis",
                 "receptive-field", "--set", "receptive-field.share=2", "--out",
                 str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "share" in err[0]
