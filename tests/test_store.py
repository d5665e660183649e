import json

import pandas as pd
import pytest

from probe.errors import ProbeError
from probe.store import RunStore, atomic_write_bytes, check_name, list_runs, load_run


def make_run(path, status="complete", analysis_status="complete"):
    store = RunStore(path)
    store.manifest = {"status": status, "analyses": {
        "a": {"status": analysis_status, "tables": ["t"]}}}
    store.write_table("a", "t", pd.DataFrame({"layer": ["x", "y"], "unit": [0, 1]}))
    store.save_manifest()
    return store


def test_round_trip_and_listing(tmp_path):
    make_run(tmp_path / "r1")
    make_run(tmp_path / "r2", status="partial", analysis_status="failed")
    (tmp_path / "not-a-run").mkdir()
    runs = list_runs(tmp_path)
    assert [r.name for r in runs] == ["r1", "r2"]
    frame = runs[0].table("a", "t")
    assert frame["unit"].tolist() == [0, 1]
    assert runs[0].tables() == [("a", "t")]
    # A failed analysis's table is refused even if a file is on disk.
    with pytest.raises(ProbeError, match="did not complete"):
        runs[1].table("a", "t")
    with pytest.raises(ProbeError, match="has no analysis 'b'; it has: a"):
        runs[0].table("b", "t")


def test_atomic_write_leaves_no_temp_files_and_keeps_old_on_failure(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    class Boom(bytes):
        pass

    with pytest.raises(TypeError):
        atomic_write_bytes(target, object())  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


@pytest.mark.parametrize("name", ["../x", "/etc", "a/b", "", ".hidden", "a..b"])
def test_names_cannot_escape(name):
    with pytest.raises(ProbeError):
        check_name(name, "table")


def test_load_run_errors(tmp_path):
    with pytest.raises(ProbeError, match="not a probe run directory"):
        load_run(tmp_path)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(ProbeError, match="not valid JSON"):
        load_run(tmp_path)


def test_artifact_paths_stay_inside(tmp_path):
    make_run(tmp_path / "r")
    run = load_run(tmp_path / "r")
    assert run.artifact("a", "img/0.png") == (tmp_path / "r" / "a" / "img" / "0.png").resolve()
    with pytest.raises(ProbeError, match="leaves the run directory"):
        run.artifact("a", "../../manifest.json")
    json.loads((tmp_path / "r" / "manifest.json").read_text())
