"""The conformance kit: it passes every registered analysis and the example plugin, and it
catches each contract breach it names."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from probe import Accumulator, Analysis
from probe.host import get_host
from probe.testing import assert_tables_equal, check_analysis

EXAMPLE = Path(__file__).parents[1] / "examples" / "probe-sparsity"


@pytest.mark.parametrize("name", sorted(get_host().analyses.names()))
def test_every_registered_analysis_conforms(name):
    results = check_analysis(get_host().analyses.get(name), batch_size=8)
    assert all(r.passed for r in results)
    assert {r.name for r in results} >= {"tables", "state_on_device", "no_model_in_state",
                                         "shards_equal_one_pass", "figures", "views",
                                         "hooks_released"}


def test_filters_with_a_data_pass_conforms():
    check_analysis(get_host().analyses.get("filters"), options={"pca_source": "dataset"})


def test_the_example_plugin_conforms():
    sys.path.insert(0, str(EXAMPLE))
    try:
        from probe_sparsity import Sparsity, SparsityAccumulator
    finally:
        sys.path.remove(str(EXAMPLE))
    assert "merge" not in SparsityAccumulator.__dict__  # sums need no merge code
    check_analysis(Sparsity, options={"bins": 8})


# -- breaches the kit must catch ----------------------------------------------------------
class _Counting(Accumulator):
    def __init__(self, device):
        self.add_state("images", torch.zeros((), dtype=torch.int64, device=device), "sum")

    def update(self, batch):
        self.images += len(batch.indices)

    def finalize(self, context):
        return {"count": pd.DataFrame({"images": [int(self.images)]})}


class _Good(Analysis):
    name = "kit-good"
    tables = {"count": ("images",)}

    def accumulator(self, context):
        return _Counting(context.device)


class _UndeclaredCounter(Accumulator):
    """Counts in a plain int: shards never exchange it, so a sharded run undercounts."""

    def __init__(self):
        self.images = 0

    def update(self, batch):
        self.images += len(batch.indices)

    def finalize(self, context):
        return {"count": pd.DataFrame({"images": [self.images]})}


class _Undeclared(_Good):
    name = "kit-undeclared"

    def accumulator(self, context):
        return _UndeclaredCounter()


class _KeepsModel(_Good):
    name = "kit-keeps-model"

    def accumulator(self, context):
        acc = _Counting(context.device)
        acc.model = context.model
        return acc


class _WrongDevice(_Good):
    name = "kit-wrong-device"

    def accumulator(self, context):
        return _Counting(torch.device("meta"))


class _MissingColumn(_Good):
    name = "kit-missing-column"
    tables = {"count": ("images", "seconds")}


class _BadFigure(_Good):
    name = "kit-bad-figure"

    @classmethod
    def figures(cls, tables):
        return ["not a figure"]


class _BadView(_Good):
    name = "kit-bad-view"

    @classmethod
    def layer_views(cls, run, layer):
        return [run.table(cls.name, "count")]  # a DataFrame, not a views.Table


class _RaisingView(_Good):
    name = "kit-raising-view"

    @classmethod
    def headlines(cls, run):
        raise KeyError("no such column")


def _failed(cls):
    return {r.name for r in check_analysis(cls, raise_on_failure=False) if not r.passed}


def test_a_conforming_analysis_passes():
    assert _failed(_Good) == set()


@pytest.mark.parametrize(("cls", "check"), [
    (_Undeclared, "shards_equal_one_pass"),
    (_Undeclared, "declares_state"),
    (_KeepsModel, "no_model_in_state"),
    (_MissingColumn, "tables"),
    (_BadFigure, "figures"),
    (_BadView, "views"),
    (_RaisingView, "views"),
])
def test_each_breach_fails_its_check(cls, check):
    assert check in _failed(cls)


def test_state_off_the_run_device_is_caught():
    failed = _failed(_WrongDevice)
    assert "state_on_device" in failed or "one_pass" in failed


def test_failures_raise_with_every_result_listed():
    with pytest.raises(AssertionError, match=r"FAIL no_model_in_state") as info:
        check_analysis(_KeepsModel)
    assert "ok   tables" in str(info.value)


def test_assert_tables_equal_compares_arrays_and_floats():
    a = {"t": pd.DataFrame({"x": [1.0, 2.0], "m": [[1, 2], [3, 4]]})}
    assert_tables_equal(a, {"t": pd.DataFrame({"x": [1.0, 2.0 + 1e-12], "m": [[1, 2], [3, 4]]})})
    with pytest.raises(AssertionError, match=r"t\.m: row 1"):
        assert_tables_equal(a, {"t": pd.DataFrame({"x": [1.0, 2.0], "m": [[1, 2], [3, 5]]})})
    with pytest.raises(AssertionError, match=r"t\.x"):
        assert_tables_equal(a, {"t": pd.DataFrame({"x": [1.0, 2.1], "m": [[1, 2], [3, 4]]})})


def test_a_declared_merge_tolerance_widens_the_shard_comparison_by_column_scale():
    """assert_tables_equal's scale_rtol: a cell may differ by that fraction of its column's
    largest magnitude (a near-zero fitted coefficient has no meaningful relative error);
    check_analysis passes the class's merge_tolerance; the registry checks its type."""
    from probe.analysis import validate_analysis_class
    from probe.errors import PluginError

    one = {"t": pd.DataFrame({"w": [2.0, 1e-3, -0.5], "map": [np.array([4.0, 1e-4])] * 3})}
    # the small coefficient 1e-5 off: 1 % of itself, 5e-6 of the column's largest (2.0)
    off = {"t": pd.DataFrame({"w": [2.0 + 1e-6, 1e-3 + 1e-5, -0.5 - 1e-7],
                              "map": [np.array([4.0, 1e-4 + 1e-5])] * 3})}
    with pytest.raises(AssertionError, match=r"t\.w: row 1"):
        assert_tables_equal(one, off, rtol=1e-6, atol=1e-9)
    assert_tables_equal(one, off, rtol=1e-6, atol=1e-9, scale_rtol=1e-5)  # 2e-5 allowed
    with pytest.raises(AssertionError, match=r"t\.w: row 1"):
        assert_tables_equal(one, off, rtol=1e-6, atol=1e-9, scale_rtol=1e-6)  # 2e-6 < 1e-5
    assert Analysis.merge_tolerance == 0.0
    assert get_host().analyses.get("equivariance").merge_tolerance == 1e-4
    for bad in (-1e-3, 1.0, "1e-4", True):
        broken = type("Broken", (Analysis,), {"name": "broken", "merge_tolerance": bad})
        with pytest.raises(PluginError, match="merge_tolerance must be a number"):
            validate_analysis_class(broken)
