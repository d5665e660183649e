"""Sweeps: grid expansion, skipping finished runs, resuming after a kill or a failure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import probe
from probe.errors import ProbeError
from probe.runfile import expand_sweep, load_runfile
from probe.sweep import is_finished, run_sweep


def _lenet_checkpoint(path: Path, seed: int = 0) -> Path:
    from probe.api import load_model
    from probe.checkpoint import save_checkpoint

    model = load_model("lenet5", seed=seed)
    options = {"num_classes": 10, "in_channels": 1, "input_size": 32, "activation": "tanh",
               "c3_table": False}
    return save_checkpoint(model, path, "lenet5", options)


def _mtimes(run_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(run_dir)): p.stat().st_mtime_ns
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def _status(run_dir: Path) -> str | None:
    from probe.store import RunStore

    manifest = RunStore(run_dir).read_manifest()
    return None if manifest is None else manifest.get("status")


# -- grid expansion ---------------------------------------------------------------------
def test_sweep_expands_the_product_in_order_with_templates():
    runs = expand_sweep({"arch": ["a1", "a2"], "checkpoint": ["ck/{arch}-x.st", "none"],
                         "dataset": ["d1", "d2", "d3"],
                         "analysis": [["u"], ["u", "v"]], "out": "runs/{arch}-{dataset}-"
                         "{checkpoint}-{analysis}-{seed}-{index}"}, "test")
    assert len(runs) == 2 * 2 * 3 * 2
    first, second, last = runs[0], runs[1], runs[-1]
    assert (first["arch"], first["checkpoint"], first["dataset"], first["analysis"]) == \
        ("a1", "ck/a1-x.st", "d1", ["u"])
    assert first["out"] == "runs/a1-d1-a1-x-u-0-0"
    assert second["analysis"] == ["u", "v"] and second["out"] == "runs/a1-d1-a1-x-u+v-0-1"
    assert "checkpoint" not in last and last["out"] == "runs/a2-d3-none-u+v-0-23"
    # a plain list of analyses runs them together in every run (one forward pass)
    together = expand_sweep({"arch": "a", "analysis": ["u", "v"], "out": "r/{analysis}"}, "t")
    assert [r["out"] for r in together] == ["r/u+v"]


def test_sweep_template_errors_are_one_clear_line(tmp_path):
    with pytest.raises(ProbeError, match=r"uses \{model\}; known placeholders"):
        expand_sweep({"arch": "a", "out": "runs/{model}"}, "here")
    with pytest.raises(ProbeError, match="missing required key 'out'"):
        expand_sweep({"arch": "a"}, "here")
    with pytest.raises(ProbeError, match="empty list"):
        expand_sweep({"arch": [], "out": "x"}, "here")
    path = tmp_path / "dup.toml"
    path.write_text('[[sweep]]\narch = ["lenet5", "lenet5"]\nout = "runs/{arch}"\n'
                    'analysis = "unit-stats"\n')
    with pytest.raises(ProbeError, match=r"writes .*runs/lenet5, as .* sweep 1 run 1 does"):
        load_runfile(path)


def test_runfile_mixes_runs_sweeps_and_defaults(tmp_path):
    path = tmp_path / "mix.toml"
    path.write_text('[defaults]\ndataset = "digits"\nset = { "dataset.size" = 32 }\n'
                    '[[run]]\narch = "lenet5"\nanalysis = "unit-stats"\nout = "runs/one"\n'
                    '[[sweep]]\narch = "lenet5"\nseed = [1, 2]\nanalysis = "unit-stats"\n'
                    'out = "runs/s{seed}"\n')
    requests = load_runfile(path)
    assert [r.out for r in requests] == [tmp_path / "runs/one", tmp_path / "runs/s1",
                                         tmp_path / "runs/s2"]
    assert [r.seed for r in requests] == [0, 1, 2]
    assert all(r.dataset == "digits" and r.settings == {"dataset": {"size": 32}}
               for r in requests)
    assert requests[2].label.endswith("sweep 1 run 2")


# -- skipping finished runs ---------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    checkpoint = _lenet_checkpoint(root / "lenet.safetensors")
    path = root / "one.toml"
    path.write_text(f'arch = "lenet5"\ncheckpoint = "{checkpoint}"\ndataset = "digits"\n'
                    f'analysis = "unit-stats"\nout = "runs/a"\n'
                    f'set = {{ "dataset.size" = 32, "unit-stats.top_k" = 3 }}\n')
    request = load_runfile(path)[0]
    from probe.sweep import run_one

    assert run_one(request, progress=False).status == "complete"
    run = probe.load_run(request.out)
    assert run.status == "complete"
    return root, path


def test_the_skip_check_loads_no_data_and_no_weights(finished, monkeypatch):
    """It reads the manifest's identity; planning (data set, model) is not needed."""
    import probe.models
    import probe.plan

    _, path = finished

    def refuse(*args, **kwargs):
        raise AssertionError("the skip check must not load data or build models")

    for module in (probe.models, probe.plan):
        monkeypatch.setattr(module, "load_dataset", refuse)
        monkeypatch.setattr(module, "load_model", refuse)
    monkeypatch.setattr(probe.models, "build_model", refuse)
    assert is_finished(load_runfile(path)[0])


