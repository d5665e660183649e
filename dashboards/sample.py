"""Small real runs for tests, screenshots and the docs (LeNet-5 on digits, seconds on a CPU).

``python -m probe.dashboards.sample RUNS_DIR`` writes them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

#: Analyses added to the sample runs when their plugins are installed, with options that
#: keep them fast on a CPU.
OPTIONAL_ANALYSES: dict[str, dict[str, object]] = {"filters": {}}


def make_sample_runs(root: str | Path, size: int = 64,
                     extra: Sequence[str] | None = None) -> list[Path]:
    """Write two unit-stats runs of untrained LeNet-5 (seeds 0 and 1) on ``size`` digits.

    Args:
        root: Folder to hold the runs ``lenet5-a`` and ``lenet5-b``.
        size: Number of test digits analysed.
        extra: Further analyses to run as well (only those installed are used).

    Returns:
        The run directories.
    """
    import torch

    import probe
    from probe.host import get_host

    names = get_host().analyses.names()
    analyses = ["unit-stats", *[a for a in (extra or ()) if a in names]]
    out = []
    for seed, name in ((0, "lenet5-a"), (1, "lenet5-b")):
        torch.manual_seed(seed)
        path = Path(root) / name
        probe.analyze("lenet5", "digits", analyses, out=path, dataset_options={"size": size},
                      batch_size=64, seed=seed, overwrite=True,
                      layers=["c1", "s2", "c3", "s4", "c5"])
        out.append(path)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m probe.dashboards.sample RUNS_DIR")
    for path in make_sample_runs(sys.argv[1]):
        print(path)
