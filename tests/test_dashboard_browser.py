"""End-to-end: the dashboard in a real headless Chromium (run with ``pytest --headless``)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real unit-stats runs of LeNet-5 on 64 digits."""
    from probe.dashboards.sample import make_sample_runs

    root = tmp_path_factory.mktemp("dash-runs")
    make_sample_runs(root, size=64)
    return root


def _texts(dash_duo, selector: str) -> list[str]:
    return [e.text for e in dash_duo.find_elements(selector)]


def test_runs_layer_units_unit(dash_duo, runs_dir: Path) -> None:
    """Open the app, pick a layer, open a unit, see its exemplars and labels."""
    from probe.dashboards import create_app

    dash_duo.start_server(create_app(runs_dir))
    dash_duo.wait_for_text_to_equal("h2", "Runs", timeout=20)
    dash_duo.wait_for_contains_text("#runs-table", "lenet5-a", timeout=10)
    assert "lenet5" in dash_duo.find_element("#runs-table").text

    dash_duo.wait_for_element("#runs-table a[href='/units?run=lenet5-a']").click()
    dash_duo.wait_for_contains_text("#units-count", "6 units in c1", timeout=20)
    dash_duo.select_dcc_dropdown("#units-layer", value="c3")
    dash_duo.wait_for_contains_text("#units-count", "16 units in c3", timeout=20)
    links = dash_duo.find_elements("#units-table a")
    assert len(links) == 16
    dash_duo.wait_for_element("#units-table a[href='/unit/lenet5-a/c3/5']").click()

    dash_duo.wait_for_text_to_equal("#unit-title", "lenet5-a · c3 · unit 5", timeout=20)
    exemplars = dash_duo.find_elements("#unit-exemplars figure")
    assert len(exemplars) == 8  # unit-stats keeps top_k = 8 images
    captions = _texts(dash_duo, "#unit-exemplars figcaption")
    assert captions[0].startswith("#1 · image ")
    assert all("class " in c for c in captions)  # digit labels under every exemplar
    images = dash_duo.find_elements("#unit-exemplars img")
    assert all(img.get_attribute("src").startswith("data:image/png;base64,") for img in images)
    assert dash_duo.find_element("#missing-dissection").text.startswith("This run (lenet5-a)")
    assert dash_duo.get_logs() == []


