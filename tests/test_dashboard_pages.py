"""Page layouts and callbacks, called as plain functions on real and hand-made runs.

Every page is built from the analyses' view hooks; these tests check that the
numbers on the pages are the tables' numbers, and that a third-party analysis
and a broken one are shown like any other.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from dash import html
from dash_client import (
    components,
    filled,
    grid_rows,
    ids,
    router_body,
    slot_body,
    slot_components,
)

from probe import Analysis, hookimpl
from probe.dashboard_api import PageSpec
from probe.dashboards.data import clear_caches, get_source
from probe.host import get_host, reset_host
from probe.sample_runs import make_sample_runs, synthetic_tables, write_tables_run

DIGITS = {"name": "digits", "options": {"size": 16}, "size": 16}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real unit-stats-only run pair plus a hand-made run with every analysis."""
    root = tmp_path_factory.mktemp("dash-pages")
    make_sample_runs(root, size=32)
    write_tables_run(root / "full", synthetic_tables({"c1": 4, "c2": 2}, images=16),
                     ["c1", "c2"], dataset=DIGITS, failed={"broken": "RuntimeError: boom"})
    return root


@pytest.fixture
def app(runs: Path):
    from probe.dashboards import create_app

    clear_caches()
    return create_app(runs)


def _tables(runs: Path, analysis: str, table: str) -> pd.DataFrame:
    return pd.read_parquet(runs / "full" / analysis / f"{table}.parquet")


def _section(page: object, ident: str) -> html.Section:
    return next(c for c in components(page) if getattr(c, "id", None) == ident)


def test_runs_page_lists_every_run(app, runs: Path) -> None:
    from probe.dashboards.pages import runs as page

    rows = {r["run"]: r for r in grid_rows(page.layout(), "runs-table")}
    assert sorted(rows) == ["full", "lenet5-a", "lenet5-b"]
    assert rows["lenet5-a"]["architecture"] == "lenet5"
    assert rows["lenet5-a"]["data"] == "digits (32 images)"
    assert rows["full"]["analyses"].endswith("broken [failed]")
    assert rows["full"]["status"] == "partial"
    assert rows["full"]["layers page"] == "[layers](/layers?run=full)"


def test_units_cards_follow_the_score_the_flag_and_the_page(app, runs: Path) -> None:
    from probe.dashboards.pages import units

    assert units.layer_choices("full", None) == (["c1", "c2"], "c1")
    assert units.layer_choices("full", "c2") == (["c1", "c2"], "c2")
    options, value, flag = units.sort_choices("full", "c1", None)
    assert value == "iou"  # the analysis that names the units sorts them
    assert {"value": "max", "label": "max activation"} in options
    assert flag == [{"label": " detector only", "value": "flagged"}]
    truth = _tables(runs, "dissection", "units").query("layer == 'c1'")
    cards, count = units.units_content("full", "c1", [], "iou", 0)
    order = list(truth.sort_values("iou", ascending=False, kind="stable")["unit"])
    assert [c.children.id for c in cards] == [f"unit-card-{u}" for u in order]
    assert count.startswith("4 units of 4 in c1")
    muted = [c.children.id for c in cards if "muted" in c.children.className]
    assert muted == [f"unit-card-{u}" for u in order if not truth.set_index("unit")
                     .loc[u, "is_detector"]]
    thumbs = [next(x for x in components(c) if getattr(x, "className", "") == "thumb")
              for c in cards]
    pictures = units.card_thumbnails([t.id for t in thumbs])  # one request for the page
    exemplars = _tables(runs, "dissection", "exemplars").query("layer == 'c1' and rank == 0")
    assert len(pictures) == len(order) == len(exemplars)
    assert all(p.startswith("data:image/png;base64,") for p in pictures)
    assert len(set(pictures)) > 1  # each unit's own top exemplar
    cards, count = units.units_content("full", "c1", ["flagged"], "iou", 0)
    assert len(cards) == int(truth["is_detector"].sum())
    assert count.startswith(f"{int(truth['is_detector'].sum())} detector units of 4 in c1")
    # the grid's rows come from the server, sorted and filtered there, block by block
    request = {"startRow": 0, "endRow": 100, "sortModel": [{"colId": "iou", "sort": "desc"}],
               "filterModel": {}}
    answer = units.units_rows(request, "full", "c1", [])
    rows = answer["rowData"]
    assert answer["rowCount"] == 4
    assert [r["unit"] for r in rows] == [f"[{u}](/unit/full/c1/{u})" for u in order]
    names = dict(zip(truth["unit"], truth["name"], strict=True))
    assert [r["name"] for r in rows] == [names[u] for u in order]
    assert [r["_muted"] for r in rows] == [not truth.set_index("unit").loc[u, "is_detector"]
                                           for u in order]
    cut = float(truth["iou"].median())
    request["filterModel"] = {"iou": {"filterType": "number", "type": "greaterThan",
                                      "filter": cut}}
    request["sortModel"] = [{"colId": "unit", "sort": "asc"}]  # the unit number, not its link
    answer = units.units_rows(request, "full", "c1", [])
    above = sorted(truth[truth["iou"] > cut]["unit"])
    assert answer["rowCount"] == len(above)
    assert [r["unit"] for r in answer["rowData"]] == [f"[{u}](/unit/full/c1/{u})" for u in above]
    assert units.units_rows({"startRow": 2, "endRow": 3}, "full", "c1", [])["rowCount"] == 4
    assert len(units.units_rows({"startRow": 2, "endRow": 3}, "full", "c1", [])["rowData"]) == 1
    notice, _ = units.units_content("full", "c9", [], None, 0)
    assert "has no layer 'c9'" in str(notice)


