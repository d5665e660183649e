"""Start-up cost of the ``probe`` command line, measured in fresh processes.

    python benchmarks/bench_startup.py [--runs 5] [--old /tmp/probe-old]

Runs each command (``probe --help``, ``probe analyses``, ``probe plugins``, an
argument error, ...) ``--runs`` times, each in a new interpreter exactly as the
``probe`` script starts it, and prints the mean and best wall seconds, how many
modules were imported and which heavy libraries among them.

``--old DIR`` names a folder whose ``probe/`` package is the code to compare
with (e.g. a copy of the tree before a change, with ``plugins/`` and
``dashboards/`` copied to ``probe/plugins`` and ``probe/dashboards``); it is put
first on ``PYTHONPATH``, the two versions are run alternately (so a load that
comes and goes on the machine hits both alike) and the ratio new/old is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

#: Libraries whose import is worth naming (each costs 0.1–2 s on a small machine).
HEAVY = ("torch", "torchvision", "pandas", "pyarrow", "numpy", "scipy", "sklearn", "plotly",
         "dash", "flask", "PIL", "safetensors", "tqdm", "pluggy")

#: Commands measured by default: (label, arguments of ``probe``).
COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("probe --help", ("--help",)),
    ("probe run --help", ("run", "--help")),
    ("probe run (argument error)", ("run",)),
    ("probe bogus (argument error)", ("bogus",)),
    ("probe analyses", ("analyses",)),
    ("probe plugins", ("plugins",)),
    ("probe analyses unit-stats", ("analyses", "unit-stats")),
)

#: Footnotes printed under the table, by command label.
NOTES = {"probe analyses unit-stats": "code before `probe analyses NAME` existed answers it "
                                      "with a usage error (no plugins loaded): not comparable"}

#: What the child runs: the ``probe`` script's own entry point, then a note of its modules.
CHILD = """\
import atexit, json, sys
def _note():
    with open(_path, "w") as f:
        json.dump(sorted(sys.modules), f)
_path = sys.argv.pop(1)
atexit.register(_note)
from probe.cli import main
sys.exit(main())
"""


@dataclass
class Sample:
    """Wall seconds and imported modules of one command under one version of the code."""

    seconds: list[float] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)

    @property
    def mean(self) -> float:
        """Mean wall seconds."""
        return sum(self.seconds) / len(self.seconds)

    @property
    def heavy(self) -> list[str]:
        """The heavy libraries (:data:`HEAVY`) that were imported."""
        loaded = set(self.modules)
        return [name for name in HEAVY if name in loaded]


def run_once(args: tuple[str, ...], pythonpath: str | None, cwd: Path) -> tuple[float, list[str]]:
    """Wall seconds and ``sys.modules`` at exit of one ``probe ARGS`` in a fresh process."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.NamedTemporaryFile("r", suffix=".json") as note:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", CHILD, note.name, *args], env=env, cwd=cwd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        seconds = time.perf_counter() - start
        text = Path(note.name).read_text()
    return seconds, json.loads(text) if text else []


def main() -> None:
    """Measure every command and print a table (and ratios to ``--old``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="processes per command and version")
    parser.add_argument("--old", type=Path, help="folder holding the old probe/ package")
    parser.add_argument("--only", action="append", default=[], metavar="LABEL",
                        help="measure only commands whose label contains LABEL")
    args = parser.parse_args()
    commands = [c for c in COMMANDS if not args.only or any(o in c[0] for o in args.only)]
    versions: dict[str, str | None] = {"new": None}
    if args.old is not None:
        versions = {"old": str(args.old.resolve()), "new": None}
    results: dict[tuple[str, str], Sample] = {}
    with tempfile.TemporaryDirectory() as cwd:  # away from the checkout: no stray ./probe
        for label, argv in commands:
            for path in versions.values():  # one warm-up each (file system cache)
                run_once(argv, path, Path(cwd))
            for _ in range(args.runs):
                for version, path in versions.items():
                    seconds, modules = run_once(argv, path, Path(cwd))
                    sample = results.setdefault((label, version), Sample())
                    sample.seconds.append(seconds)
                    sample.modules = modules
    print(f"{'command':<30} {'version':<7} {'mean s':>7} {'best s':>7} {'modules':>8}  heavy")
    for label, _ in commands:
        for version in versions:
            s = results[(label, version)]
            print(f"{label:<30} {version:<7} {s.mean:7.2f} {min(s.seconds):7.2f} "
                  f"{len(s.modules):8d}  {', '.join(s.heavy) or '-'}")
        if "old" in versions:
            old, new = results[(label, "old")], results[(label, "new")]
            print(f"{'':<30} {'new/old':<7} {new.mean / old.mean:7.2f}")
    for label, _ in commands:
        if label in NOTES and "old" in versions:
            print(f"note: {label}: {NOTES[label]}")
    print(f"({args.runs} runs each after one warm-up, {sys.executable}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
