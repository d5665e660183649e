"""``attribution``: Captum's methods against the analytic weight product of a linear network,
integrated gradients' completeness, and the exemplars against ``unit-stats``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import probe
from probe.cli import main

METHODS = ("deconvnet", "guided-backprop", "gradient", "integrated-gradients")


def _linear_net() -> nn.Module:
    """Two convolutions with no nonlinearity (1 → 3 → 2 channels, 3×3, no padding)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.Conv2d(3, 2, 3)).eval()


def _composite(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``[K2, C, 5, 5]``: the product of two valid 3×3 cross-correlations, by the index sums.

    y1[j](p) = Σ_c,u W1[j,c,u] x[c,p+u] and y2[k](q) = Σ_j,v W2[k,j,v] y1[j](q+v), so
    ∂ y2[k](q) / ∂ x[c, q + w] = Σ_j Σ_{u+v=w} W2[k,j,v] W1[j,c,u].
    """
    k2, j1 = second.shape[:2]
    channels = first.shape[1]
    out = np.zeros((k2, channels, 5, 5))
    for k in range(k2):
        for j in range(j1):
            for c in range(channels):
                for vy in range(3):
                    for vx in range(3):
                        out[k, c, vy:vy + 3, vx:vx + 3] += second[k, j, vy, vx] * first[j, c]
    return out


def test_linear_network_attributions_are_the_weight_product_and_ig_is_complete():
    model = _linear_net()
    data = probe.load_dataset("digits", size=6)
    tables = probe.measure(model, data, [("attribution", {"methods": METHODS, "top_k": 2,
                                                          "steps": 8, "batch": 5})],
                           batch_size=3, device="cpu")
    heat = tables["attribution"]["heatmaps"]
    w1 = model[0].weight.detach().double().numpy()
    kernels = {"0": w1, "1": _composite(w1, model[1].weight.detach().double().numpy())}
    assert set(heat["method"]) == set(METHODS)
    assert len(heat) == (3 + 2) * 2 * len(METHODS)  # units × top_k × methods
    for _, row in heat.iterrows():
        kernel = kernels[row["layer"]][int(row["unit"])].sum(0)  # one input channel
        side = kernel.shape[0]
        gradient = np.zeros((32, 32))
        y, x = int(row["cell_y"]), int(row["cell_x"])
        gradient[y:y + side, x:x + side] = kernel
        measured = np.asarray(row["map"], dtype=np.float64).reshape(32, 32)
        if row["method"] == "integrated-gradients":
            # a linear unit: IG = (x − baseline) ⊙ gradient exactly, baseline black (0)
            image = data[int(row["image"])]["image"][0].double().numpy()
            np.testing.assert_allclose(measured, image * gradient, rtol=1e-4, atol=1e-6)
            change = row["f_input"] - row["f_baseline"]
            assert abs(row["total"] - change) <= 1e-4 * abs(change)
        else:  # no ReLU: deconvnet and guided backprop are the gradient
            np.testing.assert_allclose(measured, gradient, rtol=1e-5, atol=1e-6)


def _correlate(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[K, h, w]``: a valid cross-correlation of ``x [C, H, W]`` with ``w [K, C, s, s]``."""
    windows = np.lib.stride_tricks.sliding_window_view(x, w.shape[-2:], axis=(1, 2))
    return np.einsum("chwuv,kcuv->khw", windows, w) + b[:, None, None]


@pytest.mark.parametrize("where", ["own", "previous"])
def test_grad_cam_is_the_rectified_gradient_weighted_maps_by_hand(where):
    """Linear up to the unit: α_c = spatial mean of ∂y/∂A_c is known in closed form.

    ``own``: A is the unit's layer, y its cell, so α is one-hot (1 / (h·w) at the unit)
    and the map is ReLU(A_unit) / (h·w). ``previous``: A is the first convolution's
    output and y a cell of the second, so ∂y/∂A_c is W2[unit, c] placed at the cell and
    α_c = ΣW2[unit, c] / (h·w). Both upsampled bilinearly to 32 × 32 as Captum does.
    """
    model = _linear_net()
    data = probe.load_dataset("digits", size=6)
    heat = probe.measure(model, data, [("attribution", {
        "methods": ("grad-cam",), "top_k": 2, "batch": 3, "gradcam_layer": where})],
        batch_size=3, device="cpu")["attribution"]["heatmaps"]
    w1, b1 = (t.detach().double().numpy() for t in (model[0].weight, model[0].bias))
    w2, b2 = (t.detach().double().numpy() for t in (model[1].weight, model[1].bias))
    assert len(heat) == (3 + 2) * 2 and set(heat["method"]) == {"grad-cam"}
    positive = 0
    for _, row in heat.iterrows():
        unit = int(row["unit"])
        a1 = _correlate(data[int(row["image"])]["image"].double().numpy(), w1, b1)  # [3, 30, 30]
        if row["layer"] == "0":  # the first layer: its own maps in both modes
            cam = np.maximum(a1[unit], 0) / a1[unit].size
        elif where == "own":
            a2 = _correlate(a1, w2, b2)[unit]  # [28, 28]
            cam = np.maximum(a2, 0) / a2.size
        else:
            alpha = w2[unit].sum(axis=(1, 2)) / a1[0].size  # [3]
            cam = np.maximum(np.einsum("c,chw->hw", alpha, a1), 0)
        expected = torch.nn.functional.interpolate(torch.from_numpy(cam)[None, None], (32, 32),
                                                   mode="bilinear")[0, 0].numpy()
        measured = np.asarray(row["map"], dtype=np.float64).reshape(32, 32)
        # within 1e-5 of the map's own scale (Grad-CAM's maps are ~1e-4 here: α has 1/(h·w))
        np.testing.assert_allclose(measured, expected, rtol=0,
                                   atol=1e-5 * max(expected.max(), 1e-9))
        positive += cam.max() > 0
    assert positive >= len(heat) // 2  # most maps are not the trivial all-zero one


def test_integrated_gradients_completeness_on_lenet():
    tables = probe.measure("lenet5", "digits", [("attribution", {
        "methods": ("integrated-gradients",), "top_k": 2, "steps": 16})],
        dataset_options={"size": 8}, batch_size=4, device="cpu", layers=["c3", "f6"])
    heat = tables["attribution"]["heatmaps"]
    change = heat["f_input"] - heat["f_baseline"]
    relative = (heat["total"] - change).abs() / change.abs()
    # tanh network, 16 Gauss-Legendre points: measured max ≈ 6e-5
    assert relative.max() < 1e-3


def test_relu_modification_differs_from_the_gradient_and_no_hook_is_left():
    model = probe.load_model("lenet5", seed=0, activation="relu")
    data = probe.load_dataset("digits", size=6)
    heat = probe.measure(model, data, [("attribution", {
        "methods": ("gradient", "guided-backprop", "deconvnet"), "top_k": 1})],
        batch_size=3, device="cpu", layers=["c5"])["attribution"]["heatmaps"]
    maps = {m: np.stack(heat[heat["method"] == m].sort_values("unit")["map"].to_list())
            for m in ("gradient", "guided-backprop", "deconvnet")}
    # guided backprop keeps only positive gradients through every ReLU; deconvnet ignores
    # the forward mask: both differ from the gradient on a ReLU network
    assert not np.allclose(maps["gradient"], maps["guided-backprop"])
    assert not np.allclose(maps["gradient"], maps["deconvnet"])
    hooks = [m for m in model.modules() if m._forward_hooks or m._backward_hooks
             or getattr(m, "_forward_pre_hooks", None)]
    assert hooks == []


def test_in_place_activations_work_and_are_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.Conv2d(2, 2, 3),
                          nn.ReLU(inplace=True)).eval()
    data = probe.load_dataset("digits", size=4)
    heat = probe.measure(model, data, [("attribution", {"methods": ("guided-backprop",),
                                                        "top_k": 1})],
                         batch_size=2, device="cpu", layers=["2"])["attribution"]["heatmaps"]
    assert len(heat) == 2 and all(np.abs(m).sum() > 0 for m in heat["map"])
    assert [m.inplace for m in model if isinstance(m, nn.ReLU)] == [True, True]