def test_grids_show_numbers_in_their_declared_formats(app, runs: Path) -> None:
    """IoU is declared ``fixed3``: the grid shows 0.006, not 0.005786 (both grids)."""
    from probe.dashboards.pages import units
    from probe.dashboards.render import grid
    from probe.views import Table
    from probe.views.format import format_value

    truth = _tables(runs, "dissection", "units").query("layer == 'c1'").set_index("unit")
    table = units.units_table("full", "c1", [])
    defs = {d["field"]: d for d in next(c for c in components(table)
                                        if getattr(c, "columnDefs", None)).columnDefs}
    assert "toFixed(3)" in defs["iou"]["valueFormatter"]["function"]
    rows = units.units_rows({"startRow": 0, "endRow": 10}, "full", "c1", [])["rowData"]
    for row in rows:
        unit = int(row["unit"].split("]")[0][1:])
        raw = float(truth.loc[unit, "iou"])
        assert row["iou"] == round(raw, 3)  # a number, sorted and filtered as one
        assert f"{row['iou']:.3f}" == format_value(raw, "fixed3")  # the text the grid writes

    frame = pd.DataFrame({"name": ["a", "b"], "iou": [0.005786, 0.5],
                          "share": [0.12345, 0.5], "t": [1.23456, 2.0]})
    block = Table(frame, name="formats", formats={"iou": "fixed3", "share": "percent",
                                                  "t": "fixed2"})
    ag = next(c for c in components(grid(block, "formats")) if getattr(c, "rowData", None))
    assert [r["iou"] for r in ag.rowData] == [0.006, 0.5]
    assert [r["share"] for r in ag.rowData] == [12.3, 50.0]
    assert [r["t"] for r in ag.rowData] == [1.23, 2.0]
    defs = {d["field"]: d for d in ag.columnDefs}
    assert "toFixed(3)" in defs["iou"]["valueFormatter"]["function"]
    assert "toFixed(2)" in defs["t"]["valueFormatter"]["function"]
    assert "valueFormatter" not in defs["share"] and defs["share"]["headerName"].endswith("(%)")
    # a numeric column is wide enough for its longest rounded cell: "-0.008451" is 9
    # characters, 8 px each + 44 px of padding and icon (it was cut to "-0.008…" at 90 px)
    wide = Table(pd.DataFrame({"d": [-0.00845123, 0.1], "n": [1, 2]}), name="widths")
    ag = next(c for c in components(grid(wide, "widths")) if getattr(c, "rowData", None))
    defs = {d["field"]: d for d in ag.columnDefs}
    assert [r["d"] for r in ag.rowData] == [-0.008451, 0.1]
    assert defs["d"]["minWidth"] == 8 * 9 + 44 and defs["n"]["minWidth"] == 90
    # a long column is measured on a sample plus its extremes: the one tiny (widest)
    # number among 5,000 short ones still sets the width
    from probe.dashboards.render import number_width

    assert number_width([1.5] * 4000 + [-0.0001234] + [2.25] * 999) == 8 * 10 + 44
    assert number_width([123456.0] + [1.5] * 4999) == 8 * 8 + 44


def test_grid_rows_are_each_record_converted_cell_by_cell() -> None:
    """Rows built column by column are the cells of each record converted one by one
    (floats rounded in their format, numpy and missing values, links, muted rows)."""
    from probe.dashboards.render import _cell
    from probe.dashboards.render import grid_rows as rows_of
    from probe.views import Table
    from probe.views.format import format_value, grid_number

    frame = pd.DataFrame({
        "unit": np.array([3, 1, 2], dtype=np.int64), "name": ["a", None, "c"],
        "iou": np.array([0.005786, np.nan, 0.5], dtype=np.float32),
        "share": [0.25, np.inf, 0.0], "flag": [True, False, True],
        "count": pd.array([1, None, 3], dtype="Int64"),
        "mixed": pd.Series([np.float32(0.123456), "x", 7], dtype=object),
        "href": ["/unit/r/c1/3", "", "/unit/r/c1/2"], "grey": [False, True, False]})
    block = Table(frame, name="t", formats={"iou": "fixed3", "share": "percent"},
                  links={"unit": "href"}, muted="grey")
    columns = ["unit", "name", "iou", "share", "flag", "count", "mixed"]
    want = []
    for record in frame.to_dict("records"):
        row = {}
        for column in columns:
            raw = record.get(column)
            value = grid_number(raw, block.formats.get(column, "")) \
                if isinstance(raw, float | np.floating) else _cell(raw)
            if column in block.links and record.get(block.links[column]):
                value = f"[{format_value(raw)}]({record[block.links[column]]})"
            row[column] = value
        row["_muted"] = bool(record.get("grey"))
        want.append(row)
    got = rows_of(block, frame, columns)
    assert json.dumps(got) == json.dumps(want)
    assert got[0]["unit"] == "[3](/unit/r/c1/3)" and got[1]["unit"] == 1  # no link: a number
    assert got[0]["iou"] == 0.006 and got[1]["iou"] is None and got[1]["share"] is None
    assert [r["_muted"] for r in got] == [False, True, False]
    assert rows_of(block, frame, []) == [{"_muted": False}, {"_muted": True}, {"_muted": False}]


