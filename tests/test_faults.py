"""Faults: killed runs, two writers, a run that grows. Nothing completed is ever lost, and
no state reads as true when it is not."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import probe
from probe.cli import main
from probe.testing import assert_tables_equal

WRITER = textwrap.dedent('''
    """A writer: unit-stats, plus a slow analysis that marks when it is mid-pass."""
    import sys, time
    from pathlib import Path
    import pandas as pd, torch
    import probe
    from probe import Accumulator, Analysis

    out, marker, delay = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])

    class Slow(Accumulator):
        def __init__(self):
            self.add_state("images", torch.zeros((), dtype=torch.int64), "sum")
        def update(self, batch):
            marker.touch()
            time.sleep(delay)
            self.images += len(batch.indices)
        def finalize(self, context):
            return {"count": pd.DataFrame({"images": [int(self.images)]})}

    class SlowAnalysis(Analysis):
        name = "test-slow"
        tables = {"count": ("images",)}
        def accumulator(self, context):
            return Slow()

    analyses = ["unit-stats", SlowAnalysis()] if delay >= 0 else ["unit-stats"]
    run = probe.analyze("lenet5", "digits", analyses, out=out, batch_size=8,
                        dataset_options={"size": 48})
    print(run.status)
''')

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture
def writer(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)

    def start(out: Path, delay: float, tag: str = "a") -> tuple[subprocess.Popen, Path]:
        marker = tmp_path / f"mid-pass-{tag}"
        proc = subprocess.Popen([sys.executable, str(script), str(out), str(marker), str(delay)],
                                env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        return proc, marker

    return start


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the writer never reached its data pass"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """unit-stats of the same run, never interrupted: what every recovery must equal."""
    out = tmp_path_factory.mktemp("clean") / "run"
    return probe.analyze("lenet5", "digits", ["unit-stats"], out=out, batch_size=8,
                         dataset_options={"size": 48}).all_tables("unit-stats")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_run_reads_interrupted_keeps_what_completed_and_resumes(
        tmp_path, writer, uninterrupted, sig):
    out = tmp_path / "run"
    first, _ = writer(out, -1)  # unit-stats alone, complete
    assert first.wait(timeout=300) == 0, first.communicate()
    proc, marker = writer(out, 0.5)  # add the slow analysis; kill it mid-pass
    _wait_for(marker, proc)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    run = probe.load_run(out)
    assert run.status == "interrupted"  # not "running", whichever signal ended the writer
    assert run.analysis_status("unit-stats") == "complete"
    assert run.analysis_status("test-slow") != "complete"
    assert_tables_equal(uninterrupted, run.all_tables("unit-stats"), rtol=0, atol=0)
    again, _ = writer(out, 0.0, "b")
    assert again.wait(timeout=300) == 0, again.communicate()
    done = probe.load_run(out)
    assert done.status == "complete"
    assert done.table("test-slow", "count")["images"].item() == 48
    assert_tables_equal(uninterrupted, done.all_tables("unit-stats"), rtol=0, atol=0)


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path, writer, uninterrupted):
    out = tmp_path / "run"
    proc, marker = writer(out, 0.2)
    _wait_for(marker, proc)
    code = main(["run", "--arch", "lenet5", "--dataset", "digits", "--set", "dataset.size=48",
                 "--batch-size", "8", "--analysis", "unit-stats", "--out", str(out), "--quiet"])
    assert code == 2
    assert proc.wait(timeout=300) == 0, proc.communicate()
    run = probe.load_run(out)
    assert run.status == "complete"
    assert sorted(run.analyses) == ["test-slow", "unit-stats"]
    assert_tables_equal(uninterrupted, run.all_tables("unit-stats"), rtol=0, atol=0)


def test_the_refusal_names_the_holder(tmp_path, capsys):
    from probe.run_lock import RunLock

    out = tmp_path / "run"
    with RunLock(out):
        code = main(["run", "--arch", "lenet5", "--dataset", "digits", "--set",
                     "dataset.size=8", "--analysis", "unit-stats", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"being written by pid {os.getpid()}" in err


def test_adding_an_analysis_keeps_the_completed_ones(tmp_path, uninterrupted):
    out = tmp_path / "run"
    kwargs = dict(out=out, batch_size=8, dataset_options={"size": 48})
    probe.analyze("lenet5", "digits", ["unit-stats"], **kwargs)
    table = out / "unit-stats" / "units.parquet"
    stamp = table.stat().st_mtime_ns
    run = probe.analyze("lenet5", "digits", [("filters", {"iterations": 2,
                                                          "random_filters": 8})], **kwargs)
    assert sorted(run.analyses) == ["filters", "unit-stats"]  # the run accumulates
    assert run.status == "complete"
    assert table.stat().st_mtime_ns == stamp  # not recomputed
    assert_tables_equal(uninterrupted, run.all_tables("unit-stats"), rtol=0, atol=0)
    assert set(run.manifest["timings"]["analyses"]) == {"filters", "unit-stats"}


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        run = probe.analyze("lenet5", "digits", ["unit-stats"], out=tmp_path / "r",
                            dataset_options={"size": 8})
    finally:
        os.umask(old)
    for path in (run.path / "manifest.json", run.path / "unit-stats" / "units.parquet"):
        assert path.stat().st_mode & 0o777 == 0o644, path