def test_unit_permalink_and_compare(dash_duo, runs_dir: Path) -> None:
    """Follow a unit permalink directly, then compare the two runs."""
    from probe.dashboards import create_app

    dash_duo.start_server(create_app(runs_dir))
    dash_duo.driver.get(dash_duo.server_url + "/unit/lenet5-b/c1/3")
    dash_duo.wait_for_text_to_equal("#unit-title", "lenet5-b · c1 · unit 3", timeout=20)
    assert len(dash_duo.find_elements("#unit-exemplars figure")) == 8
    stats = dash_duo.find_element("#unit-stats").text
    assert "max" in stats and "fraction_positive" in stats

    dash_duo.driver.get(dash_duo.server_url + "/unit/lenet5-b/c1/99")
    dash_duo.wait_for_contains_text("#unit-error", "has 6 units", timeout=20)
    dash_duo.driver.get(dash_duo.server_url + "/unit/nope/c1/1")
    dash_duo.wait_for_contains_text("#unit-error", "no run 'nope'", timeout=20)

    dash_duo.driver.get(dash_duo.server_url + "/compare?a=lenet5-a&b=lenet5-b")
    dash_duo.wait_for_contains_text("#compare-table", "units [lenet5-b]", timeout=20)
    table = dash_duo.find_element("#compare-table").text
    for layer in ("c1", "s2", "c3", "s4", "c5"):
        assert layer in table
    dash_duo.wait_for_element("#compare-figure")
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
def test_unit_labels_and_masks_in_the_browser(dash_duo, dissected: Path) -> None:
    """Pick a layer, filter the grid by category, open a unit: its concept and masks show."""
    import probe
    from probe.dashboards import create_app

    units = probe.load_run(dissected / "ref").table("dissection", "units")
    conv1 = units[units.layer == "conv1"].sort_values("unit")
    labelled = conv1[conv1["name"] != ""].iloc[0]
    dash_duo.start_server(create_app(dissected))
    dash_duo.driver.get(dash_duo.server_url + "/units?run=ref&layer=conv1")
    dash_duo.wait_for_contains_text("#units-count", f"{len(conv1)} units in conv1", timeout=20)
    category = labelled["category"]
    filter_cell = dash_duo.find_element("#units-table th.dash-filter[data-dash-column='category'] "
                                        "input")
    filter_cell.send_keys(category + "\n")
    want = conv1[conv1["category"].str.contains(category)]
    dash_duo.wait_for_text_to_equal("#units-table tbody tr:last-child td[data-dash-column="
                                    "'unit']", str(int(want["unit"].iloc[min(len(want), 25) - 1])),
                                    timeout=20)
    cells = [e.text for e in dash_duo.find_elements("#units-table td[data-dash-column="
                                                    "'category']")]
    assert cells and all(c == category for c in cells)

    dash_duo.driver.get(dash_duo.server_url + f"/units?run=ref&layer=conv1&category={category}")
    dash_duo.wait_for_text_to_equal("#units-table tbody tr:last-child td[data-dash-column="
                                    "'unit']", str(int(want["unit"].iloc[min(len(want), 25) - 1])),
                                    timeout=20)  # the link a hierarchy bar opens

    dash_duo.driver.get(dash_duo.server_url + f"/unit/ref/conv1/{int(labelled['unit'])}")
    dash_duo.wait_for_contains_text("#unit-best-label", f"best: {labelled['name']} ({category})",
                                    timeout=20)
    assert len(dash_duo.find_elements("#unit-masks img")) >= 1
    assert len(dash_duo.find_elements("#unit-exemplars img")) == 8
    dash_duo.wait_for_element("#unit-concepts .main-svg")
    assert dash_duo.get_logs() == []


#: An artifact that tries to act in the dashboard's origin when opened.
EVIL_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"
 onload="localStorage.setItem('probe-xss', 'onload')">
<script>localStorage.setItem('probe-xss', 'script'); document.title = 'probe-xss';</script>
<rect width="10" height="10" fill="red"/></svg>"""


def test_pages_render_under_the_csp_and_artifact_scripts_never_run(dash_duo,
                                                                     runs_dir: Path) -> None:
    """The app's CSP leaves Dash and plotly working; an SVG artifact's script does not run."""
    import time

    from probe.dashboards import create_app

    (runs_dir / "lenet5-a" / "unit-stats" / "evil.svg").write_text(EVIL_SVG)
    dash_duo.start_server(create_app(runs_dir))
    driver = dash_duo.driver
    dash_duo.wait_for_contains_text("#runs-table", "lenet5-a", timeout=20)
    driver.get(dash_duo.server_url + "/layers?run=lenet5-a")
    dash_duo.wait_for_element("#layers-activation .main-svg", timeout=20)  # plotly draws
    dash_duo.wait_for_contains_text("#layers-summary", "c3", timeout=20)
    assert driver.execute_script("return localStorage.getItem('probe-xss')") is None
    assert dash_duo.get_logs() == []  # no CSP violation while Dash and plotly work

    driver.get(dash_duo.server_url + "/files/lenet5-a/unit-stats/evil.svg")
    time.sleep(1.0)  # give a script every chance to run
    assert "probe-xss" not in (driver.title or "")
    driver.get(dash_duo.server_url + "/")
    dash_duo.wait_for_contains_text("#runs-table", "lenet5-a", timeout=20)
    assert driver.execute_script("return localStorage.getItem('probe-xss')") is None

    # the app's own pages refuse a script that was injected into them
    ran = driver.execute_script("""
        window.probeInjected = false;
        const s = document.createElement('script');
        s.textContent = 'window.probeInjected = true;';
        document.body.appendChild(s);
        return window.probeInjected;""")
    assert ran is False