def test_plain_figure_is_what_plotly_sends() -> None:
    """The dashboard's own conversion of a figure (no deep copy) is plotly's JSON, and moving
    the legend of that JSON form is moving the figure's."""
    from plotly.subplots import make_subplots
    from plotly.utils import PlotlyJSONEncoder

    from probe.dashboards.render import plain_figure
    from probe.views.plots import legend_below

    fig = make_subplots(rows=1, cols=2, subplot_titles=("a", "b"))
    fig.add_bar(x=np.arange(5), y=np.linspace(0, 1, 5), row=1, col=1, name="bars")
    fig.add_scatter(x=np.array([1, 2, 3], dtype=np.int64) * 10**6,
                    y=np.array([1.5, 2, 3], dtype=np.float32), row=1, col=2, name="big")
    fig.add_heatmap(z=np.arange(12).reshape(3, 4), row=1, col=2, showscale=False)
    for i in range(8):
        fig.add_scatter(x=[i, i + 1], y=[0.5, i], name=f"t{i}", showlegend=i != 3)
    fig.update_layout(xaxis_range=[0, 5], height=300, margin={"t": 30})

    def text(figure: object) -> str:
        return json.dumps(figure, cls=PlotlyJSONEncoder)

    plain = plain_figure(fig)
    assert text(plain) == text(fig.to_plotly_json())
    assert plain_figure(plain) is plain
    moved = legend_below(plain)
    assert moved is not plain and text(plain) == text(fig.to_plotly_json())  # left as it was
    assert text(moved) == text(legend_below(fig).to_plotly_json())
    assert moved["layout"]["height"] == 300 + 24 * 3


def test_unit_page_has_a_section_per_analysis(app, runs: Path) -> None:
    from probe.dashboards.pages import unit

    page = filled(unit.layout(run="full", layer="c1", unit="1"))
    found = ids(page)
    for analysis in ("unit-stats", "dissection", "filters", "equivariance"):
        section = _section(page, f"unit-{analysis}")
        assert section.children[0].children == f"{analysis} · c1 · unit 1"
    masks = [i for i in found if i.startswith("unit-dissection-") and i[-2] == "-"
             and "exemplars" in i]
    assert len(masks) == 4  # top_k masks
    best = _tables(runs, "dissection", "units").query("layer == 'c1' and unit == 1").iloc[0]
    text = str(_section(page, "unit-dissection"))
    assert str(best["name"]) in text and f"{best['iou']:.4g}"[:5] in text
    links = grid_rows(page, "unit-dissection-3-dissection-links")
    assert links and "(/unit/full/c2/0)" in json.dumps(links)  # part → object link
    assert "unit-prev" in found and "unit-next" in found
    plain = unit.layout(run="lenet5-a", layer="c1", unit="0")
    hints = str(_section(plain, "unit-suggestions"))
    # the run's own command with the analysis added, and only what digits can feed
    assert "filters" in hints and "equivariance" in hints and "dissection" not in hints
    for bad, message in ((("full", "c1", "4"), "has 4 units"), (("full", "c1", "-1"),
                                                                "non-negative integer"),
                         (("full", "../c1", "0"), "has no layer"),
                         (("../full", "c1", "0"), "name must be")):
        assert message in str(unit.layout(run=bad[0], layer=bad[1], unit=bad[2]))


def test_unit_exemplars_of_a_real_run_use_its_images(app) -> None:
    import re

    from probe.dashboards.pages import unit

    page = filled(unit.layout(run="lenet5-a", layer="c3", unit="5"))
    section = str(_section(page, "unit-unit-stats"))
    images = re.findall(r"src='(data:image/png;base64,[^']+)'", section)
    assert len(images) == 8
    assert len(set(images)) > 1  # different digits, not one placeholder
    assert section.count("class ") >= 8


