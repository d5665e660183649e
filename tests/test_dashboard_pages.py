"""Page layouts and callbacks, called as plain functions on real and hand-made runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest
from dash import html
from dash_client import router_body

from probe import Analysis, hookimpl
from probe.dashboard_api import PageSpec
from probe.dashboards.data import clear_caches, get_source
from probe.dashboards.sample import make_sample_runs, synthetic_tables, write_tables_run
from probe.host import get_host, reset_host

DIGITS = {"name": "digits", "options": {"size": 16}, "size": 16}


def _ids(component: object) -> list[str]:
    return re.findall(r"id='([A-Za-z0-9_\-]+)'", str(component))


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


def test_runs_page_lists_every_run(app, runs: Path) -> None:
    from probe.dashboards.pages import runs as page

    table = page.layout().children[2]
    rows = {r["run"]: r for r in table.data}
    assert sorted(rows) == ["full", "lenet5-a", "lenet5-b"]
    assert rows["lenet5-a"]["architecture"] == "lenet5"
    assert rows["lenet5-a"]["dataset"] == "digits (32 images)"
    assert rows["full"]["analyses"].endswith("broken [failed]")
    assert rows["full"]["status"] == "partial"


def test_units_callback_filters_sorts_and_pages_on_the_server(app, runs: Path) -> None:
    from probe.dashboards.pages import units

    assert units.layer_choices("full", None) == (["c1", "c2"], "c1")
    assert units.layer_choices("full", "c2") == (["c1", "c2"], "c2")
    data, columns, pages, _ = units.units_page("full", "c1", 0, 2,
                                               [{"column_id": "iou", "direction": "desc"}],
                                               "{iou} s> 0.01")
    truth = _tables(runs, "dissection", "units").query("layer == 'c1' and iou > 0.01")
    truth = truth.sort_values("iou", ascending=False)
    assert pages == -(-len(truth) // 2)
    assert [r["unit"] for r in data] == list(truth["unit"].iloc[:2])
    assert [r["label"] for r in data] == list(truth["name"].iloc[:2])
    ids = [c["id"] for c in columns]
    for column in ("unit", "open", "label", "category", "iou", "is_detector", "max", "gabor_r2"):
        assert column in ids
    assert data[0]["open"] == f"[unit {data[0]['unit']}](/unit/full/c1/{data[0]['unit']})"
    _, _, _, notice = units.units_page("full", "c9", 0, 25, [], "")
    assert "has no layer 'c9'" in str(notice)
    _, _, _, notice = units.units_page("full", "c1", 0, 25, [], "{nope} = 1")
    assert "unknown column 'nope'" in str(notice)
    data, _, _, notice = units.units_page("lenet5-a", "c3", 0, 25, [], "")
    assert len(data) == 16 and "missing-dissection" in _ids(notice)


def test_unit_page_shows_every_section(app, runs: Path) -> None:
    from probe.dashboards.pages import unit

    page = unit.layout(run="full", layer="c1", unit="1")
    ids = _ids(page)
    for section in ("unit-title", "unit-stats", "unit-best-label", "unit-concepts",
                    "unit-masks", "unit-exemplars", "unit-filter", "unit-links",
                    "unit-equivariance", "unit-partners"):
        assert section in ids, section
    assert sum(i.startswith("unit-mask-") for i in ids) == 4  # top_k masks
    assert sum(i.startswith("unit-exemplar-") for i in ids) == 4
    best = _tables(runs, "dissection", "units").query("layer == 'c1' and unit == 1").iloc[0]
    assert f"best: {best['name']} ({best['category']}), IoU {best['iou']:.3f}" in str(page)
    assert "[c2/0](/unit/full/c2/0)" in str(page)  # part → object link of the edge table
    unpaged = unit.layout(run="lenet5-a", layer="c1", unit="0")
    assert {"missing-dissection", "missing-filters", "missing-equivariance"} <= set(_ids(
        unpaged))
    for bad, message in ((("full", "c1", "4"), "has 4 units"), (("full", "c1", "-1"),
                                                                "non-negative integer"),
                         (("full", "../c1", "0"), "has no layer"),
                         (("../full", "c1", "0"), "name must be")):
        assert message in str(unit.layout(run=bad[0], layer=bad[1], unit=bad[2]))


def test_unit_exemplars_of_a_real_run_use_its_images(app) -> None:
    from probe.dashboards.pages import unit

    page = unit.layout(run="lenet5-a", layer="c3", unit="5")
    images = [c for c in re.findall(r"src='(data:image/png;base64,[^']+)'", str(page))]
    assert len(images) == 8
    assert len(set(images)) > 1  # different digits, not one placeholder
    assert str(page).count("class ") >= 8


def test_layers_and_compare_callbacks(app, runs: Path) -> None:
    from probe.dashboards.pages import compare, layers

    content = layers.layers_content("full")
    ids = _ids(content)
    for section in ("layers-summary", "layers-hierarchy", "layers-equivariance",
                    "layers-filters", "layers-activation"):
        assert section in ids
    summary = {r["layer"]: r for r in content[1].data}
    dissection = _tables(runs, "dissection", "units")
    c1 = dissection[dissection.layer == "c1"]
    assert summary["c1"]["detectors"] == int(c1.is_detector.sum())
    assert summary["c1"]["unique_concepts"] == c1[c1.is_detector]["label"].nunique()
    assert summary["c2"]["equivariance_error"] == pytest.approx((0.2 + 0.4) / 2)
    assert "missing-dissection" in _ids(layers.layers_content("lenet5-a"))

    out = compare.compare_content("full", "lenet5-a", "units")
    table = {r["layer"]: r for r in out[0].data}
    assert table["c1"]["units [full]"] == 4 and table["c1"]["units [lenet5-a]"] == 6
    assert table["c3"]["units [lenet5-a]"] == 16
    figure = out[1].figure
    assert [t.name for t in figure.data] == ["full", "lenet5-a"]
    same = compare.compare_content("lenet5-a", "lenet5-a", "units")
    assert "units [lenet5-a (A)]" in same[0].data[0]


class ToyCount(Analysis):
    """A third-party analysis the dashboard has never heard of."""

    name = "toy-count"
    tables = {"counts": ("layer", "unit", "n")}

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
    frame = pd.DataFrame({"layer": "c1", "unit": [0, 1, 2], "n": [5, 7, 11]})
    write_tables_run(tmp_path / "toy-run", {"toy-count": {"counts": frame},
                                            "unknown-plugin": {"stuff": frame}}, ["c1"])
    clear_caches()
    yield tmp_path
    reset_host()


def test_third_party_analysis_and_plugin_pages_appear(toy: Path) -> None:
    import dash

    from probe.dashboards import create_app

    app = create_app(toy)
    from probe.dashboards.pages import analysis, layers, unit

    assert analysis.analysis_choices("toy-run", None) == (["toy-count", "unknown-plugin"],
                                                          "toy-count")
    view = analysis.analysis_content("toy-run", "toy-count")
    assert list(view[1].figure.data[0].y) == [5, 7, 11]  # the plugin's own figure
    assert "analysis-table-counts" in _ids(view)
    other = analysis.analysis_content("toy-run", "unknown-plugin")
    assert "is not installed here" in str(other) and "analysis-table-stuff" in _ids(other)

    page = dash.page_registry["probe_plugin_toy"]
    assert page["path"] == "/plugin/toy" and page["nav"]
    with app.server.test_request_context():
        assert "toy n=23" in str(page["layout"](run="toy-run"))
    source = get_source()
    assert "toy n=7" in str(unit.unit_sections(source, source.run("toy-run"), "c1", 1))
    content = layers.layers_content("toy-run")
    assert "Broken panel failed: RuntimeError: plugin bug" in str(content)


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


def _units_request(page: object, size: object, sort_by: object, query: object) -> dict:
    """The units grid's callback request, with the browser's raw input values."""
    return {"output": "..units-table.data...units-table.columns...units-table.page_count..."
                      "units-notice.children..",
            "outputs": [{"id": "units-table", "property": p} for p in
                        ("data", "columns", "page_count")] +
            [{"id": "units-notice", "property": "children"}],
            "inputs": [{"id": "units-run", "property": "value", "value": "full"},
                       {"id": "units-layer", "property": "value", "value": "c1"},
                       {"id": "units-table", "property": "page_current", "value": page},
                       {"id": "units-table", "property": "page_size", "value": size},
                       {"id": "units-table", "property": "sort_by", "value": sort_by},
                       {"id": "units-table", "property": "filter_query", "value": query}],
            "changedPropIds": ["units-layer.value"], "state": []}


def test_callbacks_answer_over_http(app) -> None:
    client = app.server.test_client()
    assert client.get("/").status_code == 200
    layout = client.get("/_dash-layout").get_json()
    assert "app-nav" in json.dumps(layout)
    body = _units_request(0, 25, [], "")
    response = client.post("/_dash-update-component", json=body)
    assert response.status_code == 200
    data = response.get_json()["response"]["units-table"]["data"]
    assert [r["unit"] for r in data] == [0, 1, 2, 3]


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
    """The tables the analyses really write fill every section (no "missing" notice)."""
    import probe
    from probe.dashboards import create_app
    from probe.dashboards.figures import make_layer_summary

    run = probe.analyze("ref-strided", "parts", ["unit-stats", "dissection", "filters",
                                                 "equivariance"],
                        out=tmp_path / "ref", dataset_options={"size": 16},
                        arch_options={"input_size": 64}, batch_size=16,
                        analysis_options=QUICK)
    assert run.status == "complete"
    create_app(tmp_path)
    from probe.dashboards.pages import layers, unit, units

    content = layers.layers_content("ref")
    ids = _ids(content)
    assert {"layers-hierarchy", "layers-equivariance", "layers-filters"} <= set(ids)
    assert not [i for i in ids if i.startswith("missing-")]
    summary = {r["layer"]: r for r in content[1].data}
    dissection = run.table("dissection", "units")
    for layer, rows in dissection.groupby("layer"):
        assert summary[layer]["detectors"] == int(rows["is_detector"].sum())
    expected = make_layer_summary(run.table("unit-stats", "units"), dissection)
    assert [summary[x]["units"] for x in expected["layer"]] == list(expected["units"])

    data, columns, _, _ = units.units_page("ref", "conv1", 0, 100, [], "")
    names = dissection[dissection.layer == "conv1"].sort_values("unit")["name"]
    assert [r["label"] for r in data] == list(names)
    assert "gabor_r2" in [c["id"] for c in columns]

    page = unit.layout(run="ref", layer="conv1", unit="0")
    ids = _ids(page)
    assert not [i for i in ids if i.startswith("missing-") or i == "unit-error"]
    for section in ("unit-masks", "unit-exemplars", "unit-concepts", "unit-filter",
                    "unit-equivariance"):
        assert section in ids
    assert sum(i.startswith("unit-mask-") for i in ids) == len(
        run.table("dissection", "exemplars").query("layer == 'conv1' and unit == 0"))


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


def test_every_column_the_dashboard_reads_is_declared_by_its_analysis() -> None:
    from probe.dashboards.layers_data import READS

    analyses = get_host().analyses
    for (analysis, table), columns in READS.items():
        declared = analyses.get(analysis).tables[table]
        missing = [c for c in columns if c not in declared]
        assert not missing, f"{analysis}/{table} no longer declares {missing}"


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

    rows = {r["run"]: r for r in runs.layout().children[2].data}
    assert sorted(rows) == ["ok", "running"]  # the unreadable one is listed apart
    assert rows["running"]["status"] == "interrupted"  # no writer holds it: not "running"
    from probe.run_lock import RunLock

    with RunLock(running):
        clear_caches()
        live = {r["run"]: r for r in runs.layout().children[2].data}
        assert live["running"]["status"] == "running"
    assert "is not valid JSON" in str(units.units_page("corrupt", "c1", 0, 25, [], "")[3])
    assert "is not valid JSON" in str(unit.layout(run="corrupt", layer="c1", unit="0"))
    content = str(layers.layers_content("running"))
    assert "missing-unit-stats" in content and "missing-dissection" in content
    assert "did not complete" in str(analysis.analysis_content("running", "unit-stats"))


def test_hierarchy_click_opens_the_units_of_that_category(app, runs: Path) -> None:
    from probe.dashboards.pages import layers, units

    fig = layers.layers_content("full")[3].figure  # the hierarchy chart
    part = next(t for t in fig.data if t.name == "part")
    click = {"points": [{"x": "c1", "customdata": part.customdata[0]}]}
    assert layers.units_href("full", click) == "/units?run=full&layer=c1&category=part"
    assert layers.open_units(click, "full") == "/units?run=full&layer=c1&category=part"
    assert layers.units_href("full", None) is None
    page = units.layout(run="full", layer="c1", category="part")
    assert page.children[-1].filter_query == "{category} = part"
    assert units.initial_filter("part} && {x") == ""  # only plain names
    data, _, _, _ = units.units_page("full", "c1", 0, 25, [], "{category} = part")
    truth = _tables(runs, "dissection", "units").query("layer == 'c1' and category == 'part'")
    assert [r["unit"] for r in data] == sorted(truth["unit"])


def _callback(output: str, values: dict[str, object]) -> dict:
    """The request of a callback with one ``children`` output and ``value`` inputs."""
    return {"output": f"{output}.children", "outputs": {"id": output, "property": "children"},
            "inputs": [{"id": k, "property": "value", "value": v} for k, v in values.items()],
            "changedPropIds": [f"{next(iter(values))}.value"], "state": []}


def _components(component: object):
    yield component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if hasattr(child, "to_plotly_json"):
            yield from _components(child)


def _graphs(component: object):
    from dash import dcc

    return [c for c in _components(component) if isinstance(c, dcc.Graph)]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


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
    page = unit.layout(run="trunc", layer="c1", unit="1")
    ids = _ids(page)
    assert exemplars in str(page) and "unit-problem-masks" in ids
    assert filters in str(page) and "unit-problem-filter" in ids
    for section in ("unit-title", "unit-stats", "unit-concepts", "unit-exemplars",
                    "unit-links", "unit-equivariance"):  # everything else still shows
        assert section in ids, section
    assert unit.layout(run="trunc", layer="c1", unit="1") is not page  # not kept: re-read
    content = str(layers.layers_content("trunc"))
    assert filters in content and "layers-hierarchy" in content
    _, _, _, notice = units.units_page("trunc", "c1", 0, 25, [], "")
    assert filters in str(notice)
    view = analysis.analysis_content("trunc", "dissection")
    assert exemplars in str(view) and "analysis-table-units" in _ids(view)
    assert filters in str(compare.compare_content("ok", "trunc", "units"))

    client = app.server.test_client()
    for body, text in ((router_body("/unit/trunc/c1/1"), exemplars),
                       (_callback("layers-content", {"layers-run": "trunc"}), filters),
                       (_callback("analysis-content", {"analysis-run": "trunc",
                                                       "analysis-name": "filters"}), filters),
                       (_callback("compare-content", {"compare-a": "trunc", "compare-b": "ok",
                                                      "compare-metric": "units"}), filters)):
        response = client.post("/_dash-update-component", json=body)
        assert response.status_code == 200, body["output"]
        answer = json.dumps(response.get_json())
        assert text in answer and "callback-error" not in answer, body["output"]
    lines = [c.children[0] for c in _components(page)
             if str(getattr(c, "id", "")).startswith("unit-problem")]
    for message in (exemplars, filters):  # one line each, naming the file (not the server path)
        line = next(m for m in lines if m.startswith(message))
        assert "\n" not in line and str(tmp_path) not in line
    good = unit.layout(run="ok", layer="c1", unit="1")  # the other run is untouched
    assert "unit-masks" in _ids(good) and "cannot be read" not in str(good)
    assert units.units_page("ok", "c1", 0, 25, [], "")[0]


def test_grid_inputs_from_the_browser_are_validated(app) -> None:
    from probe.dashboards.pages import compare, layers, units

    default, _, pages, _ = units.units_page("full", "c1", 0, 25, [], "")
    for page, size, sort_by, query in (("x", "abc", "iou", None), (-3, 0, {"column_id": "iou"}, 7),
                                       (None, 10**6, [5, "a", {"column_id": 3}], ["x"]),
                                       (1.5, True, [{"column_id": "iou", "direction": "up"}],
                                        "{iou} > 0" * 500)):
        data, columns, count, _ = units.units_page("full", "c1", page, size, sort_by, query)
        assert data == default and count == pages and columns, (page, size, sort_by)
    data, _, _, _ = units.units_page("full", "c1", 0, 2.0, [{"column_id": "iou",
                                                             "direction": "desc"}, "junk"], "")
    assert len(data) == 2 and data[0]["iou"] >= data[1]["iou"]
    assert units.grid_request("x", "abc", "iou", None) == (0, units.PAGE_SIZE, [], "")

    client = app.server.test_client()
    body = _units_request("abc", "abc", "not a list", {"a": 1})
    response = client.post("/_dash-update-component", json=body)
    assert response.status_code == 200
    assert [r["unit"] for r in response.get_json()["response"]["units-table"]["data"]] == \
        [0, 1, 2, 3]
    assert compare.compare_content("full", "lenet5-a", ["units"])[0].data  # a default metric
    assert layers.units_href("full", ["not", "a", "click"]) is None
    assert layers.units_href("full", {"points": "x"}) is None
    from probe.dashboards.app import carry_run

    assert carry_run(5, ["?run=x"])[0] == "/"  # type: ignore[arg-type]


def test_unit_pages_are_rendered_once_until_the_run_changes(tmp_path: Path) -> None:
    import os

    from probe.dashboards import create_app

    run = write_tables_run(tmp_path / "r", synthetic_tables({"c1": 4}, images=16), ["c1"],
                           dataset=DIGITS)
    clear_caches()
    create_app(tmp_path)
    from probe.dashboards.pages import unit

    first = unit.layout(run="r", layer="c1", unit="2")
    assert unit.layout(run="r", layer="c1", unit="2") is first  # kept
    assert unit.layout(run="r", layer="c1", unit="3") is not first
    graphs = list(_graphs(first))
    assert len(graphs) >= 2  # kept in JSON form: converted once, not on every request
    assert all(isinstance(g.figure, dict) and g.figure["data"] for g in graphs)
    stamp = (run / "manifest.json").stat().st_mtime_ns
    os.utime(run / "manifest.json", ns=(stamp + 10**9, stamp + 10**9))  # the run was rewritten
    assert unit.layout(run="r", layer="c1", unit="2") is not first
