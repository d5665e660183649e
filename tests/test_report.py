"""probe report: self-contained HTML, one section per analysis, browser and PDF checks."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import probe
from probe import Accumulator, Analysis, hookimpl
from probe.host import get_host, reset_host
from probe.report import build_report, print_pdf
from probe.store import RunStore, load_run
from probe.views import RunView

CHROMIUM = shutil.which("chromium")


# -- a third-party analysis (with figures) and one that always fails ----------------------
class _MeanAccumulator(Accumulator):
    def __init__(self, layers: list[str], device) -> None:
        self.layers = layers
        self.add_state("sums", {layer: torch.zeros((), dtype=torch.float64, device=device)
                                for layer in layers}, "sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64, device=device), "sum")

    def update(self, batch):
        for layer in self.layers:
            self.sums[layer] += batch.activations[layer].double().mean() * len(batch.images)
        self.count += len(batch.images)

    def finalize(self, context):
        return {"layer_means": pd.DataFrame({
            "layer": self.layers,
            "mean": [float(self.sums[x] / self.count) for x in self.layers]})}


class LayerMean(Analysis):
    """Mean activation per layer (a third-party analysis, for the report tests)."""

    name = "thirdparty-layer-mean"
    description = "mean activation per layer"
    tables = {"layer_means": ("layer", "mean")}

    def accumulator(self, context):
        return _MeanAccumulator(list(context.layers), context.device)

    @classmethod
    def figures(cls, tables):
        import plotly.graph_objects as go

        frame = tables["layer_means"]
        return [go.Figure(go.Bar(x=frame["layer"], y=frame["mean"]),
                          layout={"title": "third-party layer means"})]


class _Broken(Accumulator):
    def update(self, batch):
        raise RuntimeError("deliberate failure")

    def finalize(self, context):
        return {}


class AlwaysFails(Analysis):
    """Fails on its first batch."""

    name = "thirdparty-always-fails"

    def accumulator(self, context):
        return _Broken()


class _Plugin:
    @hookimpl
    def probe_register_analyses(self, register):
        register(LayerMean)
        register(AlwaysFails)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two real runs of LeNet-5 on digits: one trained 2 epochs, one untrained."""
    reset_host()
    get_host().add_plugin(_Plugin(), "report-test-plugin")
    root = tmp_path_factory.mktemp("report")
    from probe.training import train

    checkpoint = root / "lenet5.safetensors"
    train("lenet5", checkpoint, epochs=2, dataset_options={"size": 256}, progress=False)
    trained = probe.analyze("lenet5", "digits", ["unit-stats", LayerMean.name, AlwaysFails.name],
                            out=root / "runs" / "trained", checkpoint=checkpoint,
                            dataset_options={"size": 96}, batch_size=48)
    untrained = probe.analyze("lenet5", "digits", ["unit-stats", LayerMean.name],
                              out=root / "runs" / "untrained", dataset_options={"size": 96},
                              batch_size=48)
    yield root, trained, untrained
    reset_host()


@pytest.fixture(scope="module")
def report(runs):
    root, trained, untrained = runs
    path = build_report([trained.path, untrained.path], root / "out" / "report.html")
    return path, path.read_text()