def test_layers_summary_and_compare_are_the_tables_numbers(app, runs: Path) -> None:
    from probe.dashboards.pages import compare, layers

    content = filled(layers.layers_content("full"))
    summary = {r["layer"]: r for r in grid_rows(content, "layers-summary")}
    dissection = _tables(runs, "dissection", "units")
    c1 = dissection[dissection.layer == "c1"]
    assert summary["c1"]["detectors"] == int(c1.is_detector.sum())
    assert summary["c1"]["unique_concepts"] == c1[c1.is_detector]["label"].nunique()
    assert summary["c1"]["units page"] == "[units](/units?run=full&layer=c1)"
    # synthetic errors are (layer index + 1) · magnitude / 10 at magnitudes 1 and 2
    assert summary["c2"]["equivariance_shift"] == pytest.approx((0.2 + 0.4) / 2)
    for analysis in ("unit-stats", "dissection", "filters", "equivariance"):
        assert f"layers-{analysis}" in ids(content)
    detail = filled(layers.layer_detail("full", "c2"))
    assert ids(detail)[0] == "layer-detail-title"
    for analysis in ("unit-stats", "dissection", "filters", "equivariance"):
        assert _section(detail, f"layer-{analysis}-c2").children[0].children == \
            f"{analysis} · c2"

    out = filled(compare.compare_content("full", "lenet5-a"))
    rows = grid_rows(out, "compare-table")
    # different layers: each of full's layers matched to lenet5-a's at the nearest depth
    assert [(r["layer_a"], r["layer_b"]) for r in rows] == [("c1", "c1"), ("c2", "c5")]
    assert rows[0]["unit_stats_units [A]"] == 4 and rows[0]["unit_stats_units [B]"] == 6
    assert rows[1]["unit_stats_units [B−A]"] == 120 - 2
    assert "compare-unit-stats" in ids(out)
    assert "Not compared (in one run only): dissection, equivariance, filters" in str(out)
    same = compare.compare_content("lenet5-a", "lenet5-a")
    runs_rows = grid_rows(same, "compare-runs")
    assert [r["run"] for r in runs_rows] == ["lenet5-a (A)", "lenet5-a (B)"]


class ToyCount(Analysis):
    """A third-party analysis the dashboard has never heard of."""

    name = "toy-count"
    tables = {"counts": ("layer", "unit", "n", "share")}

    def accumulator(self, context):  # pragma: no cover - never run here
        raise NotImplementedError

    @classmethod
    def figures(cls, tables):
        frame = tables["counts"]
        return [go.Figure(go.Bar(x=frame["unit"], y=frame["n"], name="toy"))]


def _toy_view(run, layer=None, unit=None):
    frame = run.table("toy-count", "counts")
    if unit is not None:
        frame = frame[frame.unit == unit]
    return html.Pre(f"toy n={int(frame['n'].sum())}", id="toy-text")


def _broken_view(run, **_):
    raise RuntimeError("plugin bug")


class ToyPlugin:
    @hookimpl
    def probe_register_analyses(self, register):
        register(ToyCount)

    @hookimpl
    def probe_register_dashboard_pages(self, register):
        register(PageSpec("toy", "Toy counts", _toy_view, analyses=("toy-count",)))
        register(PageSpec("toy-unit", "Toy unit panel", _toy_view, placement="unit",
                          analyses=("toy-count",)))
        register(PageSpec("broken", "Broken panel", _broken_view, placement="layer"))


@pytest.fixture
def toy(tmp_path: Path):
    host = get_host()
    host.add_plugin(ToyPlugin(), "toy-plugin")
    frame = pd.DataFrame({"layer": "c1", "unit": [0, 1, 2], "n": [5, 7, 11],
                          "share": [0.5, 0.25, 0.125]})
    write_tables_run(tmp_path / "toy-run", {"toy-count": {"counts": frame},
                                            "unknown-plugin": {"stuff": frame}}, ["c1"])
    clear_caches()
    yield tmp_path
    reset_host()


def test_third_party_analysis_gets_every_view_from_the_defaults(toy: Path) -> None:
    """An analysis that only declares its tables (and figures) appears on every page."""
    import dash

    from probe.dashboards import create_app

    app = create_app(toy)
    from probe.dashboards.pages import analysis, layers, unit, units

    assert analysis.analysis_choices("toy-run", None) == (["toy-count", "unknown-plugin"],
                                                          "toy-count")
    view = analysis.analysis_content("toy-run", "toy-count")
    graphs = [c for c in components(view) if c.__class__.__name__ == "Graph"]
    bars = graphs[0].figure["data"][0]["y"]  # the plugin's own figure, sent as typed bytes
    values = np.frombuffer(base64.b64decode(bars["bdata"]), dtype=bars["dtype"]) \
        if isinstance(bars, dict) else bars
    assert list(values) == [5, 7, 11]
    assert grid_rows(view, "analysis-table-counts")[2]["n"] == 11
    other = analysis.analysis_content("toy-run", "unknown-plugin")
    assert "is not installed here" in str(other) and grid_rows(other, "analysis-table-stuff")

    summary = {r["layer"]: r for r in grid_rows(layers.layers_content("toy-run"),
                                                "layers-summary")}
    assert summary["c1"]["mean share"] == pytest.approx((0.5 + 0.25 + 0.125) / 3, rel=1e-3)
    assert "mean n" not in summary["c1"]  # integers are counts, not measures: not averaged
    page = filled(unit.unit_sections(get_source(), get_source().run("toy-run"), "c1", 1))
    section = _section(page, "unit-toy-count")
    assert section.children[0].children == "toy-count · c1 · unit 1"
    assert "0.25" in str(section) and "toy n=7" in str(page)  # facts, then the PageSpec panel
    cards, count = units.units_content("toy-run", "c1", [], None, 0)
    assert count.startswith("3 units of 3 in c1")
    assert [c.children.id for c in cards if hasattr(c, "href")] == [
        "unit-card-0", "unit-card-1", "unit-card-2"]
    assert "'unknown-plugin' is not installed here" in str(cards[0])  # said, not hidden
    rows = units.units_rows({"startRow": 0, "endRow": 10}, "toy-run", "c1", [])["rowData"]
    assert [r["share"] for r in rows] == [0.5, 0.25, 0.125]

    page = dash.page_registry["probe_plugin_toy"]
    assert page["path"] == "/plugin/toy" and page["nav"]
    with app.server.test_request_context():
        assert "toy n=23" in str(page["layout"](run="toy-run"))
    detail = layers.layer_detail("toy-run", "c1")
    assert "Broken panel failed: RuntimeError: plugin bug" in str(detail)


