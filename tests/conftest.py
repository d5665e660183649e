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


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def single_and_sharded(tmp_path: Path):
    """``run(args)``: ``probe`` once in one process and once under torchrun (2 gloo ranks).

    Returns the two runs (``probe.load_run``) after checking both commands succeeded.
    """
    import os
    import subprocess
    import sys

    import probe

    def run(args: list[str]) -> tuple[probe.Run, probe.Run]:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        launchers = {
            "single": [sys.executable, "-m", "probe"],
            "sharded": [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                        "--master-port", str(_free_port()), "-m", "probe"],
        }
        for name, launcher in launchers.items():
            done = subprocess.run([*launcher, *args, "--quiet", "--device", "cpu", "--out",
                                   str(tmp_path / name)], env=env, capture_output=True,
                                  text=True, timeout=600)
            assert done.returncode == 0, done.stderr
        single, sharded = (probe.load_run(tmp_path / name) for name in launchers)
        assert single.manifest["world_size"] == 1 and sharded.manifest["world_size"] == 2
        return single, sharded

    return run