def test_is_finished_matches_only_the_same_complete_run(finished):
    root, path = finished
    request = load_runfile(path)[0]
    assert is_finished(request)
    variants = {
        "analysis option": {"unit-stats": {"top_k": 4}},
        "dataset option": {"dataset": {"size": 33}},
        "arch option": {"arch": {"activation": "relu"}},
    }
    for what, change in variants.items():
        changed = load_runfile(path)[0]
        for owner, values in change.items():
            changed.settings.setdefault(owner, {}).update(values)
        assert not is_finished(changed), what
    for field, value in (("seed", 1), ("layers", ["c1"]), ("overwrite", True),
                         ("checkpoint", _lenet_checkpoint(root / "other.safetensors", 1)),
                         ("dataset", None)):
        changed = load_runfile(path)[0]
        setattr(changed, field, value)
        assert not is_finished(changed), field
    explicit = load_runfile(path)[0]
    explicit.layers = ["c1", "s2", "c3", "s4", "c5", "f6", "output"]  # the default, spelt out
    explicit.settings["unit-stats"]["map_size"] = 16  # the default value, given explicitly
    assert is_finished(explicit)


def test_skipped_run_is_not_touched(finished, capsys):
    root, path = finished
    before = _mtimes(root / "runs" / "a")
    result = run_sweep(load_runfile(path), progress=False, echo=print)
    assert [o.status for o in result.outcomes] == ["skipped"]
    assert "runs/a: skipped (complete)" in capsys.readouterr().out
    assert _mtimes(root / "runs" / "a") == before


# -- real interruptions -------------------------------------------------------------------
def _write_sweep(root: Path, checkpoint_pattern: str) -> Path:
    path = root / "sweep.toml"
    path.write_text(
        '[defaults]\ndataset = "digits"\nanalysis = "unit-stats"\n'
        '[[run]]\narch = "lenet5"\ncheckpoint = "ck/first.safetensors"\nout = "runs/first"\n'
        'set = { "dataset.size" = 64 }\n'
        # the later runs take a little longer: the 450 test digits in batches of 16
        f'[[sweep]]\narch = "lenet5"\ncheckpoint = ["{checkpoint_pattern}"]\n'
        'seed = [1, 2]\nbatch_size = 16\n'
        'out = "runs/{checkpoint}-{seed}"\n')
    return path


def _probe(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "probe", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sweep_killed_after_its_first_run_resumes_without_redoing_it(tmp_path):
    _lenet_checkpoint(tmp_path / "ck" / "first.safetensors")
    _lenet_checkpoint(tmp_path / "ck" / "second.safetensors", seed=1)
    path = _write_sweep(tmp_path, "ck/second.safetensors")
    first, second = tmp_path / "runs" / "first", tmp_path / "runs" / "second-1"
    process = _probe("run", str(path), "--quiet", cwd=tmp_path)
    deadline = time.monotonic() + 120
    while _status(first) != "complete":
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert _status(second) != "complete"  # the kill really interrupted the sweep
    before = _mtimes(first)

    rerun = _probe("run", str(path), "--quiet", cwd=tmp_path)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "runs/first: skipped (complete)" in out
    assert "runs/second-1: complete" in out and "runs/second-2: complete" in out
    assert "3 run(s): 2 complete, 1 skipped (complete)" in out
    assert _mtimes(first) == before
    for run_dir in (second, tmp_path / "runs" / "second-2"):
        run = probe.load_run(run_dir)
        assert run.status == "complete" and len(run.table("unit-stats", "units")) == 6 + 6 + \
            16 + 16 + 120 + 84 + 10


@pytest.mark.slow
def test_sweep_reports_failures_and_finishes_them_later(tmp_path):
    _lenet_checkpoint(tmp_path / "ck" / "first.safetensors")
    path = _write_sweep(tmp_path, "ck/later.safetensors")
    process = _probe("run", str(path), "--quiet", cwd=tmp_path)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1
    assert "runs/first: complete" in out
    assert "1 complete, 0 skipped (complete), 0 partial, 2 failed" in out
    failures = [line for line in err.splitlines() if line.startswith("probe: failed:")]
    assert len(failures) == 2 and all("checkpoint file not found" in f for f in failures)
    assert "sweep 1 run 1" in failures[0] and "Traceback" not in err
    before = _mtimes(tmp_path / "runs" / "first")

    _lenet_checkpoint(tmp_path / "ck" / "later.safetensors", seed=2)
    process = _probe("run", str(path), "--quiet", cwd=tmp_path)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "runs/first: skipped (complete)" in out
    assert "2 complete, 1 skipped (complete), 0 partial, 0 failed" in out
    assert _mtimes(tmp_path / "runs" / "first") == before
    assert _status(tmp_path / "runs" / "later-2") == "complete"
