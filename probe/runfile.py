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

A file without ``[[run]]`` or ``[[sweep]]`` tables describes a single run with
top-level keys.

A ``[[sweep]]`` table describes a grid: ``arch``, ``checkpoint``, ``dataset``
and ``seed`` may be lists, and ``analysis`` may be a list of analysis lists
(a plain list of names runs them all together in every run, sharing the
forward passes); the runs are the product of the lists, in that order.
``out`` (required) and ``checkpoint`` are templates over the placeholders
``{arch}``, ``{dataset}``, ``{checkpoint}`` (the checkpoint file's stem),
``{analysis}`` (names joined by ``+``), ``{seed}`` and ``{index}``; ``"none"`` in
a checkpoint list means the initial weights::

    [[sweep]]
    arch = ["vgg11", "deformable_vgg11"]
    checkpoint = "checkpoints/{arch}.safetensors"
    dataset = ["parts"]
    analysis = ["unit-stats", "dissection"]
    out = "runs/{arch}-{dataset}-{checkpoint}"
"""

from __future__ import annotations

import itertools
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe.errors import ProbeError
from probe.options import parse_assignments

if TYPE_CHECKING:
    from probe.plan import RunPlan

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
    label: str = ""

    def validate(self) -> None:
        """Check what needs no loading: ``--set`` owners and the checkpoint file."""
        owners = set(self.settings)
        allowed = {"arch", "dataset", *self.analyses}
        stray = sorted(owners - allowed)
        if stray:
            raise ProbeError(f"--set {stray[0]}.…: {stray[0]!r} is neither 'arch', 'dataset' "
                             f"nor an analysis of this run ({', '.join(self.analyses)})")
        if self.checkpoint is not None and not self.checkpoint.is_file():
            raise ProbeError(f"checkpoint file not found: {self.checkpoint}")
        if self.batch_size < 1:
            raise ProbeError(f"batch size must be >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise ProbeError(f"workers must be >= 0, got {self.workers}")

    @property
    def analysis_options(self) -> dict[str, dict[str, Any]]:
        """``--set ANALYSIS.OPTION`` values, by analysis."""
        return {a: self.settings[a] for a in self.analyses if a in self.settings}

    def identity(self) -> dict[str, Any]:
        """The run's identity, computed without loading data or weights."""
        from probe.plan import identity_of_request

        self.validate()
        return identity_of_request(
            self.arch, self.dataset, checkpoint=self.checkpoint,
            arch_options=self.settings.get("arch", {}),
            dataset_options=self.settings.get("dataset", {}), layers=self.layers,
            seed=self.seed)

    def plan(self) -> RunPlan:
        """Resolve the request into a :class:`~probe.plan.RunPlan` (loads data and model)."""
        from probe.plan import plan_run

        self.validate()
        return plan_run(self.arch, self.dataset, self.analyses, checkpoint=self.checkpoint,
                        arch_options=self.settings.get("arch", {}),
                        dataset_options=self.settings.get("dataset", {}),
                        analysis_options=self.analysis_options, layers=self.layers,
                        batch_size=self.batch_size, seed=self.seed)


#: What each run-file key takes: ``(accepted types, how to name them)``; lists of
#: strings are accepted where a comma-separated string is.
_KEY_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "arch": ((str,), "a string"),
    "dataset": ((str,), "a string"),
    "out": ((str,), "a string (a folder)"),
    "checkpoint": ((str,), "a string (a file)"),
    "device": ((str,), "a string such as \"cpu\" or \"cuda:0\""),
    "analysis": ((str, list), "a string or a list of strings"),
    "layers": ((str, list), "a string or a list of strings"),
    "batch_size": ((int,), "an integer"),
    "workers": ((int,), "an integer"),
    "seed": ((int,), "an integer"),
    "overwrite": ((bool,), "true or false"),
    "set": ((dict, list), "a table or a list of \"KEY=VALUE\" strings"),
}


def _describe_value(value: Any) -> str:
    kind = {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)
    return f"{value!r} ({kind})"


def check_types(entry: Mapping[str, Any], where: str) -> None:
    """Each key's value has the type the key takes; one line naming the key and the file.

    Raises:
        ProbeError: e.g. ``runs.toml run 1: key 'batch_size' must be an integer, got
            'big' (a string)``.
    """
    for key, value in entry.items():
        if key not in _KEY_TYPES:
            continue
        types, expected = _KEY_TYPES[key]
        ok = isinstance(value, types) and not (bool not in types and isinstance(value, bool))
        if ok and isinstance(value, list) and key in ("analysis", "layers"):
            ok = all(isinstance(v, str) for v in value)
        if not ok:
            hint = ""
            if isinstance(value, list) and key in GRID_KEYS:
                hint = "; a list of values belongs in a [[sweep]] table"
            raise ProbeError(f"{where}: key {key!r} must be {expected}, got "
                             f"{_describe_value(value)}{hint}")


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
        if not all(isinstance(v, str) for v in value):
            raise ProbeError(f"{where}: key 'set' must be a table or a list of \"KEY=VALUE\" "
                             f"strings, got {_describe_value(value)}")
        try:
            return parse_assignments(value)
        except ProbeError as exc:
            raise ProbeError(f"{where}: key 'set': {exc}") from None
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
    check_types(entry, where)

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


