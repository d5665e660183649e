"""probe.views.columns: the same answers as the object-array formulations they replace."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from probe.views.columns import distinct, positions


def _columns() -> list[pd.Series]:
    rng = np.random.default_rng(3)
    words = rng.choice(["conv1", "conv2", "fc", "conv10", ""], 500).astype(object)
    words[rng.random(500) < 0.1] = None
    arrow = pa.table({"w": pa.array(list(words), pa.large_string())}).to_pandas()["w"]
    return [arrow, pd.Series(words, dtype=object), pd.Series(rng.integers(-1, 6, 500)),
            pd.Series([], dtype="str")]


@pytest.mark.parametrize("column", _columns(), ids=["arrow-str", "object", "int", "empty"])
def test_distinct_keeps_the_order_of_first_appearance(column: pd.Series) -> None:
    want = pd.unique(column.to_numpy(dtype=object)).tolist()
    got = distinct(column)
    assert [None if pd.isna(x) else x for x in got] == \
        [None if pd.isna(x) else x for x in want]


@pytest.mark.parametrize("column", _columns(), ids=["arrow-str", "object", "int", "empty"])
def test_positions_equal_get_indexer(column: pd.Series) -> None:
    values = ["fc", "conv1", "", "absent", 3, 0, -1]
    want = pd.Index(values, dtype=object).get_indexer(column.to_numpy(dtype=object))
    want[pd.isna(column.to_numpy(dtype=object))] = -1
    np.testing.assert_array_equal(positions(column, values), want)


def test_positions_by_hand() -> None:
    column = pa.table({"x": ["b", "a", None, "c", "b"]}).to_pandas()["x"]
    assert positions(column, ["a", "b"]).tolist() == [1, 0, -1, -1, 1]
    assert distinct(column)[:2] == ["b", "a"]
