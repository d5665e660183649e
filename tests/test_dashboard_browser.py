"""End-to-end: the dashboard in a real headless Chromium (run with ``pytest --headless``)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real unit-stats runs of LeNet-5 on 64 digits."""
    from probe.sample_runs import make_sample_runs

    root = tmp_path_factory.mktemp("dash-runs")
    make_sample_runs(root, size=64)
    return root


def _texts(dash_duo, selector: str) -> list[str]:
    return [e.text for e in dash_duo.find_elements(selector)]


def _grid_rows(dash_duo, selector: str) -> list[dict[str, str]]:
    """The rendered rows of an AG Grid: ``{column field: cell text}``."""
    rows = []
    for row in dash_duo.find_elements(f"{selector} .ag-center-cols-container .ag-row"):
        cells = row.find_elements("css selector", ".ag-cell")
        rows.append({c.get_attribute("col-id"): c.text for c in cells})
    return rows


def test_runs_layer_units_unit(dash_duo, runs_dir: Path) -> None:
    """Open the app, pick a layer, open a unit by its card, see its exemplars; arrow keys move."""
    from selenium.webdriver.common.keys import Keys

    from probe.dashboards import create_app

    dash_duo.start_server(create_app(runs_dir))
    dash_duo.wait_for_text_to_equal("h2", "Runs", timeout=20)
    dash_duo.wait_for_contains_text("#table-runs-table", "lenet5-a", timeout=20)
    runs = {r["run"]: r for r in _grid_rows(dash_duo, "#table-runs-table")}
    assert runs["lenet5-a"]["architecture"] == "lenet5"

    dash_duo.wait_for_element("#table-runs-table a[href='/units?run=lenet5-a']").click()
    dash_duo.wait_for_contains_text("#units-count", "6 units of 6 in c1", timeout=20)
    dash_duo.select_dcc_dropdown("#units-layer", value="c3")
    dash_duo.wait_for_contains_text("#units-count", "16 units of 16 in c3", timeout=20)
    cards = dash_duo.find_elements("#units-cards .card")
    assert len(cards) == 16
    # exemplar thumbnails: every card's, in one request after the cards
    dash_duo.wait_for_element("#units-cards .card img[src^='data:image/png;base64,']",
                              timeout=20)
    assert all(c.find_element("css selector", "img").get_attribute("src")
               .startswith("data:image/png;base64,") for c in cards)
    first = cards[0].text  # sorted by the analyses' score (max activation), best first
    dash_duo.find_element("#units-cards a[href='/unit/lenet5-a/c3/5']").click()

    dash_duo.wait_for_text_to_equal("#unit-title", "lenet5-a · c3 · unit 5", timeout=20)
    section = dash_duo.wait_for_element("#unit-unit-stats", timeout=20)
    assert section.find_element("css selector", "h3").text == "unit-stats · c3 · unit 5"
    images = section.find_elements("css selector", "figure.exemplar img")
    assert len(images) == 8  # unit-stats keeps top_k = 8 images
    assert all(img.get_attribute("src").startswith("data:image/png;base64,") for img in images)
    images[0].click()  # click to enlarge
    dash_duo.wait_for_element(".zoom-overlay img", timeout=5)
    dash_duo.find_element(".zoom-overlay").click()
    dash_duo.find_element("body").send_keys(Keys.ARROW_RIGHT)
    dash_duo.wait_for_text_to_equal("#unit-title", "lenet5-a · c3 · unit 6", timeout=20)
    dash_duo.find_element("body").send_keys(Keys.ARROW_LEFT)
    dash_duo.wait_for_text_to_equal("#unit-title", "lenet5-a · c3 · unit 5", timeout=20)
    assert first
    assert dash_duo.get_logs() == []


def test_unit_permalink_and_compare(dash_duo, runs_dir: Path) -> None:
    """Follow a unit permalink directly, then compare the two runs."""
    from probe.dashboards import create_app

    dash_duo.start_server(create_app(runs_dir))
    dash_duo.driver.get(dash_duo.server_url + "/unit/lenet5-b/c1/3")
    dash_duo.wait_for_text_to_equal("#unit-title", "lenet5-b · c1 · unit 3", timeout=20)
    stats = dash_duo.wait_for_element("#unit-unit-stats", timeout=20).text
    assert "max" in stats and "fraction positive" in stats

    dash_duo.driver.get(dash_duo.server_url + "/unit/lenet5-b/c1/99")
    dash_duo.wait_for_contains_text("#unit-error", "has 6 units", timeout=20)
    dash_duo.driver.get(dash_duo.server_url + "/unit/nope/c1/1")
    dash_duo.wait_for_contains_text("#unit-error", "no run 'nope'", timeout=20)

    dash_duo.driver.get(dash_duo.server_url + "/compare?a=lenet5-a&b=lenet5-b")
    dash_duo.wait_for_contains_text("#table-compare-table", "c5", timeout=20)
    rows = _grid_rows(dash_duo, "#table-compare-table")
    assert [r["layer_a"] for r in rows] == ["c1", "s2", "c3", "s4", "c5"]
    dash_duo.wait_for_element("#compare-unit-stats .main-svg", timeout=20)
    assert dash_duo.get_logs() == []


