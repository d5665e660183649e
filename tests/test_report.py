"""probe report: self-contained HTML, one section per analysis, browser and PDF checks."""

from __future__ import annotations

import base64
import io
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
from probe.report.exemplars import overlay
from probe.report.hierarchy import detector_counts
from probe.report.tables import layer_summary
from probe.store import RunStore, load_run

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
                if tag == "section" and "analysis" in (a.get("class") or "").split()]
    expected = [(r.name, n) for r in (trained, untrained) for n in r.analyses
                if r.analysis_status(n) == "complete"]
    assert sorted(sections) == sorted(expected)
    assert ("trained", AlwaysFails.name) not in sections
    assert trained.analysis_status(AlwaysFails.name) == "failed"
    assert "deliberate failure" in text
    assert "third-party layer means" in text  # the plugin's own figure function drew it


def test_comparison_and_exemplars(report, runs):
    _, text = report
    page = _parse(text)
    assert any(tag == "section" and a.get("id") == "comparison" for tag, a in page.tags)
    images = [a["src"] for tag, a in page.tags if tag == "img"]
    assert len(images) >= 7 * 2  # 7 layers × 2 runs, at least one unit each
    from PIL import Image

    first = Image.open(io.BytesIO(base64.b64decode(images[0].split(",", 1)[1])))
    assert first.height == 64 and first.width == 4 * 64 + 3 * 3  # four 64-px tiles, 3-px gaps
    # the untrained run's sidecar-free checkpoint column says "none"
    assert "lenet5.safetensors" in text and ">none<" in text


def test_uninstalled_analysis_falls_back_to_tables(runs, tmp_path):
    _, trained, _ = runs
    reset_host()  # the third-party plugin is gone
    try:
        text = build_report([trained.path], tmp_path / "r.html").read_text()
    finally:
        reset_host()
        get_host().add_plugin(_Plugin(), "report-test-plugin")
    assert f"the plugin that provides analysis {LayerMean.name!r} is not installed" \
        .replace("'", "&#x27;") in text
    assert "table layer_means" in text and "c5" in text


def test_layer_summary_numbers():
    frame = pd.DataFrame({"layer": ["b", "a", "a", "b", "b"], "unit": [0, 0, 1, 1, 2],
                          "iou": [0.1, 0.2, 0.4, 0.3, 0.5],
                          "detector": [False, True, True, False, True],
                          "map": [np.zeros(2)] * 5})
    summary = layer_summary(frame, layer_order=["a", "b"])
    assert list(summary["layer"]) == ["a", "b"]
    assert list(summary["rows"]) == [2, 3]
    assert summary["mean iou"].tolist() == pytest.approx([0.3, 0.3])
    assert summary["share detector"].tolist() == pytest.approx([1.0, 1 / 3])
    assert "map" not in " ".join(summary.columns)


def test_detector_counts_from_a_per_unit_table(tmp_path):
    store = RunStore(tmp_path / "run")
    units = pd.DataFrame({
        "layer": ["l1"] * 4 + ["l2"] * 4, "unit": [0, 1, 2, 3] * 2,
        "category": ["color", "color", "part", "part", "part", "object", "object", "object"],
        "label": ["red", "red", "wheel", "eye", "wheel", "car", "car", "face"],
        "iou": [0.2, 0.1, 0.05, 0.01, 0.3, 0.2, 0.1, 0.03],
        "detector": [True, True, True, False, True, True, True, False]})
    store.write_table("dissection", "units", units)
    store.manifest = {"status": "complete", "layers": ["l1", "l2"],
                      "analyses": {"dissection": {"status": "complete", "tables": ["units"]}}}
    store.save_manifest()
    counts = detector_counts(load_run(store.path))
    got = {(r.layer, r.category): (r.detectors, r.unique_concepts)
           for r in counts.itertuples()}
    assert got == {("l1", "color"): (2, 1), ("l1", "part"): (1, 1),
                   ("l2", "part"): (1, 1), ("l2", "object"): (2, 1)}
    assert list(dict.fromkeys(counts["layer"])) == ["l1", "l2"]


def test_overlay_colours_only_active_pixels():
    image = np.full((8, 8, 3), 0.5, dtype=np.float32)
    activation = np.zeros((2, 2), dtype=np.float32)
    activation[0, 0] = 2.0
    out = overlay(image, activation, scale=2.0, size=8)
    assert out.shape == (8, 8, 3)
    np.testing.assert_allclose(out[7, 7], [0.5, 0.5, 0.5], atol=1e-6)  # zero activation
    assert out[0, 0, 0] > 0.5 and out[0, 0, 1] < 0.5  # full activation: towards red


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
        assert (pixels < 128).mean() > 0.002, f"{page.name} has almost no ink"


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
def test_report_of_a_real_dissection_run_has_hierarchy_and_mask_exemplars(tmp_path):
    run = probe.analyze("vgg11", "parts", ["dissection"], out=tmp_path / "vgg",
                        arch_options={"width": 0.125, "fc_width": 32},
                        dataset_options={"size": 16},
                        analysis_options={"dissection": {"ablation_images": 4,
                                                         "max_ablations": 2}},
                        batch_size=16)
    assert run.status == "complete"
    counts = detector_counts(run)
    summary = run.table("dissection", "summary")
    assert counts["detectors"].sum() == summary["detectors"].sum()
    assert list(dict.fromkeys(counts["layer"])) == \
        [x for x in run.manifest["layers"] if x in set(summary["layer"])]
    text = build_report([run.path], tmp_path / "r.html").read_text()
    assert 'class="hierarchy"' in text and "detectors per layer and category" in text
    units = run.table("dissection", "units")
    best = units.sort_values("iou", ascending=False).iloc[0]
    assert f"unit {best['unit']}: {best['name']} ({best['category']}), IoU {best['iou']:.3f}" \
        in text  # exemplars labelled by the dissection's own best concept


def test_comparison_measures_skip_parameters():
    from probe.report.compare import measure_column

    errors = pd.DataFrame({"layer": ["a"], "transform": ["hflip"], "magnitude": [1.0],
                           "unit": [0], "pixels": [2.0], "relative_error": [0.3]})
    assert measure_column(errors) == "relative_error"
    components = pd.DataFrame({"layer": ["a"], "index": [0], "order": [1], "variance": [0.5]})
    assert measure_column(components) == "variance"
    assert measure_column(pd.DataFrame({"unit": [0], "iou": [0.1]})) is None
