"""probe demo: the reduced demo end to end, checkpoint caching, data-driven model list."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

import probe
from probe.demo import (
    DEMO_MODELS,
    LENSES,
    VGG_LENS_LAYERS,
    applicable_analyses,
    checkpoint_key,
    run_demo,
    spread_layers,
)
from probe.demo_clock import DemoClock, describe_left
from probe.errors import ProbeError
from probe.runfile import RunRequest


def test_spread_layers_keeps_first_and_last_evenly():
    names = [f"l{i}" for i in range(20)]
    assert spread_layers(names, 10) == ["l0", "l2", "l4", "l6", "l8", "l11", "l13", "l15",
                                        "l17", "l19"]
    assert spread_layers(names, 0) == names and spread_layers(names[:3], 5) == names[:3]
    assert spread_layers(names, 1) == ["l19"]


def test_checkpoint_key_changes_with_what_the_weights_depend_on():
    model = DEMO_MODELS[0]
    key = checkpoint_key(model)
    assert key == checkpoint_key(replace(model, run="renamed", run_size=7))  # not training
    assert key != checkpoint_key(replace(model, epochs=model.epochs + 1))
    assert key != checkpoint_key(replace(model, train_size=100))
    assert key != checkpoint_key(replace(model, arch_options={"activation": "relu"}))
    assert key != checkpoint_key(model, seed=1)


def test_analyses_that_do_not_apply_are_left_out_with_a_reason():
    lenet = next(m for m in DEMO_MODELS if m.dataset == "digits")
    chosen, notes = applicable_analyses(replace(lenet, analyses=("unit-stats", "dissection",
                                                                  "no-such-analysis")))
    assert chosen == ["unit-stats"]
    assert notes == ["dissection: needs concept masks, digits has none",
                     "no-such-analysis: not installed"]


@pytest.mark.slow
def test_quick_demo_end_to_end_then_cached(tmp_path):
    lines: list[str] = []
    result = run_demo(tmp_path / "demo", fast=True, pdf=False, progress=False,
                      echo=lines.append)
    quick_models = [m for m in DEMO_MODELS if m.in_quick]
    assert not result.failed, result.failed
    assert [p.name for p in result.runs] == [m.run for m in quick_models]
    for model, path in zip(quick_models, result.runs, strict=True):
        run = probe.load_run(path)
        chosen, _ = applicable_analyses(model)
        assert run.status == "complete" and run.analyses == chosen
        assert run.manifest["dataset"]["size"] == 24
        for lens in set(LENSES) & set(run.analyses):  # on the chosen layers only
            units = run.table(lens, next(iter(run.manifest["analyses"][lens]["tables"])))
            assert set(units["layer"]) == set(VGG_LENS_LAYERS), lens
    text = result.report.read_text()
    for path in result.runs:
        run = probe.load_run(path)
        for name in run.analyses:
            assert f'data-run="{run.name}" data-analysis="{name}"' in text
    assert 'id="comparison"' in text
    if any(m.dataset == "parts" for m in quick_models):
        # dissection ran on the parts world: its hierarchy chart, once per dissected run
        dissected = [p for p in result.runs if "dissection" in probe.load_run(p).analyses]
        assert text.count("share of units detecting each category") == len(dissected) > 0
    assert any("trained" in line for line in lines)
    # the first model is analysed and reported before the second one trains
    first_report = next(i for i, line in enumerate(lines) if "report " in line and
                        "with 1 of 2 runs" in line)
    assert first_report < next(i for i, line in enumerate(lines) if line.startswith("[2/2]"))
    assert result.first_report is not None and result.first_report < result.seconds["total"]
    # every training step says what is left: "(about 4 min left)", or "(almost done)"
    # on a machine fast enough that under 5 s remain
    training = [line for line in lines if ": training " in line]
    assert training and all(re.search(r"\((about \d+ (s|min) left|almost done)\)$", line)
                            for line in training), training
    stamps = {p: (p / "manifest.json").stat().st_mtime_ns for p in result.runs}

    again: list[str] = []
    second = run_demo(tmp_path / "demo", fast=True, pdf=False, progress=False,
                      echo=again.append)
    assert sum("cached checkpoint" in line for line in again) == len(quick_models)
    assert sum("skipped (complete)" in line for line in again) == len(quick_models)
    assert {p: (p / "manifest.json").stat().st_mtime_ns for p in second.runs} == stamps


def test_models_go_cheapest_first_with_estimates():
    costs = [sum(m.estimate) for m in DEMO_MODELS]
    assert costs == sorted(costs) and all(c > 0 for c in costs)


def test_time_left_is_rescaled_by_the_measured_speed():
    clock = DemoClock()
    for step, seconds in (("a", 10.0), ("b", 100.0), ("c", 0.0)):
        clock.add(step, seconds)
    assert clock.seconds_left() == 110 and clock.left() == "about 2 min left"
    clock.done("c", 0.0)  # a cached step says nothing about the speed
    assert clock.factor == 1.0
    clock.done("a", 20.0)  # twice as slow as estimated
    assert clock.factor == 2.0 and clock.left() == "about 3 min left"
    assert [describe_left(s) for s in (2, 12, 44, 70, 600)] == [
        "almost done", "about 10 s left", "about 40 s left", "about 1 min left",
        "about 10 min left"]


def test_each_model_is_reported_as_soon_as_it_ran_and_a_failure_does_not_stop_the_rest(
        tmp_path, monkeypatch):
    import probe.demo_steps as steps
    import probe.report
    import probe.sweep

    def ensure(model, cache, **_):
        if model.arch == "vgg11_bn":
            raise ProbeError("no room on the device")
        return cache / f"{model.arch}.safetensors", False

    def request(model, checkpoint, runs, analyses, device, fast=False):
        return RunRequest(arch=model.arch, analyses=analyses, out=runs / model.run,
                          label=model.run)

    reports: list[list[str]] = []

    def report(runs, out, title=None):
        reports.append([Path(r).name for r in runs])
        return Path(out)

    monkeypatch.setattr(steps, "ensure_checkpoint", ensure)
    monkeypatch.setattr(steps, "run_request", request)
    monkeypatch.setattr(probe.sweep, "run_one", lambda r, progress: probe.sweep.Outcome(
        r, "complete", "complete (1.0 s)", 1.0))
    monkeypatch.setattr(probe.report, "build_report", report)
    lines: list[str] = []
    result = run_demo(tmp_path / "d", pdf=False, progress=False, echo=lines.append)
    names = [m.run for m in DEMO_MODELS]
    k, n = next(i for i, m in enumerate(DEMO_MODELS) if m.arch == "vgg11_bn"), len(names)
    assert result.failed == [f"{names[k]}: training failed: no room on the device"]
    ran = [name for name in names if name != names[k]]
    assert [p.name for p in result.runs] == ran
    # a report after every model that ran, the last one with every run
    assert reports == [ran[:i + 1] for i in range(len(ran))]
    assert lines[0] == f"[1/{n}] {names[0]}: training lenet5 on digits " \
        f"({lines[0].rsplit('(', 1)[1]}"
    assert lines[0].endswith(" left)") and any(
        line.startswith(f"[1/{n}] {names[0]}: report ") and f"with 1 of {n} runs" in line
        for line in lines)
    assert f"[{k + 1}/{n}] {names[k]}: training failed: no room on the device" in lines
    assert result.first_report is not None and result.report == tmp_path / "d" / "report.html"


def test_cli_prints_how_to_open_the_dashboard(tmp_path, capsys, monkeypatch):
    import probe.demo as demo
    from probe.cli import main

    def fake(out, **kwargs):
        return demo.DemoResult(out, report=out / "report.html", seconds={"total": 1.0})

    monkeypatch.setattr(demo, "run_demo", fake)
    assert main(["demo", "--out", str(tmp_path / "d"), "--quick", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"open the dashboard: probe dash {tmp_path / 'd' / 'runs'}" in out
    assert f"report: {tmp_path / 'd' / 'report.html'}" in out