def test_selectors_show_their_value_on_a_warm_server(dash_duo, runs_dir: Path) -> None:
    """A permalink's layer or analysis shows in its selector however fast the server answers.

    The options used to arrive by a first callback; on a warm server (a page
    opened before) Dash's dropdown then kept an empty box for the value it held.
    """
    from probe.dashboards import create_app

    dash_duo.start_server(create_app(runs_dir))
    for _ in range(3):  # the first visit warms the server's caches, the later ones are fast
        for path, box, value in (("/units?run=lenet5-b&layer=c3", "#units-layer", "c3"),
                                 ("/layers?run=lenet5-b&layer=c3", "#layers-layer", "c3"),
                                 ("/analysis?run=lenet5-b&analysis=unit-stats",
                                  "#analysis-name", "unit-stats")):
            dash_duo.driver.get(dash_duo.server_url + path)
            if box == "#units-layer":
                dash_duo.wait_for_contains_text("#units-count", "16 units of 16 in c3",
                                                timeout=20)
            dash_duo.wait_for_text_to_equal(f"{box}-value", value, timeout=10)
    # a long table pages by 25 and its page-size picker says so (AG Grid shows an empty
    # picker, with a console warning, when the size is not among the picker's choices)
    dash_duo.wait_for_text_to_equal(".ag-paging-page-size .ag-picker-field-display", "25",
                                    timeout=20)
    # a run without the page's layer: the selector falls back to the run's first layer
    dash_duo.driver.get(dash_duo.server_url + "/units?run=lenet5-b&layer=nope")
    dash_duo.wait_for_text_to_equal("#units-layer-value", "c1", timeout=10)
    dash_duo.wait_for_contains_text("#units-count", "6 units of 6 in c1", timeout=20)
    # changing the run still refills the layers (the callback, no longer the first load)
    dash_duo.select_dcc_dropdown("#units-run", value="lenet5-a")
    dash_duo.wait_for_text_to_equal("#units-layer-value", "c1", timeout=10)
    dash_duo.select_dcc_dropdown("#units-layer", value="s4")
    dash_duo.wait_for_contains_text("#units-count", "in s4", timeout=20)
    assert dash_duo.get_logs() == []


def test_slow_pages_and_sections_show_a_spinner(dash_duo, tmp_path: Path, monkeypatch) -> None:
    """A page the router is still computing (a cold unit page), then each section still
    being filled, shows a spinner in its place, gone once it is drawn."""
    import time

    from probe.dashboards import create_app, slots
    from probe.dashboards.pages import unit
    from probe.sample_runs import synthetic_tables, write_tables_run

    write_tables_run(tmp_path / "r", synthetic_tables({"c1": 4}, images=16), ["c1"])
    page, section = unit.render_page, slots._RENDERERS["unit"]

    def slow_page(*args, **kwargs):
        time.sleep(2.5)
        return page(*args, **kwargs)

    def slow_section(**args):
        time.sleep(2.5)
        return section(**args)

    monkeypatch.setattr(unit, "render_page", slow_page)
    monkeypatch.setitem(slots._RENDERERS, "unit", slow_section)
    dash_duo.start_server(create_app(tmp_path))
    dash_duo.driver.get(dash_duo.server_url + "/unit/r/c1/2")
    spinner = ("const e = document.querySelector('#_pages_content[data-dash-is-loading=true]');"
               " return e && getComputedStyle(e, '::after').animationName;")
    until = time.monotonic() + 2
    while not dash_duo.driver.execute_script(spinner) and time.monotonic() < until:
        time.sleep(0.05)
    assert "probe-spin" in (dash_duo.driver.execute_script(spinner) or "")  # turning
    assert not dash_duo.find_elements("#unit-title")  # the page itself is not there yet
    dash_duo.wait_for_text_to_equal("#unit-title", "r · c1 · unit 2", timeout=20)
    assert not dash_duo.driver.execute_script(spinner)  # gone with the page's answer
    dash_duo.wait_for_element(".view-slot-loading .dash-spinner", timeout=2)
    assert not dash_duo.find_elements("#unit-unit-stats")  # its section: still coming
    dash_duo.wait_for_element("#unit-unit-stats", timeout=20)
    dash_duo.wait_for_no_elements(".view-slot-loading .dash-spinner", timeout=5)
    assert dash_duo.get_logs() == []


