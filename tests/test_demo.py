"""probe demo: the reduced demo end to end, checkpoint caching, data-driven model list."""

from __future__ import annotations

from dataclasses import replace

import pytest

import probe
from probe.demo import (
    DEMO_MODELS,
    applicable_analyses,
    checkpoint_key,
    run_demo,
    spread_layers,
)


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
    text = result.report.read_text()
    for path in result.runs:
        run = probe.load_run(path)
        for name in run.analyses:
            assert f'data-analysis="{name}" data-run="{run.name}"' in text
    assert 'id="comparison"' in text
    if any(m.dataset == "parts" for m in quick_models):
        assert "Hierarchy of parts" in text  # dissection ran on the parts world
    assert any("trained" in line for line in lines)
    stamps = {p: (p / "manifest.json").stat().st_mtime_ns for p in result.runs}

    again: list[str] = []
    second = run_demo(tmp_path / "demo", fast=True, pdf=False, progress=False,
                      echo=again.append)
    assert sum("cached checkpoint" in line for line in again) == len(quick_models)
    assert sum("skipped (complete)" in line for line in again) == len(quick_models)
    assert {p: (p / "manifest.json").stat().st_mtime_ns for p in second.runs} == stamps


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
