"""The equivariance analysis sharded over two torch.distributed processes (gloo) equals one run."""

import os
import subprocess
import sys

import pandas as pd
import pytest

import probe
from probe.plugins.analyses.equivariance import Equivariance


@pytest.mark.slow
def test_two_process_equivariance_run_equals_single_process(tmp_path):
    common = ["run", "--arch", "ref-strided", "--dataset", "digits", "--set", "dataset.size=10",
              "--set", "arch.width=0.5", "--batch-size", "3", "--analysis", "equivariance",
              "--set", "equivariance.transforms=translate-x,hflip",
              "--set", "equivariance.magnitudes=translate-x=0;1;4px",
              "--set", "equivariance.consistency_steps=2", "--quiet", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "probe", *common, "--out",
                             str(tmp_path / "single")], env=env, capture_output=True, text=True,
                            timeout=600)
    assert single.returncode == 0, single.stderr
    sharded = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                              "2", "--master-port", "29533", "-m", "probe", *common, "--out",
                              str(tmp_path / "sharded")], env=env, capture_output=True,
                             text=True, timeout=600)
    assert sharded.returncode == 0, sharded.stderr
    a, b = probe.load_run(tmp_path / "single"), probe.load_run(tmp_path / "sharded")
    assert b.manifest["world_size"] == 2
    for name in Equivariance.tables:
        ta, tb = a.table("equivariance", name), b.table("equivariance", name)
        assert len(ta) > 0, name
        # float32 forward passes of differently composed batches differ in the last bits
        pd.testing.assert_frame_equal(ta, tb, rtol=1e-4, atol=1e-7, check_dtype=False)