class Faulty(ToyCount):
    """An analysis whose views raise."""

    name = "faulty"

    @classmethod
    def unit_views(cls, run, layer, unit):
        raise RuntimeError("view bug")

    @classmethod
    def layer_summary(cls, run):
        raise ValueError("summary bug")


def test_a_failing_view_stays_in_its_own_section(tmp_path: Path) -> None:
    from probe.dashboards import create_app

    class Plugin:
        @hookimpl
        def probe_register_analyses(self, register):
            register(Faulty)

    get_host().add_plugin(Plugin(), "faulty-plugin")
    try:
        frame = pd.DataFrame({"layer": "c1", "unit": [0, 1], "n": [1, 2], "share": [0.1, 0.2]})
        write_tables_run(tmp_path / "r", {"faulty": {"counts": frame}}, ["c1"])
        clear_caches()
        create_app(tmp_path)
        from probe.dashboards.pages import layers, unit

        page = filled(unit.layout(run="r", layer="c1", unit="0"))
        assert "faulty.unit_views failed: RuntimeError: view bug" in str(page)
        content = layers.layers_content("r")
        assert "faulty.layer_summary failed: ValueError: summary bug" in str(content)
        assert [r["layer"] for r in grid_rows(content, "layers-summary")] == ["c1"]
    finally:
        reset_host()


def test_page_spec_is_validated() -> None:
    with pytest.raises(ValueError, match="page name must be"):
        PageSpec("Bad Name", "t", _toy_view)
    with pytest.raises(ValueError, match="placement must be one of"):
        PageSpec("ok", "t", _toy_view, placement="sidebar")
    with pytest.raises(TypeError, match="render must be callable"):
        PageSpec("ok", "t", "not callable")  # type: ignore[arg-type]

    class Wrong:
        @hookimpl
        def probe_register_dashboard_pages(self, register):
            register({"name": "dict-page"})

    from probe.errors import PluginError

    host = get_host()
    with pytest.raises(PluginError, match=r"plugin wrong: bad dashboard page: expected a "
                                          r"probe\.dashboard_api\.PageSpec"):
        host.add_plugin(Wrong(), "wrong")


def _cards_request(flagged: object, sort: object, page: object) -> dict:
    """The units page's cards callback request, with the browser's raw input values."""
    outputs = [("units-cards", "children"), ("units-count", "children")]
    inputs = [("units-run", "value", "full"), ("units-layer", "value", "c1"),
              ("units-flagged", "value", flagged), ("units-sort", "value", sort),
              ("units-page", "data", page)]
    return {"output": ".." + "...".join(f"{i}.{p}" for i, p in outputs) + "..",
            "outputs": [{"id": i, "property": p} for i, p in outputs],
            "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
            "changedPropIds": ["units-layer.value"], "state": []}


def test_callbacks_answer_over_http(app) -> None:
    client = app.server.test_client()
    assert client.get("/").status_code == 200
    layout = client.get("/_dash-layout").get_json()
    assert "app-nav" in json.dumps(layout)
    response = client.post("/_dash-update-component", json=_cards_request([], "unit", 0))
    assert response.status_code == 200
    count = response.get_json()["response"]["units-count"]["children"]
    assert count.startswith("4 units of 4 in c1")


