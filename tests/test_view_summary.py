"""Two runs' layer summaries side by side: which layer of B each layer of A is read against."""

from __future__ import annotations

from pathlib import Path

from probe.sample_runs import synthetic_tables, write_tables_run
from probe.store import load_run
from probe.views.run_view import RunView
from probe.views.summary import side_by_side


def _run(root: Path, name: str, units: dict[str, int], seed: int) -> RunView:
    path = write_tables_run(root / name, synthetic_tables(units, seed=seed), list(units))
    return RunView(load_run(path))


def test_shared_layer_names_match_by_name_the_rest_by_relative_depth(tmp_path: Path) -> None:
    # B is A with two extra layers (as a deformable block adds `.offset` and `.mask`): by
    # depth alone A's conv2 (depth 0.5) would sit beside B's conv1.mask (0.5), not conv2
    a = _run(tmp_path, "a", {"conv1": 4, "conv2": 6, "conv3": 8}, seed=0)
    b = _run(tmp_path, "b", {"conv1": 4, "conv1.offset": 2, "conv1.mask": 2, "conv2": 6,
                             "conv3": 8}, seed=1)
    table, problems = side_by_side(a, b)
    assert problems == []
    rows = table.frame.to_dict("records")
    assert [(r["layer_a"], r["layer_b"]) for r in rows] == [
        ("conv1", "conv1"), ("conv2", "conv2"), ("conv3", "conv3")]
    assert [r["unit_stats_units [B−A]"] for r in rows] == [0, 0, 0]
    # no shared name: nearest relative depth (A: 0, 0.5, 1; B: 0, 0.25, 0.5, 0.75, 1)
    c = _run(tmp_path, "c", {"h1": 4, "h2": 2, "h3": 6, "h4": 2, "h5": 8}, seed=2)
    rows = side_by_side(a, c)[0].frame.to_dict("records")
    assert [(r["layer_a"], r["layer_b"]) for r in rows] == [
        ("conv1", "h1"), ("conv2", "h3"), ("conv3", "h5")]
    # a partial overlap: conv2 by name (depth 1/3 in D), the others by depth
    d = _run(tmp_path, "d", {"stem": 4, "conv2": 6, "late": 8, "head": 2}, seed=3)
    rows = side_by_side(a, d)[0].frame.to_dict("records")
    assert [(r["layer_a"], r["layer_b"]) for r in rows] == [
        ("conv1", "stem"), ("conv2", "conv2"), ("conv3", "head")]
    assert "by name where both have the layer" in table.caption