class _Collector(HTMLParser):
    """Every tag with its attributes, the text of each <script>, and inline styles."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.styles: list[str] = []
        self._script: dict[str, str | None] | None = None
        self._buffer: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "script":
            self._script, self._buffer = attributes, []
        if tag == "style":
            self._in_style = True
        if "style" in attributes:
            self.styles.append(attributes["style"] or "")

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script, "".join(self._buffer)))
            self._script = None
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._script is not None:
            self._buffer.append(data)
        elif self._in_style:
            self.styles.append(data)


def _parse(text: str) -> _Collector:
    collector = _Collector()
    collector.feed(text)
    collector.close()
    return collector


def test_report_has_no_external_reference(report):
    _, text = report
    page = _parse(text)
    url_attributes = ("src", "href", "action", "srcset", "poster", "data", "formaction",
                      "background", "xlink:href")
    for tag, attrs in page.tags:
        for name in url_attributes:
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("data:", "#")), f"<{tag} {name}={value[:60]!r}>"
        assert tag not in ("link", "iframe", "object", "embed", "base"), tag
    for attrs, _ in page.scripts:
        assert "src" not in attrs
    for style in page.styles:
        for target in re.findall(r"url\(\s*['\"]?([^'\")]*)", style):
            assert target.startswith(("data:", "#")), target
        assert "@import" not in style
    bundles = [body for attrs, body in page.scripts if attrs.get("id") == "plotly-js"]
    assert len(bundles) == 1 and "Plotly" in bundles[0] and len(bundles[0]) > 1_000_000
    assert text.count("plotly.js v") == bundles[0].count("plotly.js v")  # inlined once
    outside = text.replace(bundles[0], "")
    assert "http" not in outside.lower()


def test_one_section_per_completed_analysis(report, runs):
    _, text = report
    _, trained, untrained = runs
    sections = [(a.get("data-run"), a.get("data-analysis")) for tag, a in _parse(text).tags
                if tag == "div" and "analysis" in (a.get("class") or "").split()]
    expected = [(r.name, n) for r in (trained, untrained) for n in r.analyses
                if r.analysis_status(n) == "complete"]
    assert sorted(sections) == sorted(expected)
    assert ("trained", AlwaysFails.name) not in sections
    assert trained.analysis_status(AlwaysFails.name) == "failed"
    assert "deliberate failure" in text
    assert "third-party layer means" in text  # the plugin's own figure function drew it
    # every per-layer section is headed with its analysis and layer
    heads = re.findall(r'data-analysis="unit-stats" data-layer="(\w+)"><h4>([^<]+)</h4>', text)
    assert heads and all(title == f"unit-stats · {layer}" for layer, title in heads)


def test_summary_page_comes_first_with_each_analysis_headlines(report, runs):
    _, text = report
    _, trained, _ = runs
    start = text.index('<section class="summary" id="run-0-trained">')
    summary = text[start:text.index("</section>", start)]
    units = trained.table("unit-stats", "units")
    assert f"{len(units)}</span>" in summary  # unit-stats: units analysed
    assert "test accuracy" in summary and "%" in summary  # the checkpoint's own accuracy
    assert "thirdparty-always-fails did not complete (failed): RuntimeError: deliberate" \
        in summary
    assert text.index(summary) < text.index('data-run="trained" data-analysis="unit-stats"')


def test_comparison_and_exemplars(report, runs):
    _, text = report
    _, trained, _ = runs
    page = _parse(text)
    assert any(tag == "section" and a.get("id") == "comparison" for tag, a in page.tags)
    images = [a["src"] for tag, a in page.tags if tag == "img"]
    strips = re.findall(r'<img alt="unit \d+, top activation [0-9.]+"', text)
    layers = len(trained.manifest["layers"])
    assert len(strips) >= 2 * layers and len(images) >= len(strips)  # both runs, every layer
    assert all(src.startswith("data:image/png;base64,") for src in images)
    # the comparison matches layers and says the difference
    assert "difference" in text and "lenet5.safetensors" in text
    assert "untrained (initial weights)" in text


def test_uninstalled_analysis_is_named_and_its_tables_attached(runs, tmp_path):
    _, trained, _ = runs
    reset_host()  # the third-party plugin is gone
    try:
        text = build_report([trained.path], tmp_path / "r.html").read_text()
    finally:
        reset_host()
        get_host().add_plugin(_Plugin(), "report-test-plugin")
    assert f"the plugin that provides analysis {LayerMean.name!r} is not installed" \
        .replace("'", "&#x27;") in text
    link = re.search(rf'download="trained-{LayerMean.name}-layer_means.csv" '
                     r'href="data:text/csv;base64,([^"]+)"', text)
    csv = base64.b64decode(link.group(1)).decode()
    assert csv.splitlines()[0] == "layer,mean"
    table = trained.table(LayerMean.name, "layer_means")
    assert len(csv.splitlines()) == len(table) + 1 and "c5" in csv


def test_default_layer_summary_means_floats_shares_booleans_and_skips_counts(tmp_path):
    class Declared(Analysis):
        name = "declared"
        tables = {"units": ("layer", "unit", "score", "selective", "count"),
                  "top": ("layer", "unit", "rank", "value")}

        def accumulator(self, context):  # pragma: no cover - never run
            raise NotImplementedError

    store = RunStore(tmp_path / "run")
    store.write_table("declared", "units", pd.DataFrame({
        "layer": ["b", "a", "a", "b", "b"], "unit": [0, 0, 1, 1, 2],
        "score": [0.1, 0.2, 0.4, 0.3, 0.5], "selective": [False, True, True, False, True],
        "count": [3, 4, 5, 6, 7]}))
    store.write_table("declared", "top", pd.DataFrame({"layer": ["a"], "unit": [0], "rank": [0],
                                                       "value": [9.0]}))
    store.manifest = {"status": "complete", "layers": ["a", "b"],
                      "analyses": {"declared": {"status": "complete",
                                                "tables": ["top", "units"]}}}
    store.save_manifest()
    summary = Declared.layer_summary(RunView(load_run(store.path))).frame
    assert list(summary["layer"]) == ["b", "a"] or list(summary["layer"]) == ["a", "b"]
    rows = summary.set_index("layer")
    assert rows.loc["a", "mean score"] == pytest.approx(0.3)
    assert rows.loc["b", "mean score"] == pytest.approx(0.3)
    assert rows.loc["b", "share selective"] == pytest.approx(1 / 3)
    assert list(rows.columns) == ["mean score", "share selective"]  # no count, no top/value


def _dump_dom(html: Path) -> tuple[str, str]:
    profile = tempfile.mkdtemp(prefix="probe-test-chromium-")
    try:
        result = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-quic", "--no-first-run", f"--user-data-dir={profile}",
             "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom",
             html.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return result.stdout, result.stderr


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")
def test_report_runs_in_chromium_without_script_errors(report, tmp_path):
    path, text = report
    # the detector itself: a page with a script error is caught
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>notDefinedAnywhere();</script></body></html>")
    _, err = _dump_dom(bad)
    assert "Uncaught" in err
    dom, err = _dump_dom(path)
    assert "Uncaught" not in err, [x for x in err.splitlines() if "Uncaught" in x]
    figures = text.count('<div class="figure"')
    assert figures >= 5
    assert dom.count('class="plot-container plotly"') == figures  # every figure was drawn


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None or shutil.which("pdftoppm") is None,
                    reason="needs chromium and pdftoppm (apt-get install chromium poppler-utils)")
def test_pdf_pages_are_not_blank(report, tmp_path):
    from PIL import Image

    path, _ = report
    pdf = print_pdf(path, tmp_path / "report.pdf")
    assert pdf.read_bytes().startswith(b"%PDF")
    subprocess.run(["pdftoppm", "-r", "30", "-png", str(pdf), str(tmp_path / "page")],
                   check=True, timeout=120)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 3
    for page in pages:
        pixels = np.asarray(Image.open(page).convert("L"), dtype=np.float64)
        assert pixels.std() > 3.0, f"{page.name} is blank (std {pixels.std():.2f})"
        assert (pixels < 128).mean() > 0.001, f"{page.name} has almost no ink"


def test_cli_without_chromium_says_so_and_keeps_html(runs, tmp_path, monkeypatch, capsys):
    from probe.cli import main

    _, trained, _ = runs
    monkeypatch.setenv("PROBE_CHROMIUM", "")
    out = tmp_path / "cli.html"
    code = main(["report", str(trained.path), "-o", str(out), "--pdf"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "needs Chromium" in err[0] and "HTML report was written" in err[0]
    assert out.is_file() and not out.with_suffix(".pdf").exists()


def test_cli_expands_a_folder_of_runs(runs, tmp_path, capsys):
    from probe.cli import main

    root, _, _ = runs
    out = tmp_path / "all.html"
    assert main(["report", str(root / "runs"), "-o", str(out)]) == 0
    text = out.read_text()
    assert 'id="comparison"' in text and "Run trained" in text and "Run untrained" in text
    assert main(["report", str(tmp_path / "nothing"), "-o", str(out)]) == 2
    assert "not a probe run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_report_of_a_real_dissection_run_draws_the_hierarchy_once(tmp_path):
    run = probe.analyze("vgg11", "parts", ["dissection"], out=tmp_path / "vgg",
                        arch_options={"width": 0.125, "fc_width": 32},
                        dataset_options={"size": 16},
                        analysis_options={"dissection": {"ablation_images": 4,
                                                         "max_ablations": 2}},
                        batch_size=16)
    assert run.status == "complete"
    text = build_report([run.path], tmp_path / "r.html").read_text()
    assert text.count("share of units detecting each category") == 1
    units = run.table("dissection", "units")
    detectors = units[units["is_detector"]]
    assert f"{len(detectors)}</span>" in text  # the summary page's detector count
    best = detectors.sort_values("iou", ascending=False)
    if not best.empty:  # the best detector's thumbnail is on the summary page
        top = best.iloc[0]
        assert f"{top['layer']} · unit {int(top['unit'])} · {top['name']}" in text
    assert "too noisy to trust" in text  # 16 images: the warning says so