@pytest.fixture(scope="module")
def dissected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run with concept labels: a small CNN on 16 images of the parts world."""
    import probe

    root = tmp_path_factory.mktemp("dash-dissected")
    probe.analyze("ref-strided", "parts", ["unit-stats", "dissection"], out=root / "ref",
                  dataset_options={"size": 16}, arch_options={"input_size": 64},
                  batch_size=16)
    return root


@pytest.mark.slow
def test_unit_cards_labels_and_masks_in_the_browser(dash_duo, dissected: Path) -> None:
    """The cards follow the flag toggle and the count, search finds a concept, a unit shows
    its concept and masks, and below-threshold units are greyed."""
    import probe
    from probe.dashboards import create_app

    units = probe.load_run(dissected / "ref").table("dissection", "units")
    conv1 = units[units.layer == "conv1"].sort_values("unit")
    detectors = conv1[conv1["is_detector"]]
    dash_duo.start_server(create_app(dissected))
    dash_duo.driver.get(dash_duo.server_url + "/units?run=ref&layer=conv1")
    dash_duo.wait_for_contains_text("#units-count", f"{len(conv1)} units of {len(conv1)} in "
                                    "conv1", timeout=20)
    cards = dash_duo.find_elements("#units-cards .card")
    muted = dash_duo.find_elements("#units-cards .card.muted")
    assert len(muted) == min(len(cards), len(conv1) - len(detectors))
    best = conv1.sort_values("iou", ascending=False).iloc[0]
    assert cards[0].get_attribute("id") == f"unit-card-{int(best['unit'])}"  # IoU order

    # the grid writes IoU in its declared format (fixed3: 0.006, not 0.005786)
    from dash.testing.wait import until

    from probe.views.format import format_value

    iou = dict(zip(conv1["unit"].astype(int), conv1["iou"], strict=True))
    cell = "#units-table .ag-center-cols-container .ag-row .ag-cell[col-id='iou']"
    until(lambda: any(e.text for e in dash_duo.find_elements(cell)), timeout=20)
    rows = [r for r in _grid_rows(dash_duo, "#units-table") if r.get("iou")]
    assert rows
    for row in rows:
        assert row["iou"] == format_value(float(iou[int(row["unit"])]), "fixed3"), row

    dash_duo.find_element("#units-flagged input").click()
    dash_duo.wait_for_contains_text("#units-count", f"{len(detectors)} detector units of "
                                    f"{len(conv1)}", timeout=20)
    assert len(dash_duo.find_elements("#units-cards .card")) == min(len(detectors), 48)
    assert not dash_duo.find_elements("#units-cards .card.muted")

    labelled = conv1[conv1["name"] != ""].iloc[0]
    search = dash_duo.find_element("#units-search")
    search.send_keys(str(labelled["name"]) + "\n")
    dash_duo.wait_for_contains_text("#units-search-count", "units match", timeout=20)
    hits = units[units["name"].str.lower().str.contains(str(labelled["name"]).lower(),
                                                        regex=False)]
    assert dash_duo.find_element("#units-search-count").text.startswith(f"{len(hits)} units")

    dash_duo.driver.get(dash_duo.server_url + f"/unit/ref/conv1/{int(labelled['unit'])}")
    dash_duo.wait_for_element("#unit-dissection", timeout=20)
    section = dash_duo.find_element("#unit-dissection")
    assert str(labelled["name"]) in section.text
    assert section.find_elements("css selector", "img")
    dash_duo.wait_for_element("#unit-dissection .main-svg")
    assert dash_duo.get_logs() == []


#: An artifact that tries to act in the dashboard's origin when opened.
EVIL_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"
 onload="localStorage.setItem('probe-xss', 'onload')">
<script>localStorage.setItem('probe-xss', 'script'); document.title = 'probe-xss';</script>
<rect width="10" height="10" fill="red"/></svg>"""


def test_pages_render_under_the_csp_and_artifact_scripts_never_run(dash_duo,
                                                                     runs_dir: Path) -> None:
    """The app's CSP leaves Dash, plotly and AG Grid working; an SVG artifact's script does
    not run."""
    import time

    from probe.dashboards import create_app

    (runs_dir / "lenet5-a" / "unit-stats" / "evil.svg").write_text(EVIL_SVG)
    dash_duo.start_server(create_app(runs_dir))
    driver = dash_duo.driver
    dash_duo.wait_for_contains_text("#table-runs-table", "lenet5-a", timeout=20)
    driver.get(dash_duo.server_url + "/layers?run=lenet5-a")
    dash_duo.wait_for_element("#layers-unit-stats .main-svg", timeout=20)  # plotly draws
    dash_duo.wait_for_contains_text("#table-layers-summary", "c3", timeout=20)
    assert driver.execute_script("return localStorage.getItem('probe-xss')") is None
    assert dash_duo.get_logs() == []  # no CSP violation while Dash, plotly, AG Grid work

    driver.get(dash_duo.server_url + "/files/lenet5-a/unit-stats/evil.svg")
    time.sleep(1.0)  # give a script every chance to run
    assert "probe-xss" not in (driver.title or "")
    driver.get(dash_duo.server_url + "/")
    dash_duo.wait_for_contains_text("#table-runs-table", "lenet5-a", timeout=20)
    assert driver.execute_script("return localStorage.getItem('probe-xss')") is None

    # the app's own pages refuse a script that was injected into them
    ran = driver.execute_script("""
        window.probeInjected = false;
        const s = document.createElement('script');
        s.textContent = 'window.probeInjected = true;';
        document.body.appendChild(s);
        return window.probeInjected;""")
    assert ran is False
