"""probe.views.RunView reads what the dashboard's view of the same run reads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from probe.dashboards.data import RunSource
from probe.dashboards.run_view import DashRunView
from probe.sample_runs import synthetic_tables, write_tables_run
from probe.store import load_run
from probe.views import RunView


def test_one_layer_of_some_columns_without_the_layer_column(tmp_path: Path) -> None:
    write_tables_run(tmp_path / "r", synthetic_tables({"c1": 3, "c2": 5}), ["c1", "c2"])
    plain = RunView(load_run(tmp_path / "r"))
    dash = DashRunView(RunSource(tmp_path), load_run(tmp_path / "r"))
    for view in (plain, dash):
        frame = view.table("unit-stats", "units", columns=["unit", "max"], layer="c2")
        assert list(frame.columns) == ["unit", "max"]
        assert frame["unit"].tolist() == [0, 1, 2, 3, 4]  # c2's rows only
    whole = plain.table("unit-stats", "units")
    want = whole[whole["layer"] == "c2"][["unit", "max"]].reset_index(drop=True)
    for view in (plain, dash):
        got = view.table("unit-stats", "units", columns=["unit", "max"], layer="c2")
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want)
