"""A run sharded over two real torch.distributed processes (gloo) equals a single run."""

import os
import subprocess
import sys

import numpy as np

import probe


def test_two_process_run_equals_single_process(tmp_path, lenet_checkpoint):
    common = ["run", "--arch", "lenet5", "--checkpoint", str(lenet_checkpoint), "--dataset",
              "digits", "--set", "dataset.size=120", "--batch-size", "16", "--analysis",
              "unit-stats", "--set", "unit-stats.top_k=5", "--quiet", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "probe", *common, "--out",
                             str(tmp_path / "single")], env=env, capture_output=True, text=True,
                            timeout=300)
    assert single.returncode == 0, single.stderr
    sharded = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                              "2", "--master-port", "29517", "-m", "probe", *common, "--out",
                              str(tmp_path / "sharded")], env=env, capture_output=True,
                             text=True, timeout=300)
    assert sharded.returncode == 0, sharded.stderr
    a, b = probe.load_run(tmp_path / "single"), probe.load_run(tmp_path / "sharded")
    assert b.manifest["world_size"] == 2 and a.manifest["world_size"] == 1
    ua, ub = a.table("unit-stats", "units"), b.table("unit-stats", "units")
    assert ua["count"].tolist() == ub["count"].tolist()
    assert ua["max"].tolist() == ub["max"].tolist()
    assert ua["fraction_positive"].tolist() == ub["fraction_positive"].tolist()
    np.testing.assert_allclose(ua["mean"], ub["mean"], rtol=1e-9, atol=1e-12)
    ta, tb = a.table("unit-stats", "top_images"), b.table("unit-stats", "top_images")
    assert ta["image"].tolist() == tb["image"].tolist()
    assert ta["value"].tolist() == tb["value"].tolist()
