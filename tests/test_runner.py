"""The runner: failure isolation, resume, interruption, requirement checks."""

import pandas as pd
import pytest
import torch

import probe
from probe import Accumulator, Analysis, hookimpl
from probe.cli import main
from probe.errors import ProbeError
from probe.host import get_host


class CountingAccumulator(Accumulator):
    def __init__(self, fail_at=None):
        self.add_state("images", torch.zeros((), dtype=torch.int64), "sum")
        self.fail_at = fail_at

    def update(self, batch):
        if self.fail_at is not None and int(self.images) >= self.fail_at:
            raise RuntimeError("deliberate failure in update")
        self.images += len(batch.indices)

    def finalize(self, context):
        return {"count": pd.DataFrame({"images": [int(self.images)]})}


class Counter(Analysis):
    name = "test-counter"
    tables = {"count": ("images",)}

    def accumulator(self, context):
        return CountingAccumulator()


class Failing(Analysis):
    name = "test-failing"
    tables = {"count": ("images",)}

    def accumulator(self, context):
        return CountingAccumulator(fail_at=32)


class Interrupting(Analysis):
    name = "test-interrupting"
    tables = {"count": ("images",)}

    def accumulator(self, context):
        acc = CountingAccumulator()

        def update(batch):
            raise KeyboardInterrupt

        acc.update = update
        return acc


class _TestPlugin:
    @hookimpl
    def probe_register_analyses(self, register):
        for cls in (Counter, Failing, Interrupting):
            register(cls)


@pytest.fixture(scope="module", autouse=True)
def test_analyses():
    host = get_host()
    if "test-runner" not in host.plugins:
        host.add_plugin(_TestPlugin(), "test-runner")


def test_a_failing_analysis_does_not_lose_the_others(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--arch", "lenet5", "--dataset", "digits", "--set", "dataset.size=100",
                 "--batch-size", "16", "--analysis", "test-counter", "--analysis",
                 "test-failing", "--analysis", "unit-stats", "--out", str(out), "--quiet"])
    assert code == 1
    assert "probe: analysis test-failing: RuntimeError: deliberate failure" in \
        capsys.readouterr().err
    run = probe.load_run(out)
    assert run.status == "partial"
    assert run.table("test-counter", "count")["images"].item() == 100
    assert run.analysis_status("test-failing") == "failed"
    assert "deliberate failure" in run.manifest["analyses"]["test-failing"]["error"]
    assert not (out / "test-failing").exists()
    with pytest.raises(ProbeError, match="did not complete"):
        run.table("test-failing", "count")
    assert run.table("unit-stats", "units")["count"].gt(0).all()
    timings = run.manifest["timings"]
    assert len(timings["passes"]) == 1 and timings["total"] > 0


def test_resume_skips_complete_analyses(tmp_path):
    out = tmp_path / "run"
    kwargs = dict(dataset_options={"size": 40}, out=out, batch_size=20)
    probe.analyze("lenet5", "digits", ["test-counter", "test-failing"], **kwargs)
    table = out / "test-counter" / "count.parquet"
    stamp = table.stat().st_mtime_ns
    run = probe.analyze("lenet5", "digits", ["test-counter", "unit-stats"], **kwargs)
    assert table.stat().st_mtime_ns == stamp  # not recomputed
    assert run.status == "complete"
    # the directory accumulates: test-failing (complete: 40 images in batches of 20 never
    # reach its failure at 32 before a batch starts) stays beside the new unit-stats
    assert run.analyses == ["test-counter", "test-failing", "unit-stats"]
    with pytest.raises(ProbeError, match="holds a different run"):
        probe.analyze("lenet5", "digits", ["test-counter"], out=out, batch_size=20,
                      dataset_options={"size": 41})


def test_interrupted_run_reads_as_interrupted(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        probe.analyze("lenet5", "digits", ["test-interrupting", "test-counter"], out=out,
                      dataset_options={"size": 40})
    run = probe.load_run(out)
    assert run.status == "interrupted"
    with pytest.raises(ProbeError, match="did not complete"):
        run.table("test-counter", "count")
    # Resuming finishes it.
    done = probe.analyze("lenet5", "digits", ["test-counter"], out=out,
                         dataset_options={"size": 40})
    assert done.status == "complete" and done.table("test-counter", "count")["images"].item() == 40


def test_requirements_are_checked_before_running(tmp_path):
    class NeedsMasks(Counter):
        name = "needs-masks"
        requires = frozenset({"masks"})

    with pytest.raises(ProbeError, match="needs concept masks, but dataset digits has none"):
        probe.analyze("lenet5", "digits", [NeedsMasks()], out=tmp_path / "r")
    assert not (tmp_path / "r").exists()


class _Tracker:
    def __init__(self):
        self.events = []

    @hookimpl
    def probe_run_started(self, run_dir, manifest):
        self.events.append(("started", manifest["status"]))

    @hookimpl
    def probe_analysis_finished(self, run_dir, analysis, tables):
        self.events.append(("analysis", analysis, sorted(tables)))

    @hookimpl
    def probe_run_failed(self, run_dir, manifest, error):
        self.events.append(("failed", error.split(":")[0]))

    @hookimpl
    def probe_run_finished(self, run_dir, manifest):
        self.events.append(("finished", manifest["status"]))


def test_event_hooks_reach_a_tracker_plugin(tmp_path):
    tracker = _Tracker()
    host = get_host()
    host.add_plugin(tracker, "test-tracker")
    try:
        probe.analyze("lenet5", "digits", ["test-counter", "test-failing"], out=tmp_path / "r",
                      dataset_options={"size": 40}, batch_size=16)
    finally:
        host.remove_plugin("test-tracker")
    assert tracker.events == [("started", "running"), ("analysis", "test-counter", ["count"]),
                              ("failed", "test-failing"), ("finished", "partial")]
