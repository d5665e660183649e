"""``probe new-plugin``: the starter package imports, conforms, and its own tests pass."""

import os
import subprocess
import sys

import pytest

from probe.cli import main


def test_new_plugin_writes_a_package_whose_tests_pass(tmp_path, capsys):
    assert main(["new-plugin", "unit-peaks", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "probe-unit-peaks"
    assert "wrote" in capsys.readouterr().out
    assert (root / "pyproject.toml").read_text().count('unit-peaks = "unit_peaks"') == 1
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(root / "tests")], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


@pytest.mark.parametrize("name", ["Bad", "9lives", "class", "a_b"])
def test_bad_names_are_one_line_errors(tmp_path, capsys, name):
    assert main(["new-plugin", name, "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("probe: error: ") and err.count("\n") == 1


def test_an_existing_folder_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "probe-unit-peaks").mkdir()
    assert main(["new-plugin", "unit-peaks", "--dir", str(tmp_path)]) == 2
    assert "exists" in capsys.readouterr().err