#: Keys of a ``[[sweep]]`` table whose value may be a list (a grid axis), in product order.
GRID_KEYS = ("arch", "checkpoint", "dataset", "analysis", "seed")
#: Placeholders of the ``out`` and ``checkpoint`` templates.
PLACEHOLDERS = ("arch", "dataset", "checkpoint", "analysis", "seed", "index")


def _axis(key: str, value: Any) -> list[Any]:
    """The values of one grid key (a scalar is an axis of one)."""
    if key == "analysis":
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            return [list(v) for v in value]
        return [value]
    if isinstance(value, list):
        if not value:
            raise ValueError(f"sweep key {key!r} is an empty list")
        return list(value)
    return [value]


def _fill(template: str, fields: Mapping[str, Any], key: str, where: str) -> str:
    names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    unknown = [n for n in names if n not in fields]
    if unknown:
        raise ProbeError(f"{where}: {key} template {template!r} uses {{{unknown[0]}}}; "
                         f"known placeholders: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
    return template.format(**fields)


def expand_sweep(entry: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """The run tables of one ``[[sweep]]`` table: the product of its list-valued keys.

    Returns:
        One mapping per run with the same keys as a ``[[run]]`` table, ``out``
        and ``checkpoint`` filled in.
    """
    if not entry.get("out"):
        raise ProbeError(f"{where}: missing required key 'out' (a template such as "
                         f"\"runs/{{arch}}-{{dataset}}-{{checkpoint}}\")")
    try:
        axes = [_axis(key, entry.get(key)) for key in GRID_KEYS]
    except ValueError as exc:
        raise ProbeError(f"{where}: {exc}") from None
    runs = []
    for index, values in enumerate(itertools.product(*axes)):
        run = dict(entry)
        run.update({k: v for k, v in zip(GRID_KEYS, values, strict=True) if v is not None})
        fields: dict[str, Any] = {
            "arch": run.get("arch", ""), "dataset": run.get("dataset") or "none",
            "analysis": "+".join(_as_list(run.get("analysis"))),
            "seed": run.get("seed", 0), "index": index, "checkpoint": "none"}
        if str(run.get("checkpoint", "")).lower() in ("", "none"):
            run.pop("checkpoint", None)  # "none" in a checkpoint list: initial weights
        else:
            run["checkpoint"] = _fill(str(run["checkpoint"]), fields, "checkpoint", where)
            fields["checkpoint"] = Path(run["checkpoint"]).stem
        run["out"] = _fill(str(run["out"]), fields, "out", where)
        runs.append(run)
    return runs


def load_runfile(path: str | Path) -> list[RunRequest]:
    """Every run a TOML run file describes (paths resolved relative to the file).

    ``[[run]]`` tables come first, then the expanded ``[[sweep]]`` grids, in
    file order; ``[defaults]`` applies to both. Two runs writing the same
    folder are an error.
    """
    source = Path(path)
    if not source.is_file():
        raise ProbeError(f"run file not found: {source}")
    try:
        data = tomllib.loads(source.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ProbeError(f"{source} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ProbeError(f"{source} is not valid TOML: it is not UTF-8 text") from None
    except OSError as exc:
        raise ProbeError(f"cannot read run file {source}: {exc.strerror or exc}") from None
    defaults = data.pop("defaults", {})
    runs = data.pop("run", None)
    sweeps = data.pop("sweep", None)
    if not isinstance(defaults, dict):
        raise ProbeError(f"{source}: 'defaults' must be a table ([defaults]), got "
                         f"{_describe_value(defaults)}")
    for key, tables in (("run", runs), ("sweep", sweeps)):
        if tables is not None and not (isinstance(tables, list) and
                                       all(isinstance(t, dict) for t in tables)):
            raise ProbeError(f"{source}: {key!r} must be an array of tables ([[{key}]]), got "
                             f"{_describe_value(tables)}")
    entries: list[tuple[str, dict[str, Any]]] = []
    if runs is None and sweeps is None:
        entries = [(f"{source}", {**defaults, **data})]
    else:
        if data:
            raise ProbeError(f"{source}: top-level keys {sorted(data)} beside [[run]]/[[sweep]] "
                             f"tables; put shared keys under [defaults]")
        for i, run in enumerate(runs or []):
            entries.append((f"{source} run {i + 1}", {**defaults, **run}))
        for i, sweep in enumerate(sweeps or []):
            where = f"{source} sweep {i + 1}"
            for j, run in enumerate(expand_sweep({**defaults, **sweep}, where)):
                entries.append((f"{where} run {j + 1}", run))
    requests = [request_from_mapping(e, where, source.parent) for where, e in entries]
    seen: dict[Path, str] = {}
    for (where, _), request in zip(entries, requests, strict=True):
        request.label = where
        key = request.out.resolve()
        if key in seen:
            raise ProbeError(f"{where} writes {request.out}, as {seen[key]} does; give each run "
                             f"its own out (e.g. a template with {{arch}}, {{dataset}}, "
                             f"{{checkpoint}})")
        seen[key] = where
    return requests
