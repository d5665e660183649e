"""A third-party analysis appears exactly as a built-in does: dashboard pages and report.

``examples/probe-sparsity`` (written against the documented hooks alone) is run
next to unit-stats on two models; its section must be on the unit page, the
layer detail, the compare page and in the report (HTML and PDF pages), headed
with the analysis and the layer, with sortable tables and its figures, the
same way unit-stats' is. Checked in headless Chromium.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import probe
from probe.host import get_host, reset_host

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "probe-sparsity"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

import probe_sparsity  # noqa: E402

ANALYSES = ("unit-stats", "sparsity")


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LeNet-5 and the strided reference CNN, each with unit-stats and sparsity."""
    reset_host()
    if "sparsity" not in get_host().analyses:  # not installed: register the source itself
        get_host().add_plugin(probe_sparsity, "sparsity")
    root = tmp_path_factory.mktemp("parity")
    probe.analyze("lenet5", "digits", list(ANALYSES), out=root / "lenet",
                  dataset_options={"size": 32}, batch_size=16)
    probe.analyze("lenet5", "digits", list(ANALYSES), out=root / "lenet-b", seed=1,
                  dataset_options={"size": 32}, batch_size=16)
    yield root
    reset_host()


def _sections(driver, selector: str) -> dict[str, object]:
    return {e.get_attribute("data-analysis"): e
            for e in driver.find_elements("css selector", selector)}


@pytest.mark.browser
def test_sparsity_is_shown_like_a_built_in_in_the_browser(dash_duo, runs_dir: Path) -> None:
    from probe.dashboards import create_app

    dash_duo.start_server(create_app(runs_dir))
    driver = dash_duo.driver

    driver.get(dash_duo.server_url + "/unit/lenet/c3/2")
    dash_duo.wait_for_text_to_equal("#unit-title", "lenet · c3 · unit 2", timeout=30)
    for name in ANALYSES:  # each section comes in its own slot
        dash_duo.wait_for_element(f"#unit-{name}", timeout=30)
    sections = _sections(driver, "section.view-section")
    assert set(ANALYSES) <= set(sections)
    for name in ANALYSES:
        heading = sections[name].find_element("css selector", "h3").text
        assert heading == f"{name} · c3 · unit 2"
    units = probe.load_run(runs_dir / "lenet").table("sparsity", "units")
    quiet = units.query("layer == 'c3' and unit == 2")["fraction_quiet"].iloc[0]
    assert f"{quiet * 100:.1f}%" in sections["sparsity"].text  # its Facts, formatted

    driver.get(dash_duo.server_url + "/layers?run=lenet&layer=c3")
    dash_duo.wait_for_element("#layer-sparsity-c3 .main-svg", timeout=30)  # its histogram
    dash_duo.wait_for_element("#layer-unit-stats-c3", timeout=30)
    for name in ANALYSES:
        dash_duo.wait_for_element(f"#layer-{name}-c3", timeout=30)
    detail = _sections(driver, "#layers-detail section.view-section")
    for name in ANALYSES:
        assert detail[name].find_element("css selector", "h4").text == f"{name} · c3"
        grid = detail[name].find_elements("css selector", ".ag-root")  # AG Grid tables
        assert grid, name
    header = detail["sparsity"].find_element("css selector", ".ag-header-cell[col-id='unit']")
    header.click()  # sortable: clicking the header sorts
    dash_duo.wait_for_element("#layer-sparsity-c3 .ag-header-cell[col-id='unit'] "
                              ".ag-sort-ascending-icon:not(.ag-hidden)", timeout=10)
    dash_duo.wait_for_element("#layers-sparsity .main-svg", timeout=30)  # its run-level figure
    summary = driver.find_element("css selector", "#table-layers-summary").text
    assert "quiet share" in summary.lower() or "fraction quiet" in summary.lower()

    driver.get(dash_duo.server_url + "/compare?a=lenet&b=lenet-b")
    dash_duo.wait_for_element("#compare-sparsity .main-svg", timeout=30)
    dash_duo.wait_for_element("#compare-unit-stats .main-svg", timeout=30)
    assert driver.find_element("css selector", "#compare-sparsity h3").text == \
        "sparsity: lenet vs lenet-b"

    driver.get(dash_duo.server_url + "/units?run=lenet&layer=c3")
    dash_duo.wait_for_contains_text("#units-count", "16 units of 16 in c3", timeout=30)
    dash_duo.wait_for_contains_text("#units-table", "quiet share", timeout=30)
    dash_duo.wait_for_element("#units-table .ag-row a[href='/unit/lenet/c3/0']", timeout=30)
    assert dash_duo.get_logs() == []


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None or shutil.which("pdftotext") is None,
                    reason="needs chromium and poppler-utils")
def test_sparsity_is_in_the_report_and_on_its_pdf_pages(runs_dir: Path, tmp_path: Path) -> None:
    from probe.report import build_report, print_pdf

    html = build_report([runs_dir / "lenet", runs_dir / "lenet-b"], tmp_path / "r.html")
    text = html.read_text()
    from probe.views.hooks import REPORT_LAYERS, representative

    shown = representative(probe.load_run(runs_dir / "lenet").manifest["layers"], REPORT_LAYERS)
    assert shown[0] == "c1" and len(shown) == REPORT_LAYERS
    for name in ANALYSES:
        for layer in shown:
            assert f'data-analysis="{name}" data-layer="{layer}"><h4>{name} · {layer}</h4>' \
                in text, (name, layer)
    assert 'data-run="lenet" data-analysis="sparsity"' in text
    assert '<div class="compare" data-analysis="sparsity">' in text
    assert "sparsity: dead units" in text  # its headline on the summary page
    pdf = print_pdf(html, tmp_path / "r.pdf")
    pages = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                           text=True, check=True, timeout=120).stdout.split("\f")
    with_sparsity = [i for i, page in enumerate(pages) if "sparsity · c1" in page]
    with_stats = [i for i, page in enumerate(pages) if "unit-stats · c1" in page]
    assert len(with_sparsity) == len(with_stats) == 2  # one section per run, like unit-stats
    assert any("quiet share" in page for page in pages)
