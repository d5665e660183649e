"""The run directory (contract) and :func:`load_run`.

::

    RUN/manifest.json            what ran, versions, device, seed, timings,
                                 per-analysis status and error
    RUN/<analysis>/<table>.parquet
    RUN/<analysis>/...           small artifacts

Every file is written to a temporary name in the same folder and renamed into
place, so a reader never sees half a file. A table is listed in the manifest
only once it is on disk, and an analysis is ``complete`` only once all its
tables are; ``load_run`` refuses tables of analyses that did not complete.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from probe.errors import ProbeError, first_line

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
#: Rows per parquet row group. Small enough that a reader (the dashboard) can fetch one
#: unit's rows of a large per-unit table (exemplar maps, masks) through row-group
#: statistics without decoding the whole file; whole-file reads are as fast as before.
ROW_GROUP_ROWS = 4096
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
#: The process's umask, read once: files are created as ``open()`` would (0644 under 022).
_UMASK = os.umask(0)
os.umask(_UMASK)


def utc_now() -> str:
    """Current time as an ISO-8601 UTC string."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def is_plain_name(name: object) -> bool:
    """Whether ``name`` is a plain file name that cannot escape a folder."""
    return isinstance(name, str) and bool(_SAFE_NAME.match(name)) and ".." not in name


def check_name(name: str, what: str) -> str:
    """Reject names that could escape the run directory."""
    if not is_plain_name(name):
        raise ProbeError(f"{what} name must be letters, digits, '_', '-', '.', got {name!r}")
    return name


def is_temporary(name: str) -> bool:
    """Whether ``name`` is one of the temporary files :func:`atomic_write_bytes` and
    :func:`atomic_write_table` write before their rename (``.NAME.XXXX.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; follow the umask instead
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_table(path: Path, frame: pd.DataFrame) -> None:
    """Write a DataFrame as parquet atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False, row_group_size=ROW_GROUP_ROWS)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def as_json(value: Any) -> Any:
    """``value`` as a JSON manifest reads it back (tuples become lists, paths strings)."""
    return json.loads(json.dumps(value, default=str))


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    return str(value)


class RunStore:
    """Writes one run directory. The runner owns one; plugins never write directly."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.manifest: dict[str, Any] = {}

    @property
    def manifest_path(self) -> Path:
        """Location of ``manifest.json``."""
        return self.path / MANIFEST

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest on disk, or ``None`` when the folder holds no run.

        Raises:
            ProbeError: ``path`` is a file, or its manifest is unreadable.
        """
        if self.path.exists() and not self.path.is_dir():
            raise ProbeError(f"{self.path} is a file, not a run directory; choose another --out")
        if not self.manifest_path.exists():
            return None
        return read_manifest_file(self.manifest_path)

    def save_manifest(self) -> None:
        """Write the current manifest atomically."""
        self.manifest["updated"] = utc_now()
        text = json.dumps(self.manifest, indent=2, sort_keys=False, default=_json_default)
        atomic_write_bytes(self.manifest_path, text.encode())

    def analysis_dir(self, analysis: str) -> Path:
        """Folder of one analysis's tables and artifacts."""
        return self.path / check_name(analysis, "analysis")

    def write_table(self, analysis: str, table: str, frame: pd.DataFrame) -> Path:
        """Write ``RUN/<analysis>/<table>.parquet`` atomically."""
        path = self.analysis_dir(analysis) / f"{check_name(table, 'table')}.parquet"
        atomic_write_table(path, frame)
        return path

    def write_artifact(self, analysis: str, relative: str, data: bytes) -> Path:
        """Write a small artifact under ``RUN/<analysis>/`` atomically."""
        parts = Path(relative).parts
        for part in parts:
            check_name(part, "artifact")
        path = self.analysis_dir(analysis).joinpath(*parts)
        atomic_write_bytes(path, data)
        return path


