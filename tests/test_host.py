"""The plugin host, tested the way a user meets it: packages installed, found by entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from probe import hookimpl
from probe.errors import PluginError
from probe.host import BUILTIN_PLUGINS, Host, get_host

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "sparsity": ROOT / "examples" / "probe-sparsity",
    "broken": ROOT / "tests" / "fixtures" / "probe-broken",
    "clash": ROOT / "tests" / "fixtures" / "probe-clash",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Install the example plugin and two faulty ones with pip into a private site dir."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target),
                    *map(str, PACKAGES.values())], check=True)
    return target


def probe_cli(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(site), **env}
    environ.pop("PROBE_LOAD_PLUGINS", None)
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True,
                          text=True, env=environ, timeout=300)


def test_installed_plugins_are_listed_and_faulty_ones_reported(site: Path):
    result = probe_cli(site, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["sparsity"]["registered"] == {"analyses": ["sparsity"]}
    assert plugins["sparsity"]["version"] == "0.2.0"
    assert plugins["sparsity"]["source"] == "entry-point" and plugins["sparsity"]["error"] is None
    assert "probe_dependency_that_does_not_exist" in plugins["broken"]["error"]
    # The clash names both plugins and does not replace the built-in.
    assert "unit_stats" in plugins["clash"]["error"] and "clash" in plugins["clash"]["error"]
    assert plugins["unit_stats"]["registered"] == {"analyses": ["unit-stats"]}
    assert "failed to load and was skipped" in result.stderr
    for module in BUILTIN_PLUGINS:
        assert plugins[module.rsplit(".", 1)[-1]]["source"] == "builtin"


def test_example_plugin_runs_in_probe_run(site: Path, tmp_path: Path):
    out = tmp_path / "run"
    result = probe_cli(site, "run", "--arch", "lenet5", "--dataset", "digits",
                       "--set", "dataset.size=64", "--analysis", "sparsity",
                       "--analysis", "unit-stats", "--out", str(out), "--quiet",
                       PROBE_LOAD_PLUGINS="sparsity")
    assert result.returncode == 0, result.stderr
    import probe

    run = probe.load_run(out)
    units = run.table("sparsity", "units")
    stats = run.table("unit-stats", "units").set_index(["layer", "unit"])
    # Cross-check against unit-stats from the same forward passes: quiet = 1 - positive.
    joined = units.set_index(["layer", "unit"]).join(stats)
    assert (abs(joined["fraction_quiet"] - (1 - joined["fraction_positive"])) < 1e-9).all()
    hist = run.table("sparsity", "histogram")
    per_layer = hist.groupby("layer")["count"].sum()
    assert (per_layer == stats.groupby(level="layer")["count"].sum()[per_layer.index]).all()
    assert run.manifest["versions"]["plugin:sparsity"] == "0.2.0"


def test_load_plugins_selects_and_strict_mode_fails(site: Path):
    none = probe_cli(site, "plugins", "--json", PROBE_LOAD_PLUGINS="")
    names = {p["name"] for p in json.loads(none.stdout)}
    assert not names & {"sparsity", "broken", "clash"}
    strict = probe_cli(site, "plugins", PROBE_LOAD_PLUGINS="sparsity,broken",
                       PROBE_STRICT_PLUGINS="1")
    assert strict.returncode == 2
    assert strict.stderr.strip().splitlines()[-1].startswith("probe: error: plugin broken "
                                                              "failed to load")
    assert "Traceback" not in strict.stderr


class _Misspelt:
    @hookimpl
    def probe_register_analysis(self, register):  # missing "es"
        pass


class _Twice:
    @hookimpl
    def probe_register_datasets(self, register):
        register(get_host().datasets.get("digits"))


def test_runtime_registration_errors_name_the_plugin():
    host = Host()
    host.load()
    with pytest.raises(PluginError, match="plugin misspelt"):
        host.add_plugin(_Misspelt(), "misspelt")
    with pytest.raises(PluginError, match="by plugin digits and by plugin twice"):
        host.add_plugin(_Twice(), "twice")
    assert "twice" not in host.plugins and not host.pm.has_plugin("twice")


class _TinyArchitecture:
    @hookimpl
    def probe_register_architectures(self, register):
        from torch import nn

        from probe import ArchitectureSpec, Option

        def build(num_classes: int, in_channels: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(4, num_classes))

        register(ArchitectureSpec(
            name="test-tiny", build=build, task="classification", family="test",
            input_size=32, in_channels=1,
            options=(Option("num_classes", int, 10), Option("in_channels", int, 1)),
            layers=lambda model: {"conv": "1"}))


def test_a_runtime_architecture_is_usable_by_name(tmp_path):
    import probe

    host = get_host()
    host.add_plugin(_TinyArchitecture(), "test-tiny-arch")
    try:
        run = probe.analyze("test-tiny", "digits", ["unit-stats"], out=tmp_path / "r",
                            dataset_options={"size": 20})
        units = run.table("unit-stats", "units")
        assert units["layer"].unique().tolist() == ["conv"] and len(units) == 4
        assert (units["fraction_positive"] <= 1).all() and (units["max"] >= 0).all()  # post-ReLU
        assert run.manifest["arch"]["options"] == {"num_classes": 10, "in_channels": 1}
    finally:
        host.remove_plugin("test-tiny-arch")
    assert "test-tiny" not in host.architectures and not host.pm.has_plugin("test-tiny-arch")
