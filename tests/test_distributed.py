"""A run sharded over two real torch.distributed processes (gloo) equals a single run.

Ranks exchange only declared state tensors (all_reduce / all_gather), never pickles.
"""

import numpy as np

from probe.testing import assert_tables_equal


def test_two_process_run_equals_single_process(single_and_sharded, lenet_checkpoint):
    a, b = single_and_sharded(
        ["run", "--arch", "lenet5", "--checkpoint", str(lenet_checkpoint), "--dataset", "digits",
         "--set", "dataset.size=120", "--batch-size", "16", "--analysis", "unit-stats",
         "--set", "unit-stats.top_k=5", "--analysis", "filters",
         "--set", "filters.pca_source=dataset", "--set", "filters.iterations=5",
         "--set", "filters.random_filters=32"])
    ua, ub = a.table("unit-stats", "units"), b.table("unit-stats", "units")
    assert ua["count"].tolist() == ub["count"].tolist()
    assert ua["max"].tolist() == ub["max"].tolist()
    assert ua["fraction_positive"].tolist() == ub["fraction_positive"].tolist()
    np.testing.assert_allclose(ua["mean"], ub["mean"], rtol=1e-9, atol=1e-12)
    ta, tb = a.table("unit-stats", "top_images"), b.table("unit-stats", "top_images")
    assert ta["image"].tolist() == tb["image"].tolist()
    assert ta["value"].tolist() == tb["value"].tolist()
    assert ta["label"].tolist() == tb["label"].tolist()  # labels by image index, reduced by max
    # filters' patch moments are declared sums: the PCA bases agree across the two runs
    assert_tables_equal(a.all_tables("filters"), b.all_tables("filters"), rtol=1e-6, atol=1e-7)
    assert a.table("filters", "subspaces")["basis"].isin(["pca"]).any()