def test_dash_command(monkeypatch: pytest.MonkeyPatch, runs: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    import flask
    import waitress

    from probe.cli import main

    served = {}
    monkeypatch.setattr(waitress, "serve", lambda app, **kw: served.update(kw, app=app))
    assert main(["dash", str(runs), "--port", "8123"]) == 0
    assert isinstance(served.pop("app"), flask.Flask)  # the WSGI app, served by waitress
    assert served == {"host": "127.0.0.1", "port": 8123, "threads": 8, "ident": "probe dash"}
    assert "http://127.0.0.1:8123/ with 8 threads" in capsys.readouterr().out
    assert main(["dash", str(runs), "--threads", "3"]) == 0 and served["threads"] == 3
    capsys.readouterr()
    assert main(["dash", str(runs / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["dash", str(runs), "--port", "0"]) == 2
    assert "port must be between 1 and 65535, got 0" in capsys.readouterr().err
    assert main(["dash", str(runs), "--threads", "0"]) == 2
    assert "threads must be between 1 and 256, got 0" in capsys.readouterr().err

    def taken(app, **kw):
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(waitress, "serve", taken)
    assert main(["dash", str(runs), "--port", "8123"]) == 2
    assert "cannot serve on 127.0.0.1:8123: Address already in use" in capsys.readouterr().err


#: Cheap settings of the analyses for a real run with all of them (seconds on a CPU).
QUICK = {"filters": {"patches": 2000, "iterations": 10, "random_filters": 32},
         "equivariance": {"transforms": ["shift-x", "hflip"], "lie": False,
                          "consistency": False}}


@pytest.mark.slow
def test_every_view_reads_a_real_run_of_every_analysis(tmp_path: Path) -> None:
    """The tables the analyses really write fill every page; no view fails."""
    import probe
    from probe.dashboards import create_app

    run = probe.analyze("ref-strided", "parts", ["unit-stats", "dissection", "filters",
                                                 "equivariance"],
                        out=tmp_path / "ref", dataset_options={"size": 16},
                        arch_options={"input_size": 64}, batch_size=16,
                        analysis_options=QUICK)
    assert run.status == "complete"
    create_app(tmp_path)
    from probe.dashboards.pages import layers, unit, units

    content = filled(layers.layers_content("ref"))
    warnings = [c.children for c in components(content)
                if "notice-warning" in str(getattr(c, "className", ""))]
    assert "failed:" not in str(content)
    assert len(warnings) == 1 and "too noisy to trust" in warnings[0]  # 16 images only
    summary = {r["layer"]: r for r in grid_rows(content, "layers-summary")}
    dissection = run.table("dissection", "units")
    for layer, rows in dissection.groupby("layer"):
        assert summary[layer]["detectors"] == int(rows["is_detector"].sum())
    stats = run.table("unit-stats", "units")
    for layer, rows in stats.groupby("layer"):
        assert summary[layer]["unit_stats_units"] == len(rows)
    for layer in run.manifest["layers"]:
        detail = str(filled(layers.layer_detail("ref", layer)))
        assert "failed:" not in detail, layer

    names = dissection[dissection.layer == "conv1"].sort_values("unit")["name"]
    request = {"startRow": 0, "endRow": 100, "sortModel": [{"colId": "unit", "sort": "asc"}]}
    rows = units.units_rows(request, "ref", "conv1", [])["rowData"]
    assert [r["name"] for r in rows] == list(names)

    page = filled(unit.layout(run="ref", layer="conv1", unit="0"))
    assert "failed:" not in str(page) and "unit-error" not in ids(page)
    for analysis in ("unit-stats", "dissection", "filters", "equivariance"):
        assert f"unit-{analysis}" in ids(page)
    masks = [i for i in ids(page) if "dissection-exemplars-" in i]
    assert len(masks) == len(run.table("dissection", "exemplars").query(
        "layer == 'conv1' and unit == 0"))


def test_navigation_carries_the_current_run(app) -> None:
    from probe.dashboards.app import carry_run, nav_pages, run_from_location

    assert [p["path"] for p in nav_pages()] == ["/", "/layers", "/units", "/compare",
                                                "/analysis"]
    assert run_from_location("/layers", "?run=lenet5-a&layer=c1") == "lenet5-a"
    assert run_from_location("/unit/full/c1/3", "") == "full"
    assert run_from_location("/compare", "") is None
    assert carry_run("/unit/full/c1/3", "") == ["/?run=full", "/layers?run=full",
                                                "/units?run=full", "/compare?run=full",
                                                "/analysis?run=full"]
    assert carry_run("/", "")[1] == "/layers"


def test_two_apps_in_one_process_each_get_their_callbacks(runs: Path) -> None:
    """No private Dash API: every app registers its own pages and callbacks."""
    from probe.dashboards import create_app

    first, second = create_app(runs), create_app(runs)
    for app in (first, second):
        client = app.server.test_client()
        response = client.post("/_dash-update-component", json=_cards_request([], "unit", 0))
        assert response.status_code == 200
    assert len(first.callback_map) == len(second.callback_map) > 10


def test_broken_and_running_runs_do_not_break_pages(tmp_path: Path) -> None:
    from probe.dashboards import create_app

    write_tables_run(tmp_path / "ok", synthetic_tables({"c1": 2}), ["c1"])
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "manifest.json").write_text("{not json")
    running = write_tables_run(tmp_path / "running", {}, ["c1"])
    manifest = json.loads((running / "manifest.json").read_text())
    manifest.update(status="running", analyses={"unit-stats": {"status": "pending"}})
    (running / "manifest.json").write_text(json.dumps(manifest))
    clear_caches()
    create_app(tmp_path)
    from probe.dashboards.pages import analysis, layers, runs, unit, units

    rows = {r["run"]: r for r in grid_rows(runs.layout(), "runs-table")}
    assert sorted(rows) == ["ok", "running"]  # the unreadable one is listed apart
    assert rows["running"]["status"] == "interrupted"  # no writer holds it: not "running"
    from probe.run_lock import RunLock

    with RunLock(running):  # the page is kept, but a writer's lock is part of its key
        live = {r["run"]: r for r in grid_rows(runs.layout(), "runs-table")}
        assert live["running"]["status"] == "running"
    gone = {r["run"]: r for r in grid_rows(runs.layout(), "runs-table")}
    assert gone["running"]["status"] == "interrupted"  # the writer is gone: not "running"
    write_tables_run(tmp_path / "new", synthetic_tables({"c1": 2}), ["c1"])
    assert "new" in {r["run"] for r in grid_rows(runs.layout(), "runs-table")}
    assert "is not valid JSON" in str(units.units_content("corrupt", "c1", [], None, 0)[0])
    assert "is not valid JSON" in str(unit.layout(run="corrupt", layer="c1", unit="0"))
    content = layers.layers_content("running")
    assert [r["layer"] for r in grid_rows(content, "layers-summary")] == ["c1"]
    assert "did not complete" in str(analysis.analysis_content("running", "unit-stats"))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _callback(output: str, values: dict[str, object]) -> dict:
    """The request of a callback with one ``children`` output and ``value`` inputs."""
    return {"output": f"{output}.children", "outputs": {"id": output, "property": "children"},
            "inputs": [{"id": k, "property": "value", "value": v} for k, v in values.items()],
            "changedPropIds": [f"{next(iter(values))}.value"], "state": []}


def test_a_truncated_table_shows_its_error_on_its_pages_only(tmp_path: Path) -> None:
    """A damaged parquet file of a complete run: one line naming the file where it is read."""
    from probe.dashboards import create_app

    for name in ("ok", "trunc"):
        write_tables_run(tmp_path / name, synthetic_tables({"c1": 4, "c2": 2}, images=16),
                         ["c1", "c2"], dataset=DIGITS)
    _truncate(tmp_path / "trunc" / "dissection" / "exemplars.parquet")
    _truncate(tmp_path / "trunc" / "filters" / "units.parquet")
    clear_caches()
    app = create_app(tmp_path)
    from probe.dashboards.pages import analysis, compare, layers, unit, units

    exemplars = "trunc/dissection/exemplars.parquet cannot be read ("
    filters = "trunc/filters/units.parquet cannot be read ("
    page = filled(unit.layout(run="trunc", layer="c1", unit="1"))
    assert exemplars in str(_section(page, "unit-dissection"))
    assert filters in str(_section(page, "unit-filters"))
    for section in ("unit-title", "unit-unit-stats", "unit-equivariance"):
        assert section in ids(page), section  # everything else still shows
    section = unit.unit_views_section("trunc", "c1", 1, "dissection")
    assert unit.unit_views_section("trunc", "c1", 1, "dissection") is not section  # re-read
    content = str(filled(layers.layers_content("trunc")))
    assert filters in content and "layers-dissection" in content
    assert filters in str(units.units_content("trunc", "c1", [], None, 0)[0])
    view = analysis.analysis_content("trunc", "dissection")
    assert exemplars in str(view) and grid_rows(view, "analysis-table-units")
    assert filters in str(filled(compare.compare_content("ok", "trunc")))

    client = app.server.test_client()
    for body, text in ((router_body("/unit/trunc/c1/1"), "unit-title"),  # the page's frame
                       (slot_body("unit", run="trunc", layer="c1", unit=1,
                                  analysis="dissection"), exemplars),
                       (slot_body("layers", run="trunc", analysis="filters"), filters),
                       (_callback("layers-content", {"layers-run": "trunc"}), filters),
                       (_callback("analysis-content", {"analysis-run": "trunc",
                                                       "analysis-name": "filters"}), filters),
                       (_callback("compare-content", {"compare-a": "trunc",
                                                      "compare-b": "ok"}), filters)):
        response = client.post("/_dash-update-component", json=body)
        assert response.status_code == 200, (body["output"], response.data[:300])
        answer = json.dumps(response.get_json())
        assert text in answer and "callback-error" not in answer, body["output"]
    lines = [c.children for c in components(page)
             if "notice" in str(getattr(c, "className", "")) and isinstance(c.children, str)]
    for message in (exemplars, filters):  # one line each, naming the file (not the server path)
        line = next(m for m in lines if message in m)
        assert "\n" not in line and str(tmp_path) not in line
    good = filled(unit.layout(run="ok", layer="c1", unit="1"))  # the other run is untouched
    assert "unit-dissection" in ids(good) and "cannot be read" not in str(good)


def test_inputs_from_the_browser_are_validated(app) -> None:
    from probe.dashboards.pages import units

    default = units.units_content("full", "c1", [], "iou", 0)[1]
    for flagged, sort, page in (("x", 5, "abc"), (None, ["iou"], -3), ({"a": 1}, "nope", 1.5),
                                (["flagged", 3], None, 10**9)):
        _, count = units.units_content("full", "c1", flagged, sort, page)
        assert count.split(" · ")[0] == default.split(" · ")[0] or "detector" in count, \
            (flagged, sort, page)
    for junk in (None, "x", {"startRow": "a", "endRow": -5, "sortModel": "iou"},
                 {"filterModel": {"iou": {"filterType": "number", "type": "nope", "filter": 1}},
                  "sortModel": [{"colId": 5}, "x"]},
                 {"filterModel": {"nope": {"type": "equals"}, "iou": "x"}}):
        assert units.units_rows(junk, "full", "c1", [])["rowCount"] == 4, junk
    assert units.units_rows(None, "nope", "c1", []) == {"rowData": [], "rowCount": 0}
    assert units.search_results("full", 5) == []
    assert units.search_results("full", "x" * 10_000) is not None  # cut, not refused
    assert "units-search-count" in ids(units.search_results("full", "concept1"))
    client = app.server.test_client()
    response = client.post("/_dash-update-component", json=_cards_request({"a": 1}, 7, "abc"))
    assert response.status_code == 200
    from probe.dashboards.app import carry_run

    assert carry_run(5, ["?run=x"])[0] == "/"  # type: ignore[arg-type]


def test_unit_pages_are_rendered_once_until_the_run_changes(tmp_path: Path) -> None:
    import os

    from dash import dcc

    from probe.dashboards import create_app

    run = write_tables_run(tmp_path / "r", synthetic_tables({"c1": 4}, images=16), ["c1"],
                           dataset=DIGITS)
    clear_caches()
    create_app(tmp_path)
    from probe.dashboards.pages import unit

    first = unit.layout(run="r", layer="c1", unit="2")
    assert unit.layout(run="r", layer="c1", unit="2") is first  # kept
    assert unit.layout(run="r", layer="c1", unit="3") is not first
    section = unit.unit_views_section("r", "c1", 2, "unit-stats")
    assert unit.unit_views_section("r", "c1", 2, "unit-stats") is section  # kept too
    graphs = [c for c in components(filled(first)) if isinstance(c, dcc.Graph)]
    assert len(graphs) >= 2  # kept in JSON form: converted once, not on every request
    assert all(isinstance(g.figure, dict) and g.figure["data"] for g in graphs)
    stamp = (run / "manifest.json").stat().st_mtime_ns
    os.utime(run / "manifest.json", ns=(stamp + 10**9, stamp + 10**9))  # the run was rewritten
    assert unit.layout(run="r", layer="c1", unit="2") is not first
    assert unit.unit_views_section("r", "c1", 2, "unit-stats") is not section


def test_a_unit_page_renders_its_neighbours_ahead_and_sends_kept_sections_filled(
        tmp_path: Path) -> None:
    """Once a unit page is quiet, units ± 1 are rendered in the background (every section);
    opening one then needs no slot request: kept sections come filled with the page."""
    from probe.dashboards import create_app, slots
    from probe.dashboards.data import wait_for_prefetch

    write_tables_run(tmp_path / "r", synthetic_tables({"c1": 5}, images=16), ["c1"],
                     dataset=DIGITS)
    clear_caches()
    app = create_app(tmp_path)
    from probe.dashboards.pages import unit

    source = get_source()
    run = source.run("r")
    analyses = source.completed(run)
    assert len(analyses) >= 3
    opened = unit.layout(run="r", layer="c1", unit="2")
    assert len(slot_components(opened)) == len(analyses)  # nothing kept yet: all slots
    wait_for_prefetch()  # the tables decoded, then the neighbours rendered

    def kept(u: int, name: str) -> bool:
        return source.kept(run, ("unit-section", "c1", u, name), pages=True)[0]

    assert all(kept(u, name) for u in (1, 3) for name in analyses)
    assert not any(kept(u, name) for u in (0, 2, 4) for name in analyses), [
        (u, n) for u in (0, 2, 4) for n in analyses if kept(u, n)]
    assert source.kept(run, ("unit-page", "c1", 3), pages=True)[0]

    page = unit.layout(run="r", layer="c1", unit="3")
    assert slot_components(page) == []  # every section came with the page
    assert unit.layout(run="r", layer="c1", unit="3") is page  # and the whole page is kept
    sent = [c for c in components(page)
            if isinstance(getattr(c, "id", None), dict) and c.id.get("type") == slots.KEPT]
    assert [json.loads(c.id["key"])["analysis"] for c in sent] == analyses
    for item in sent:  # what the slot callback would have answered
        ident = {**item.id, "type": slots.SLOT}
        assert item.className == slots.FILLED
        assert str(item.children) == str(slots.fill(ident)[0])
    kept_page = source.kept(run, ("unit-page", "c1", 3), pages=True)[1][0]
    assert len(slot_components(kept_page)) == len(analyses)  # the kept page is left as is

    client = app.server.test_client()  # one request draws the whole page
    answer = client.post("/_dash-update-component", json=router_body("/unit/r/c1/3"))
    assert answer.status_code == 200
    assert b'"view-slot-kept"' in answer.data and b'"view-slot"' not in answer.data
