"""What the dashboard reads and serves: only files of runs under RUNS_DIR, cached by manifest."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from probe.dashboards.data import NotFound, RunSource, clear_caches
from probe.dashboards.sample import write_tables_run
from probe.errors import ProbeError


def _units(layer: str = "c1", n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"layer": layer, "unit": range(n), "mean": 0.0, "std": 1.0,
                         "max": [float(i) for i in range(n)], "fraction_positive": 0.5,
                         "count": 10})


@pytest.fixture
def root(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    write_tables_run(runs / "good", {"unit-stats": {"units": _units()}}, ["c1"])
    (runs / "good" / "unit-stats" / "note.txt").write_text("hello")
    (runs / "good" / "unit-stats" / "evil.py").write_text("print('never served')")
    (tmp_path / "secret.txt").write_text("outside")
    write_tables_run(tmp_path / "elsewhere", {"unit-stats": {"units": _units()}}, ["c1"])
    os.symlink(tmp_path / "elsewhere", runs / "linked-out")  # a run outside the root
    os.symlink(tmp_path / "secret.txt", runs / "good" / "unit-stats" / "leak.txt")
    (runs / "not-a-run").mkdir()
    clear_caches()
    return runs


def test_lists_only_runs_inside_the_root(root: Path) -> None:
    source = RunSource(root)
    assert source.run_names() == ["good"]
    with pytest.raises(NotFound, match="no run 'linked-out'"):
        source.run("linked-out")
    for bad in ("..", "../elsewhere", "/etc", "good/../..", "", None, "not-a-run"):
        with pytest.raises(NotFound):
            source.run(bad)
    single = RunSource(root / "good")  # RUNS_DIR may be one run
    assert single.run_names() == ["good"]
    with pytest.raises(ProbeError, match="does not exist"):
        RunSource(root / "missing")


def test_layers_are_checked_against_the_run(root: Path) -> None:
    source = RunSource(root)
    run = source.run("good")
    assert source.check_layer(run, "c1") == "c1"
    for bad in ("c2", "../c1", None):
        with pytest.raises(NotFound, match="has no layer"):
            source.check_layer(run, bad)


def test_artifacts_never_escape(root: Path) -> None:
    source = RunSource(root)
    assert source.artifact("good", "unit-stats", "note.txt").read_text() == "hello"
    bad = [("good", "unit-stats", "../manifest.json"), ("good", "unit-stats", "/etc/passwd"),
           ("good", "unit-stats", "leak.txt"),  # symlink to a file outside
           ("good", "unit-stats", "evil.py"),  # type not served
           ("good", "..", "manifest.json"), ("good", "dissection", "x.png"),
           ("linked-out", "unit-stats", "units.parquet"), ("good", "unit-stats", "a//b.png")]
    for run, analysis, relative in bad:
        with pytest.raises(NotFound):
            source.artifact(run, analysis, relative)


def test_file_route_answers_404_with_the_reason(root: Path) -> None:
    from probe.dashboards import create_app

    client = create_app(root).server.test_client()
    ok = client.get("/files/good/unit-stats/note.txt")
    assert ok.status_code == 200 and ok.data == b"hello"
    assert ok.headers["X-Content-Type-Options"] == "nosniff"
    for url in ("/files/good/unit-stats/..%2Fmanifest.json", "/files/good/unit-stats/leak.txt",
                "/files/good/unit-stats/evil.py", "/files/linked-out/unit-stats/units.parquet",
                "/files/good/unit-stats/%2Fetc%2Fpasswd", "/files/..%2F..%2Fsecret/x/y.txt",
                "/files/good//etc/passwd", "/files/good", "/files/"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert b"outside" not in response.data and b"print" not in response.data


def test_tables_are_cached_until_the_manifest_changes(root: Path) -> None:
    source = RunSource(root)
    run = source.run("good")
    first = source.table(run, "unit-stats", "units", columns=("unit", "max"), layer="c1")
    assert list(first.columns) == ["unit", "max"] and list(first["max"]) == [0.0, 1.0, 2.0]
    assert source.run("good") is run
    assert source.table(run, "unit-stats", "units", columns=("unit", "max"), layer="c1") \
        is first
    write_tables_run(root / "good", {"unit-stats": {"units": _units(n=5)}}, ["c1"])
    stamp = (root / "good" / "manifest.json").stat().st_mtime_ns
    os.utime(root / "good" / "manifest.json", ns=(stamp + 10**9, stamp + 10**9))
    rerun = source.run("good")
    assert rerun is not run
    assert len(source.table(rerun, "unit-stats", "units", layer="c1")) == 5
    assert source.optional(rerun, "dissection", "units") is None
    with pytest.raises(NotFound, match="no completed table dissection/units"):
        source.table(rerun, "dissection", "units")


def test_dataset_of_a_run_is_reloaded_by_name(tmp_path: Path) -> None:
    write_tables_run(tmp_path / "d", {"unit-stats": {"units": _units()}}, ["c1"],
                     dataset={"name": "digits", "options": {"size": 5}, "size": 5})
    write_tables_run(tmp_path / "n", {"unit-stats": {"units": _units()}}, ["c1"],
                     dataset={"name": "not-installed", "options": {}, "size": 5})
    source = RunSource(tmp_path)
    data = source.dataset(source.run("d"))
    assert len(data) == 5 and tuple(data[0]["image"].shape) == (1, 32, 32)
    assert source.dataset(source.run("d")) is data  # cached
    assert source.dataset(source.run("n")) is None


def test_decoded_tables_stay_within_the_memory_budget(root: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from probe.dashboards import table_cache

    source = RunSource(root)
    run = source.run("good")
    first = table_cache.read_arrow(str(run.path), 1, "unit-stats", "units", None)
    monkeypatch.setattr(table_cache, "ARROW_BUDGET", first.nbytes)  # room for one table
    table_cache.read_arrow(str(run.path), 2, "unit-stats", "units", None)
    assert [k[1] for k in table_cache.cached_keys()] == [2]  # the older one was evicted
    assert len(source.unit_rows(run, "unit-stats", "units", "c1", 2)) == 1


def test_unit_rows_by_row_group_statistics_match_the_table(tmp_path: Path) -> None:
    import numpy as np
    import pyarrow.parquet as pq

    n = 6000  # > ROW_GROUP_ROWS: written in several row groups
    frame = pd.DataFrame({"layer": np.repeat(["a", "b"], n // 2),
                          "unit": np.tile(np.arange(n // 4), 4), "rank": np.arange(n) % 2,
                          "value": np.arange(n, dtype=float)})
    write_tables_run(tmp_path / "r", {"unit-stats": {"top_images": frame}}, ["a", "b"])
    clear_caches()
    assert pq.ParquetFile(tmp_path / "r" / "unit-stats" / "top_images.parquet") \
        .metadata.num_row_groups == 2
    source = RunSource(tmp_path)
    run = source.run("r")
    by_groups = source.unit_rows(run, "unit-stats", "top_images", "b", 7)
    want = frame[(frame.layer == "b") & (frame.unit == 7)].reset_index(drop=True)
    assert by_groups["value"].tolist() == want["value"].tolist() == [3007.0, 4507.0]
    source.table(run, "unit-stats", "top_images")  # now decoded whole: the cached path
    source.prefetch(run, [("unit-stats", "top_images")])
    from probe.dashboards.data import wait_for_prefetch

    wait_for_prefetch()
    assert source.unit_rows(run, "unit-stats", "top_images", "b", 7)["value"].tolist() == \
        [3007.0, 4507.0]