def test_exemplars_are_unit_stats_top_images_through_probe_run(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--arch", "lenet5", "--dataset", "digits", "--set", "dataset.size=12",
                 "--layers", "c1,c3", "--analysis", "unit-stats", "--analysis", "attribution",
                 "--set", "attribution.top_k=3", "--set", "attribution.steps=4",
                 "--set", "attribution.methods=deconvnet,guided-backprop,"
                 "integrated-gradients,grad-cam", "--set", "attribution.gradcam_layer=previous",
                 "--device", "cpu", "--out", str(out), "--quiet"])
    capsys.readouterr()
    assert code == 0
    run = probe.load_run(out)
    heat = run.table("attribution", "heatmaps")
    top = run.table("unit-stats", "top_images")
    keys = ["layer", "unit", "rank", "image"]
    ours = heat[heat["method"] == "deconvnet"][keys].sort_values(keys).reset_index(drop=True)
    theirs = top[top["rank"] < 3][keys].sort_values(keys).reset_index(drop=True)
    pd_equal = ours.astype(str).equals(theirs.astype(str))
    assert pd_equal and len(ours) == (6 + 16) * 3
    # the views: the methods to choose from on the unit page, a row of pictures each;
    # linked units on the layer page
    from probe import views
    from probe.dashboards.render import render
    from probe.plugins.analyses.attribution import Attribution
    from probe.report.render import render as render_html
    from probe.views import RunView

    view = RunView(run)
    (choice,) = Attribution.unit_views(view, "c3", 2)
    assert isinstance(choice, views.Choice) and choice.label == "method"
    assert [label for label, _ in choice.options] == [
        "Deconvnet", "Guided backprop", "Integrated gradients", "Grad-CAM"]
    assert [[len(b.items) for b in inner] for _, inner in choice.options] == [[3]] * 4
    assert choice.options[-1][1][0].name == "attribution-grad-cam"
    # the dashboard: one tab per method, the first open, each holding its pictures
    tabs = render(choice, "unit").children[-1]
    assert type(tabs).__name__ == "Tabs" and tabs.value == tabs.children[0].value
    assert [t.label for t in tabs.children] == [label for label, _ in choice.options]
    assert all(len(t.children) == 1 for t in tabs.children)
    # the report: every method in turn under its name
    html = render_html(choice)
    assert [html.count(f"<h5>method: {label}</h5>") for label, _ in choice.options] == [1] * 4
    assert html.count("<img") == 12
    cam = heat[heat["method"] == "grad-cam"]
    assert len(cam) == len(ours) and all(np.min(m) >= 0 for m in cam["map"])
    (grid,) = Attribution.layer_views(view, "c1")
    assert isinstance(grid, views.Pictures) and len(grid.items) == 6


def test_conforms_to_the_analysis_contract():
    from probe.plugins.analyses.attribution import Attribution
    from probe.testing import check_analysis

    check_analysis(Attribution, options={"top_k": 2, "steps": 2},
                   dataset_options={"size": 8}, batch_size=2, layers=["c1", "f6"])


@pytest.mark.parametrize("value", ["bogus", ""])
def test_unknown_method_is_one_line(capsys, tmp_path, value):
    code = main(["run", "--arch", "lenet5", "--dataset", "digits", "--analysis",
                 "attribution", "--set", f"attribution.methods={value}", "--out",
                 str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "attribution.methods" in err[0], err
