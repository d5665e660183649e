"""The closing summary of ``probe run``: what each analysis did, what it wrote, what next.

Read back from the run directory (its manifest and the parquet footers), so a
run that was skipped because it is already complete is summarised the same way
as one that has just finished. :func:`summary_record` is the JSON form
(``probe run --json``); :func:`format_summary` the human one (standard error).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _rows(path: Path) -> int | None:
    """Rows of a parquet table, read from its footer (``None`` when unreadable)."""
    try:
        import pyarrow.parquet as pq

        return int(pq.read_metadata(path).num_rows)
    except Exception:  # a summary must not fail on one odd file
        return None


def summary_record(run_dir: Path, status: str, seconds: float) -> dict[str, Any]:
    """A run's summary as JSON-ready data.

    Args:
        run_dir: The run directory.
        status: What the command did: ``complete``, ``partial`` or ``skipped``.
        seconds: Wall seconds the command spent on this run.
    """
    from probe.store import MANIFEST, read_manifest_file

    try:
        manifest = read_manifest_file(Path(run_dir) / MANIFEST)
    except Exception:
        manifest = {}
    timings = manifest.get("timings") or {}
    per_analysis = timings.get("analyses") or {}
    analyses: dict[str, Any] = {}
    for name, entry in (manifest.get("analyses") or {}).items():
        tables = {table: _rows(Path(run_dir) / name / f"{table}.parquet")
                  for table in entry.get("tables") or []}
        analyses[name] = {"status": entry.get("status"), "error": entry.get("error"),
                          "seconds": entry.get("seconds", per_analysis.get(name)),
                          "tables": tables}
    dataset = manifest.get("dataset") or {}
    return {"run": str(run_dir), "status": status, "seconds": round(seconds, 2),
            "run_seconds": timings.get("total"), "run_status": manifest.get("status"),
            "arch": (manifest.get("arch") or {}).get("name"), "dataset": dataset.get("name"),
            "images": dataset.get("size"), "device": manifest.get("device"),
            "analyses": analyses}


def _count(rows: int | None) -> str:
    return "? rows" if rows is None else f"{rows:,} row{'s' if rows != 1 else ''}"


def _seconds(value: Any) -> str:
    return f"{value:.1f} s" if isinstance(value, (int, float)) else "-"


def format_summary(record: dict[str, Any]) -> str:
    """The human summary of one run: a heading, a line per analysis, the next commands."""
    what = ", ".join(str(x) for x in (
        f"{record['arch']} on {record['dataset']}" if record["dataset"] else record["arch"],
        f"{record['images']} images" if record["images"] is not None else None,
        record["device"]) if x)
    if record["status"] == "skipped":
        heading = (f"{record['run']}: already complete, nothing recomputed "
                   f"({_seconds(record['seconds'])} to check)")
    else:
        heading = f"{record['run']}: {record['status']} in {_seconds(record['seconds'])}"
    lines = [f"{heading}{f' ({what})' if what else ''}"]
    analyses = record["analyses"]
    pad = max((len(name) for name in analyses), default=0)
    for name, entry in analyses.items():
        status = str(entry["status"])
        if status == "complete":
            tail = ", ".join(f"{table} {_count(rows)}" for table, rows in
                             entry["tables"].items()) or "no tables"
        else:
            tail = str(entry.get("error") or status)
        lines.append(f"  {name:<{pad}}  {status:<8}  {_seconds(entry['seconds']):>8}  {tail}")
    lines.extend(next_commands([Path(record["run"])]))
    return "\n".join(lines)


def format_sweep_summary(records: Sequence[dict[str, Any]], seconds: float) -> str:
    """The human summary of many runs: a line per run, the total, the next commands."""
    lines = ["runs:"]
    for record in records:
        done = ", ".join(f"{name} {entry['status']}" for name, entry in
                         record["analyses"].items())
        took = "already complete" if record["status"] == "skipped" else \
            f"{record['status']} in {_seconds(record['seconds'])}"
        lines.append(f"  {record['run']}: {took} ({done})")
    lines.append(f"total {_seconds(seconds)}")
    lines.extend(next_commands([Path(r["run"]) for r in records]))
    return "\n".join(lines)


def next_commands(runs: Sequence[Path]) -> list[str]:
    """What to type next: the dashboard and a report of ``runs`` (their common folder)."""
    if not runs:
        return []
    target = runs[0] if len(runs) == 1 else Path(os.path.commonpath([str(p) for p in runs]))
    quoted = shlex.quote(str(target))
    return ["next:", f"  probe dash {quoted}", f"  probe report {quoted} -o report.html"]
