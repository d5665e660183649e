"""probe.views.plots: figures built from plain specs (no validation) are what plotly's
validated graph objects make of them, for every figure the built-in views draw."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pytest
from plotly.subplots import make_subplots
from plotly.utils import PlotlyJSONEncoder

from probe.dashboards.render import plain_figure
from probe.sample_runs import synthetic_tables, write_tables_run
from probe.store import load_run
from probe.views import Figure, RunView, Section
from probe.views.contributions import call_hook
from probe.views.plots import (
    axes,
    cell,
    colorscale,
    empty_figure,
    figure,
    hline,
    subplots,
    vline,
)

LAYERS = {"c1": 6, "c2": 4, "c3": 3}


def as_json(fig: Any) -> Any:
    """A figure (or its dict) as plain JSON values, keys in any order."""
    spec = fig if isinstance(fig, dict) else fig.to_plotly_json()
    return json.loads(json.dumps(spec, cls=PlotlyJSONEncoder))


def validated(fig: Any) -> Any:
    """``fig`` rebuilt with plotly's validation (raises on any property plotly.js lacks)."""
    return go.Figure(fig if isinstance(fig, dict) else fig.to_plotly_json())


def test_figure_is_a_plotly_figure_without_validation() -> None:
    fig = figure([{"type": "bar", "x": ["a", "b"], "y": np.array([1.0, 2.0]),
                   "marker": {"color": "#123456"}}],
                 {"title": {"text": "t"}, "height": 300})
    assert isinstance(fig, go.Figure)
    assert fig.layout.title.text == "t" and list(fig.data[0].x) == ["a", "b"]
    assert fig.layout.template.layout.colorway  # the default template, as go.Figure adds it
    assert as_json(fig) == as_json(validated(fig))


def test_subplot_helpers_match_make_subplots_and_lines() -> None:
    titles = ("left", "right")
    want = make_subplots(rows=1, cols=2, subplot_titles=titles, shared_yaxes=True)
    want.add_trace(go.Scatter(x=[1], y=[2]), row=1, col=1)
    want.add_trace(go.Scatter(x=[1], y=[3]), row=1, col=2)
    want.update_xaxes(range=[0, 1])
    want.add_hline(y=0.5, line_dash="dash", line_color="#d62728", annotation_text="h")  # each
    layout = subplots(1, 2, subplot_titles=titles, shared_yaxes=True)
    for axis in axes(layout, "x"):
        layout[axis]["range"] = [0, 1]
    lines = [hline(0.5, "h", "#d62728", xref=x, yref=y) for x, y in (("x", "y"), ("x2", "y2"))]
    layout.update(shapes=[shape for shape, _ in lines],
                  annotations=[*layout["annotations"], *(note for _, note in lines)])
    got = figure([{"type": "scatter", "x": [1], "y": [2], **cell(1, 1, 2)},
                  {"type": "scatter", "x": [1], "y": [3], **cell(1, 2, 2)}], layout)
    assert as_json(got) == as_json(want)
    assert subplots(1, 2, subplot_titles=titles, shared_yaxes=True) is not layout  # a copy
    assert cell(2, 1, 3) == {"xaxis": "x4", "yaxis": "y4"}

    for bottom in (False, True):
        want = go.Figure(go.Bar(x=[0.1], y=["a"], orientation="h"))
        want.add_vline(x=0.04, line_dash="dot", line_color="#d62728", annotation_text="v",
                       annotation_position="bottom right" if bottom else "top right")
        shape, note = vline(0.04, "v", "dot", "#d62728", bottom=bottom)
        got = figure([{"type": "bar", "x": [0.1], "y": ["a"], "orientation": "h"}],
                     {"shapes": [shape], "annotations": [note]})
        assert as_json(got) == as_json(want)
    assert colorscale("RdBu_r") == as_json(go.Heatmap(colorscale="RdBu_r"))["colorscale"]


def test_empty_and_timings_figures_are_valid() -> None:
    from probe.dashboards.run_figures import make_timings_figure

    manifests = {"a": {"timings": {"analyses": {"unit-stats": 1.5, "dissection": 2.0}}},
                 "b": {"timings": {"analyses": {"unit-stats": 1.0}}}}
    for fig in (empty_figure("nothing here", "t"), empty_figure("nothing"),
                make_timings_figure(manifests), make_timings_figure({"a": {}})):
        assert as_json(fig) == as_json(validated(fig))
    assert list(make_timings_figure(manifests).data[1].y) == [2.0, 0.0]  # b: no dissection
    assert empty_figure("nothing here").layout.annotations[0].text == "nothing here"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[RunView]:
    root: Path = tmp_path_factory.mktemp("plots")
    dataset = {"name": "digits", "options": {"split": "test"}, "size": 16}
    out = []
    for seed, name in ((0, "a"), (1, "b")):
        tables = synthetic_tables(LAYERS, images=16, seed=seed)
        write_tables_run(root / name, tables, list(LAYERS), dataset=dataset)
        out.append(RunView(load_run(root / name)))
    return out


def figures(blocks: Any) -> list[Any]:
    out = []
    for block in blocks or []:
        if isinstance(block, Section):
            out += figures(block.blocks)
        elif isinstance(block, Figure):
            out.append(block.figure)
    return out


def test_every_builtin_figure_is_valid_and_unchanged_by_validation(runs: list[RunView]) -> None:
    run = runs[0]
    analyses = run.completed()
    assert {"unit-stats", "dissection", "filters", "equivariance"} <= set(analyses)
    drawn: dict[str, int] = {}
    for name in analyses:
        calls = [("run_views", (run,)), ("compare_figures", (runs,)),
                 *[("layer_views", (run, layer)) for layer in LAYERS],
                 *[("unit_views", (run, layer, 1)) for layer in LAYERS]]
        for hook, args in calls:
            item = call_hook(name, hook, *args)
            assert item.problem is None, item.problem
            for fig in figures(item.value):
                checked = validated(fig)  # raises on a property plotly does not know
                assert as_json(fig) == as_json(checked), (name, hook)
                assert as_json(plain_figure(fig)) == as_json(plain_figure(checked)), (name, hook)
                drawn[name] = drawn.get(name, 0) + 1
    assert all(drawn.get(name) for name in ("unit-stats", "dissection", "filters",
                                            "equivariance")), drawn
