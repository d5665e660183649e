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


def pytest_setup_options():
    """Chromium options for dash[testing]'s browser fixtures (``dash_duo``, used with --headless).

    dash adds --no-sandbox, --disable-gpu and --disable-dev-shm-usage itself;
    these keep Chromium from reaching the network or reusing a profile.
    """
    import atexit
    import shutil
    import tempfile

    from selenium.webdriver.chrome.options import Options

    profile = tempfile.mkdtemp(prefix="probe-chromium-")
    atexit.register(shutil.rmtree, profile, ignore_errors=True)
    options = Options()
    for flag in ("--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run",
                 f"--user-data-dir={profile}", "--window-size=1400,1000"):
        options.add_argument(flag)
    return options