class Run:
    """A run directory as read by :func:`load_run`.

    Attributes:
        path: The run directory.
        manifest: The parsed ``manifest.json``.
    """

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._cache: dict[tuple[str, str], pd.DataFrame] = {}

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, status={self.status!r}, analyses={self.analyses})"

    @property
    def name(self) -> str:
        """The run directory's name."""
        return self.path.name

    @property
    def status(self) -> str:
        """``complete``, ``partial`` (an analysis did not complete), ``failed`` (an error
        outside the analyses), ``interrupted``, or ``running`` — only while its writer
        holds the run's lock: a run whose writer is gone (killed) reads ``interrupted``."""
        status = str(self.manifest.get("status", "unknown"))
        if status == "running":
            from probe.run_lock import writer_alive

            if not writer_alive(self.path):
                return "interrupted"
        return status

    @property
    def analyses(self) -> list[str]:
        """Analyses recorded in the manifest, in run order."""
        return list(self.manifest.get("analyses", {}))

    def analysis_status(self, analysis: str) -> str:
        """Status of one analysis."""
        return str(self.manifest.get("analyses", {}).get(analysis, {}).get("status", "missing"))

    def tables(self, analysis: str | None = None) -> list[tuple[str, str]]:
        """``(analysis, table)`` pairs that completed, optionally for one analysis."""
        out = []
        for name, entry in self.manifest.get("analyses", {}).items():
            if entry.get("status") != "complete" or (analysis and name != analysis):
                continue
            out.extend((name, table) for table in entry.get("tables", []))
        return out

    def has_table(self, analysis: str, name: str) -> bool:
        """Whether a completed table exists."""
        return (analysis, name) in self.tables()

    def table(self, analysis: str, name: str) -> pd.DataFrame:
        """One table as a DataFrame (cached after the first read)."""
        key = (analysis, name)
        if key not in self._cache:
            if analysis not in self.manifest.get("analyses", {}):
                raise ProbeError(f"run {self.path} has no analysis {analysis!r}; it has: "
                                 f"{', '.join(self.analyses) or 'none'}")
            if self.analysis_status(analysis) != "complete":
                raise ProbeError(f"analysis {analysis!r} in run {self.path} did not complete "
                                 f"(status {self.analysis_status(analysis)!r})")
            if not self.has_table(analysis, name):
                known = [t for a, t in self.tables(analysis)]
                raise ProbeError(f"analysis {analysis!r} in run {self.path} has no table "
                                 f"{name!r}; it has: {', '.join(known) or 'none'}")
            path = self.path / analysis / f"{name}.parquet"
            try:
                self._cache[key] = pd.read_parquet(path)
            except Exception as exc:  # pyarrow raises several types for a damaged file
                raise ProbeError(f"table {analysis}/{name} of run {self.path} is unreadable "
                                 f"({first_line(exc)}); the file {path} is "
                                 f"damaged or truncated") from None
        return self._cache[key]

    def all_tables(self, analysis: str) -> dict[str, pd.DataFrame]:
        """Every completed table of one analysis."""
        return {t: self.table(analysis, t) for _, t in self.tables(analysis)}

    def artifact(self, analysis: str, relative: str) -> Path:
        """Path of an artifact, checked to stay inside the run directory."""
        root = (self.path / check_name(analysis, "analysis")).resolve()
        target = (root / relative).resolve()
        if root not in target.parents:
            raise ProbeError(f"artifact path {relative!r} leaves the run directory")
        return target


def load_run(path: str | Path) -> Run:
    """Open a run directory written by probe.

    Raises:
        ProbeError: when ``path`` is not a run directory or its manifest is unreadable.
    """
    root = Path(path)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise ProbeError(f"{root} is not a probe run directory (no {MANIFEST})")
    return Run(root, read_manifest_file(manifest_path))


def read_manifest_file(path: Path) -> dict[str, Any]:
    """A ``manifest.json`` as a dict, or one clear error.

    Raises:
        ProbeError: It is unreadable, not JSON, or not a JSON object with an
            ``analyses`` object.
    """
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ProbeError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ProbeError(f"{path} is not valid JSON: {exc}") from None
    problem = manifest_problem(manifest)
    if problem:
        raise ProbeError(f"{path} is not a probe manifest: {problem}")
    return manifest


def manifest_problem(manifest: Any) -> str | None:
    """What makes ``manifest`` unusable (for ``load_run``, the report, the dashboard), or
    ``None`` when it is fine.

    Checks the type of every field the dashboard reads, and that analysis and
    table names are plain names (a table path is built from them).
    """
    if not isinstance(manifest, dict):
        return f"it is a JSON {type(manifest).__name__}, not an object"
    for key in ("arch", "dataset", "timings"):
        if manifest.get(key) is not None and not isinstance(manifest[key], dict):
            return f"'{key}' is a {type(manifest[key]).__name__}, not an object"
    analyses = manifest.get("analyses", {})
    if not isinstance(analyses, dict):
        return f"'analyses' is a {type(analyses).__name__}, not an object"
    for name, entry in analyses.items():
        if not is_plain_name(name):
            return f"analysis name {name!r} is not a plain name"
        if not isinstance(entry, dict):
            return f"analysis {name!r} is a {type(entry).__name__}, not an object"
        tables = entry.get("tables", [])
        if not isinstance(tables, list) or not all(
                isinstance(t, str) and is_plain_name(t) for t in tables):
            return f"the tables of analysis {name!r} are not a list of plain names"
        if not isinstance(entry.get("status", ""), str):
            return f"the status of analysis {name!r} is not a string"
        if entry.get("options") is not None and not isinstance(entry["options"], dict):
            return f"the options of analysis {name!r} are not an object"
    layers = manifest.get("layers")
    if layers is not None and not (isinstance(layers, list) and all(
            isinstance(x, (str, int)) and not isinstance(x, bool) for x in layers)):
        return "'layers' is not a list of names"
    if not isinstance(manifest.get("status", ""), str):
        return "'status' is not a string"
    timings = manifest.get("timings") or {}
    if "total" in timings and not _number(timings["total"]):
        return "'timings.total' is not a number"
    per_analysis = timings.get("analyses") or {}
    if not isinstance(per_analysis, dict) or not all(_number(v) for v in per_analysis.values()):
        return "'timings.analyses' is not an object of numbers"
    dataset = manifest.get("dataset") or {}
    if dataset.get("options") is not None and not isinstance(dataset["options"], dict):
        return "'dataset.options' is not an object"
    if dataset.get("name") is not None and not isinstance(dataset["name"], str):
        return "'dataset.name' is not a string"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)



def list_runs(root: str | Path) -> list[Run]:
    """Every run directory directly under ``root`` (or ``root`` itself), sorted by name."""
    base = Path(root)
    if (base / MANIFEST).is_file():
        return [load_run(base)]
    runs = []
    for child in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        if (child / MANIFEST).is_file():
            try:
                runs.append(load_run(child))
            except ProbeError:
                continue
    return runs
