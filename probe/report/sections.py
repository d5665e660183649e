"""The sections of a report: per run a one-page summary, each analysis's sections, an appendix.

Everything an analysis contributes comes from its view hooks (``headlines``,
``report_sections``); this module names no analysis and guesses no column.
An analysis whose plugin is missing here, or whose hook fails, is named with
the reason in its place.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from probe.report.assets import escape
from probe.report.render import facts, pictures, render, section, table
from probe.store import Run
from probe.views import Headline, Pictures, RunView, Table
from probe.views.contributions import contributions
from probe.views.format import format_value, scalar_columns
from probe.views.summary import accuracy, layer_summary

#: Largest CSV attached to the report inline (bigger tables are named with their file).
MAX_ATTACHED_BYTES = 1_500_000


def slug(*parts: object) -> str:
    """An HTML id from ``parts`` (letters, digits and ``-`` only)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", "-".join(str(p) for p in parts)).strip("-").lower()


def _options(value: Any) -> str:
    if not value:
        return "defaults"
    if isinstance(value, dict):
        return ", ".join(f"{k}={json.dumps(v) if isinstance(v, list | dict) else v}"
                         for k, v in value.items())
    return str(value)


def run_facts(view: RunView) -> list[tuple[str, Any]]:
    """``(field, value)`` pairs describing a run for people."""
    m = view.manifest
    arch = m.get("arch") or {}
    data = m.get("dataset") or {}
    checkpoint = arch.get("checkpoint")
    timings = m.get("timings") or {}
    score = accuracy(view)
    analyses = []
    for name, entry in (m.get("analyses") or {}).items():
        seconds = entry.get("seconds")
        status = entry.get("status", "?")
        analyses.append(f"{name} ({format_value(seconds)} s)" if status == "complete"
                        and seconds is not None else f"{name} ({status})")
    return [
        ("model", f"{arch.get('name') or arch.get('class')} ({_options(arch.get('options'))})"),
        ("weights", Path(checkpoint).name if checkpoint else "untrained (initial weights)"),
        ("test accuracy", f"{score:.1%}" if score is not None else None),
        ("data", f"{data.get('name')}, {format_value(data.get('size'))} images "
                 f"({_options(data.get('options'))})" if data else "none"),
        ("layers", f"{len(m.get('layers') or [])}: {', '.join(m.get('layers') or [])}"),
        ("analyses", ", ".join(analyses)),
        ("device", f"{m.get('device')} ({m.get('device_name', '')})"),
        ("time", f"{timings['total']:.1f} s" if "total" in timings else None),
        ("status", view.run.status),
        ("finished", str(m.get("finished") or "")[:19].replace("T", " ")),
        ("seed", m.get("seed")),
    ]


def summary_page(view: RunView, anchor: str) -> str:
    """The run's first page: what it is, the headline numbers of every analysis, failures."""
    parts = [f'<section class="summary" id="{anchor}"><h2>Run {escape(view.label)}</h2>',
             facts(run_facts(view))]
    failed = {n: e for n, e in (view.manifest.get("analyses") or {}).items()
              if e.get("status") != "complete"}
    for name, entry in failed.items():
        parts.append(f'<p class="failed">analysis {escape(name)} did not complete '
                     f'({escape(entry.get("status"))}): {escape(entry.get("error") or "")}</p>')
    numbers: list[str] = []
    shown: list[str] = []
    for item in contributions(view, "headlines"):
        if item.problem:
            parts.append(f'<p class="note note-warning">{escape(item.problem)}</p>')
            continue
        for block in item.value or []:
            if isinstance(block, Headline):
                detail = f'<span class="detail">{escape(block.detail)}</span>' \
                    if block.detail else ""
                value = escape(format_value(block.value, block.format))
                numbers.append(f'<div class="headline"><span class="label">'
                               f"{escape(item.analysis)}: {escape(block.label)}</span>"
                               f'<span class="value">{value}</span>{detail}</div>')
            elif isinstance(block, Pictures):
                shown.append(pictures(block))
            else:
                shown.append(render(block))
    if numbers:
        parts.append(f'<div class="headlines">{"".join(numbers)}</div>')
    parts.extend(shown)
    parts.append("</section>")
    return "\n".join(parts)


def attached_csv(view: RunView, analysis: str, name: str) -> str:
    """A download link carrying a table as CSV (its scalar columns), or its file name."""
    frame = view.table(analysis, name)
    if frame is None:
        return ""
    columns = scalar_columns(frame)
    text = frame[columns].to_csv(index=False)
    rows = f"{len(frame):,} rows"
    if len(text) > MAX_ATTACHED_BYTES:
        return (f"<li>{escape(analysis)}/{escape(name)}: {rows}, too large to attach — "
                f"<code>{escape(str(view.run.path / analysis / (name + '.parquet')))}</code></li>")
    uri = "data:text/csv;base64," + base64.b64encode(text.encode("utf-8")).decode("ascii")
    return (f'<li><a download="{escape(view.name)}-{escape(analysis)}-{escape(name)}.csv" '
            f'href="{uri}">{escape(analysis)}/{escape(name)}.csv</a>: {rows}, '
            f"{len(columns)} columns</li>")


def appendix(view: RunView, anchor: str) -> str:
    """Every layer's summary in full, and the run's tables attached as CSV."""
    summary, problems = layer_summary(view)
    parts = [f'<section class="appendix" id="{anchor}"><h3>Appendix: {escape(view.label)}</h3>',
             table(Table(summary.frame, caption="All measures per layer", name="layers",
                         labels=summary.labels, formats=summary.formats), max_rows=200)]
    parts += [f'<p class="note note-warning">{escape(p)}</p>' for p in problems]
    links = [attached_csv(view, a, t) for a in view.completed() for t in view.table_names(a)]
    parts.append(f'<h4>Tables (CSV)</h4><ul class="attachments">{"".join(links)}</ul>')
    parts.append("</section>")
    return "\n".join(parts)


def run_section(run: Run, index: int) -> tuple[str, list[tuple[str, str]]]:
    """The whole section of one run and its table-of-contents entries ``(anchor, title)``."""
    view = RunView(run)
    run_anchor = slug("run", index, run.name)
    toc = [(run_anchor, f"run {run.name}")]
    parts = [f'<section class="run" id="{run_anchor}-all">', summary_page(view, run_anchor)]
    for item in contributions(view, "report_sections"):
        if item.problem:
            parts.append(f'<p class="note note-warning">{escape(item.problem)}</p>')
            continue
        for number, block in enumerate(item.value or []):
            anchor = slug(run_anchor, item.analysis, number)
            if number == 0:
                toc.append((anchor, item.analysis))
                parts.append(f'<div class="analysis" data-run="{escape(run.name)}" '
                             f'data-analysis="{escape(item.analysis)}">')
            parts.append(section(block, 3 if block.layer is None else 4, anchor))
        if item.value:
            parts.append("</div>")
    anchor = slug(run_anchor, "appendix")
    toc.append((anchor, "appendix: tables"))
    parts += [appendix(view, anchor), "</section>"]
    return "\n".join(parts), toc
