"""Shared fixtures: small trained models and runs, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def lenet_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LeNet-5 trained on digits with the default recipe (~5 s on 2 cores)."""
    from probe.training import train

    path = tmp_path_factory.mktemp("checkpoints") / "lenet5.safetensors"
    train("lenet5", path, progress=False)
    return path


@pytest.fixture(scope="session")
def lenet_run(tmp_path_factory: pytest.TempPathFactory, lenet_checkpoint: Path):
    """A unit-stats run of the trained LeNet-5 on the digits test split."""
    import probe

    out = tmp_path_factory.mktemp("runs") / "lenet5-digits"
    return probe.analyze("lenet5", "digits", ["unit-stats"], out=out,
                         checkpoint=lenet_checkpoint, batch_size=128)
