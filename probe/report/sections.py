"""The sections of a report: one overview per run and one section per analysis.

Each analysis section is drawn by the analysis class's own ``figures(tables)``
(the functions the dashboard uses). An analysis whose plugin is not installed
here, whose ``figures`` returns nothing, or whose ``figures`` raises, is shown
through its tables, with the reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from probe.report.assets import escape, figure_html, png_data_uri
from probe.report.exemplars import unit_strips
from probe.report.hierarchy import detector_counts, hierarchy_figure
from probe.report.tables import frame_html, table_summary_html
from probe.store import Run


def slug(*parts: object) -> str:
    """An HTML id from ``parts`` (letters, digits and ``-`` only)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", "-".join(str(p) for p in parts)).strip("-").lower()


def analysis_class(name: str) -> type | None:
    """The registered analysis class called ``name``, or ``None`` when not installed."""
    from probe.host import get_host

    registry = get_host().analyses
    return registry.get(name) if name in registry else None


def _definition_list(items: list[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in items
                   if v not in (None, "", [], {}))
    return f'<table class="meta">{rows}</table>'


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str) if isinstance(value, dict) else \
        str(value)


def run_metadata(run: Run) -> list[tuple[str, Any]]:
    """``(field, value)`` pairs describing a run (architecture, weights, data, timings)."""
    m = run.manifest
    arch = m.get("arch") or {}
    data = m.get("dataset") or {}
    checkpoint = arch.get("checkpoint")
    timings = m.get("timings") or {}
    analyses = ", ".join(f"{name} ({entry.get('status', '?')})"
                         for name, entry in m.get("analyses", {}).items())
    return [
        ("status", run.status),
        ("architecture", arch.get("name") or arch.get("class")),
        ("architecture options", _compact(arch.get("options") or {})),
        ("checkpoint", Path(checkpoint).name if checkpoint else "none (initial weights)"),
        ("checkpoint sha256", (arch.get("checkpoint_sha256") or "")[:16]),
        ("data set", f"{data.get('name')} ({data.get('size')} images)" if data else "none"),
        ("data set options", _compact(data.get("options") or {})),
        ("layers", ", ".join(m.get("layers", []))),
        ("analyses", analyses),
        ("device", f"{m.get('device')} ({m.get('device_name', '')})"),
        ("seed", m.get("seed")),
        ("total seconds", f"{timings['total']:.1f}" if "total" in timings else None),
        ("finished", m.get("finished")),
        ("versions", ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items())),
    ]


def load_run_dataset(run: Run) -> tuple[Any, str | None]:
    """The run's data set reloaded from its manifest, or ``(None, reason)``."""
    from probe.api import load_dataset
    from probe.errors import ProbeError

    record = run.manifest.get("dataset")
    if not record:
        return None, "the run has no data set"
    try:
        return load_dataset(record["name"], **(record.get("options") or {})), None
    except (ProbeError, KeyError, TypeError, ValueError, OSError) as exc:
        return None, f"data set {record.get('name')!r} could not be reloaded: {exc}"


def exemplars_html(run: Run, dataset: Any, reason: str | None) -> str:
    """The unit-exemplar block of a run ("" when the run stores no exemplars)."""
    strips = unit_strips(run, dataset)
    if not strips:
        return f'<p class="note">No unit exemplars: {escape(reason)}.</p>' if reason else ""
    blocks = []
    for layer in dict.fromkeys(s.layer for s in strips):
        items = "".join(
            f'<figure class="unit"><img alt="{escape(s.layer)} unit {s.unit}" '
            f'src="{png_data_uri(s.pixels)}"><figcaption>{escape(s.caption)}</figcaption>'
            f'</figure>' for s in strips if s.layer == layer)
        blocks.append(f'<div class="layer-exemplars"><h4>layer {escape(layer)}</h4>'
                      f'<div class="units">{items}</div></div>')
    return ('<div class="exemplars"><h3>Unit exemplars</h3><p class="note">Top images of '
            'each unit, the unit\'s activation overlaid in red.</p>' + "".join(blocks) +
            "</div>")


def analysis_section(run: Run, name: str, anchor: str) -> str:
    """One ``<section class="analysis">`` for a completed analysis of ``run``."""
    entry = run.manifest["analyses"][name]
    tables = run.all_tables(name)
    cls = analysis_class(name)
    parts = [f'<section class="analysis" id="{anchor}" data-analysis="{escape(name)}" '
             f'data-run="{escape(run.name)}"><h3>{escape(name)}</h3>']
    description = getattr(cls, "description", "") if cls else ""
    meta = [("description", description),
            ("options", _compact(entry.get("options") or {})),
            ("seconds", entry.get("seconds")), ("tables", ", ".join(tables))]
    parts.append(_definition_list(meta))
    figures: list[Any] = []
    note = None
    if cls is None:
        note = f"the plugin that provides analysis {name!r} is not installed here"
    else:
        try:
            figures = list(cls.figures(tables) or [])
        except Exception as exc:  # a plugin's figure bug must not lose the report
            note = f"figures({name}) raised {type(exc).__name__}: {exc}"
        if not figures and note is None:
            note = "this analysis draws no figures"
    for figure in figures:
        parts.append(figure_html(figure))
    if note:
        parts.append(f'<p class="note">{escape(note)}; its tables follow.</p>')
    layers = run.manifest.get("layers", [])
    for table, frame in tables.items():
        parts.append(table_summary_html(table, frame, layers))
    parts.append("</section>")
    return "\n".join(parts)


def run_section(run: Run, index: int) -> tuple[str, list[tuple[str, str]]]:
    """The whole section of one run and its table-of-contents entries ``(anchor, title)``."""
    run_anchor = slug("run", index, run.name)
    toc = [(run_anchor, f"run {run.name}")]
    parts = [f'<section class="run" id="{run_anchor}"><h2>Run {escape(run.name)}</h2>',
             _definition_list(run_metadata(run))]
    failed = {n: e for n, e in run.manifest.get("analyses", {}).items()
              if e.get("status") != "complete"}
    for name, entry in failed.items():
        parts.append(f'<p class="failed">analysis {escape(name)} did not complete '
                     f'({escape(entry.get("status"))}): {escape(entry.get("error") or "")}</p>')
    counts = detector_counts(run)
    if counts is not None and not counts.empty:
        anchor = slug(run_anchor, "hierarchy")
        toc.append((anchor, "hierarchy of parts"))
        parts.append(f'<div class="hierarchy" id="{anchor}"><h3>Hierarchy of parts</h3>'
                     '<p class="note">Detector units per layer and concept category: '
                     'colour and texture early, parts in the middle, objects late where the '
                     'hierarchy emerges.</p>')
        parts.append(figure_html(hierarchy_figure(counts, f"hierarchy of parts: {run.name}")))
        parts.append(frame_html(counts, max_rows=80, caption="detectors per layer and category"))
        parts.append("</div>")
    dataset, reason = load_run_dataset(run)
    block = exemplars_html(run, dataset, reason)
    if block:
        anchor = slug(run_anchor, "exemplars")
        toc.append((anchor, "unit exemplars"))
        parts.append(f'<div id="{anchor}">{block}</div>')
    for name in run.analyses:
        if name in failed:
            continue
        anchor = slug(run_anchor, "analysis", name)
        toc.append((anchor, name))
        parts.append(analysis_section(run, name, anchor))
    parts.append("</section>")
    return "\n".join(parts), toc
