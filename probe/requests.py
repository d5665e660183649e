"""Run requests: what ``probe run`` flags and TOML run files describe, in one shape.

A TOML run file uses the same keys as the flags::

    [defaults]                 # optional, applies to every run
    dataset = "digits"
    device = "cpu"

    [[run]]
    arch = "lenet5"
    checkpoint = "checkpoints/lenet5.safetensors"
    analysis = ["unit-stats"]
    out = "runs/lenet5"
    set = { "unit-stats.top_k" = 4 }

A file without ``[[run]]`` tables describes a single run with top-level keys.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.errors import ProbeError
from probe.options import parse_assignments

KEYS = ("arch", "dataset", "analysis", "out", "checkpoint", "layers", "device", "batch_size",
        "workers", "seed", "set", "overwrite")


@dataclass
class RunRequest:
    """One run, as the command line or a run file describes it."""

    arch: str
    analyses: list[str]
    out: Path
    dataset: str | None = None
    checkpoint: Path | None = None
    layers: list[str] = field(default_factory=list)
    device: str | None = None
    batch_size: int = 64
    workers: int = 0
    seed: int = 0
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    overwrite: bool = False

    def analyze_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`probe.api.analyze`."""
        owners = set(self.settings)
        allowed = {"arch", "dataset", *self.analyses}
        stray = sorted(owners - allowed)
        if stray:
            raise ProbeError(f"--set {stray[0]}.…: {stray[0]!r} is neither 'arch', 'dataset' "
                             f"nor an analysis of this run ({', '.join(self.analyses)})")
        if self.checkpoint is not None and not self.checkpoint.is_file():
            raise ProbeError(f"checkpoint file not found: {self.checkpoint}")
        return {
            "model_or_arch": self.arch,
            "dataset": self.dataset,
            "analyses": self.analyses,
            "out": self.out,
            "checkpoint": self.checkpoint,
            "arch_options": self.settings.get("arch", {}),
            "dataset_options": self.settings.get("dataset", {}),
            "analysis_options": {a: self.settings[a] for a in self.analyses
                                 if a in self.settings},
            "layers": self.layers,
            "device": self.device,
            "batch_size": self.batch_size,
            "workers": self.workers,
            "seed": self.seed,
            "overwrite": self.overwrite,
        }


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _settings(value: Any, where: str) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if isinstance(value, list):
        return parse_assignments([str(v) for v in value])
    if not isinstance(value, Mapping):
        raise ProbeError(f"{where}: 'set' must be a table or a list of KEY=VALUE strings")
    grouped: dict[str, dict[str, Any]] = {}
    for key, val in value.items():
        if isinstance(val, Mapping):
            grouped.setdefault(key, {}).update(val)
            continue
        owner, dot, name = str(key).partition(".")
        if not dot:
            raise ProbeError(f"{where}: set key {key!r} must be OWNER.OPTION")
        grouped.setdefault(owner, {})[name] = val
    return grouped


def request_from_mapping(entry: Mapping[str, Any], where: str,
                         base: Path | None = None) -> RunRequest:
    """Build a request from a run-file table (paths relative to ``base``)."""
    unknown = sorted(set(entry) - set(KEYS))
    if unknown:
        raise ProbeError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(KEYS)}")
    for key in ("arch", "out"):
        if not entry.get(key):
            raise ProbeError(f"{where}: missing required key {key!r}")

    def path(value: Any) -> Path | None:
        if value is None:
            return None
        p = Path(str(value))
        return p if p.is_absolute() or base is None else base / p

    try:
        return RunRequest(
            arch=str(entry["arch"]), analyses=_as_list(entry.get("analysis")),
            out=path(entry["out"]) or Path(), dataset=entry.get("dataset"),
            checkpoint=path(entry.get("checkpoint")), layers=_as_list(entry.get("layers")),
            device=entry.get("device"), batch_size=int(entry.get("batch_size", 64)),
            workers=int(entry.get("workers", 0)), seed=int(entry.get("seed", 0)),
            settings=_settings(entry.get("set"), where),
            overwrite=bool(entry.get("overwrite", False)),
        )
    except (TypeError, ValueError) as exc:
        raise ProbeError(f"{where}: {exc}") from None


def load_runfile(path: str | Path) -> list[RunRequest]:
    """Every run a TOML run file describes (paths resolved relative to the file)."""
    source = Path(path)
    if not source.is_file():
        raise ProbeError(f"run file not found: {source}")
    try:
        data = tomllib.loads(source.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ProbeError(f"{source} is not valid TOML: {exc}") from None
    defaults = data.pop("defaults", {})
    runs = data.pop("run", None)
    if runs is None:
        entries = [{**defaults, **data}]
    else:
        if data:
            raise ProbeError(f"{source}: top-level keys {sorted(data)} beside [[run]] tables; "
                             f"put shared keys under [defaults]")
        entries = [{**defaults, **run} for run in runs]
    return [request_from_mapping(e, f"{source} run {i + 1}", source.parent)
            for i, e in enumerate(entries)]
