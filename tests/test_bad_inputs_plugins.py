"""A plugin that calls ``sys.exit`` (at import or while registering) is skipped like any broken
plugin, never ending the command; in strict mode it is one error line (issue 14)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXIT_AT_IMPORT = '''import sys
sys.exit(3)
'''

EXIT_WHILE_REGISTERING = '''import sys
from probe import hookimpl


@hookimpl
def probe_register_datasets(register):
    sys.exit("no data for you")
'''


def _distribution(site: Path, name: str, module: str, source: str) -> None:
    """A module with an installed distribution whose ``probe`` entry point is ``name``."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[probe]\n{name} = {module}\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("exit-site")
    _distribution(target, "exits", "probe_exits_at_import", EXIT_AT_IMPORT)
    _distribution(target, "exits_late", "probe_exits_registering", EXIT_WHILE_REGISTERING)
    return target


def probe_cli(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(site)}
    environ.pop("PROBE_LOAD_PLUGINS", None)
    environ.pop("PROBE_STRICT_PLUGINS", None)
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True,
                          text=True, env=environ, timeout=300)


def test_plugins_calling_sys_exit_are_skipped_with_a_warning(site: Path):
    result = probe_cli(site, "plugins", "--json", PROBE_LOAD_PLUGINS="exits,exits_late")
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["exits"]["error"] == "it called sys.exit(3)"
    assert plugins["exits_late"]["error"] == ("PluginError: plugin exits_late failed while "
                                              "registering: it called sys.exit('no data for "
                                              "you')")
    assert "probe plugin 'exits' failed to load and was skipped" in result.stderr
    assert "lenet" in plugins and plugins["digits"]["registered"] == {"datasets": ["digits"]}


def test_a_command_still_runs_beside_an_exiting_plugin(site: Path):
    result = probe_cli(site, "datasets", "--json", PROBE_LOAD_PLUGINS="exits")
    assert result.returncode == 0, result.stderr
    assert "digits" in {d["name"] for d in json.loads(result.stdout)}


@pytest.mark.parametrize(("name", "message"), [
    ("exits", "probe: error: plugin exits failed to load: it called sys.exit(3)"),
    ("exits_late", "probe: error: plugin exits_late failed to load: PluginError: plugin "
                   "exits_late failed while registering: it called sys.exit('no data for you')"),
])
def test_strict_mode_makes_it_one_error_line(site: Path, name: str, message: str):
    result = probe_cli(site, "plugins", PROBE_LOAD_PLUGINS=name, PROBE_STRICT_PLUGINS="1")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [message]
