"""Assemble the report page: header, contents, run sections, comparison.

The page is self-contained: plotly.js is inlined once in the head, figures
are inline ``Plotly.newPlot`` calls, images are ``data:`` URIs, links are
in-page anchors only. It prints to PDF as it is (see :mod:`probe.report.pdf`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from probe.errors import ProbeError
from probe.report.assets import escape, plotly_bundle
from probe.report.compare import comparison_section
from probe.report.sections import run_section
from probe.store import Run, atomic_write_bytes, load_run, utc_now

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1000px; padding: 1em 1.5em; color: #1d2733; }
h1 { border-bottom: 2px solid #1d2733; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #aab; }
h3 { margin-top: 1.5em; }
h4 { margin: 1em 0 .3em; }
div.analysis { border-left: 3px solid #c8d4e3; padding-left: 1em; margin: 1.5em 0; }
table { border-collapse: collapse; font-size: 11px; margin: .6em 0; }
table.data { table-layout: auto; max-width: 100%; }
table.data th, table.data td { border: 1px solid #d0d7de; padding: 2px 5px; text-align: right;
                               overflow-wrap: anywhere; }
table.data th { background: #eef2f7; }
table.data tr.muted td { color: #999; background: #f6f6f6; font-style: italic; }
table.meta th { text-align: left; padding-right: 1em; vertical-align: top; }
table.meta td { overflow-wrap: anywhere; }
caption { text-align: left; font-style: italic; padding: 2px 0; }
figure.chart { margin: .6em 0; }
figure.chart figcaption { font-size: 12px; color: #444; }
.figure { width: 100%; }
.note { color: #555; font-size: 13px; }
.note-warning { color: #8a1f11; background: #fdecea; padding: .3em .6em; }
.failed { color: #a00; }
.headlines { display: grid; grid-template-columns: repeat(3, 1fr); gap: .5em 1em; margin: 1em 0; }
.headline { border: 1px solid #d0d7de; border-radius: 4px; padding: .3em .5em; }
.headline .label { display: block; font-size: 11px; color: #555; }
.headline .value { display: block; font-size: 18px; font-weight: 600; }
.headline .detail { display: block; font-size: 11px; color: #555; }
.units { display: flex; flex-wrap: wrap; gap: 10px; }
figure.unit { margin: 0; position: relative; }
figure.unit img { image-rendering: pixelated; display: block; max-width: 300px; height: auto; }
figure.unit figcaption { font-size: 11px; max-width: 200px; }
figure.unit.muted img { filter: grayscale(90%); opacity: .6; }
figure.unit .badge { position: absolute; top: 2px; left: 2px; background: #1a7f37; color: #fff;
                     font-size: 10px; padding: 0 3px; }
ul.attachments { font-size: 12px; }
nav ul { columns: 2; font-size: 13px; }
@media print {
  body { max-width: none; padding: 0; }
  .modebar-container { display: none; }
  figure.chart, figure.unit, table.data, .headlines { break-inside: avoid; }
  h2, h3, h4 { break-after: avoid; }
  section.summary { break-after: page; }
  section.run { break-before: page; }
}
"""


def _open(runs: Sequence[str | Path | Run]) -> list[Run]:
    if not runs:
        raise ProbeError("probe report needs at least one run directory")
    opened = [r if isinstance(r, Run) else load_run(r) for r in runs]
    names = [r.name for r in opened]
    for run in opened:
        if names.count(run.name) > 1:
            run_names = [str(r.path) for r in opened]
            raise ProbeError(f"two runs share the name {run.name!r} ({', '.join(run_names)}); "
                             f"rename one run directory")
    return opened


def render_report(runs: Sequence[str | Path | Run], title: str | None = None) -> str:
    """The report of ``runs`` as one HTML document (a string)."""
    opened = _open(runs)
    title = title or ("probe report: " + ", ".join(r.name for r in opened))
    sections, toc = [], []
    for index, run in enumerate(opened):
        body, entries = run_section(run, index)
        sections.append(body)
        toc.append(entries)
    if len(opened) > 1:
        sections.insert(0, comparison_section(opened))
    from probe import __version__

    items = []
    if len(opened) > 1:
        items.append('<li><a href="#comparison">comparison</a></li>')
    for entries in toc:
        (anchor, label), *rest = entries
        sub = "".join(f'<li><a href="#{a}">{escape(t)}</a></li>' for a, t in rest)
        items.append(f'<li><a href="#{anchor}">{escape(label)}</a><ul>{sub}</ul></li>')
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style>",
        plotly_bundle(),
        "</head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="note">Written by probe {escape(__version__)} at {escape(utc_now())} from '
        f"{len(opened)} run(s).</p>",
        f'<nav><h2 style="break-before:auto">Contents</h2><ul>{"".join(items)}</ul></nav>',
        *sections,
        "</body></html>",
    ])


def build_report(runs: Sequence[str | Path | Run], out: str | Path,
                 title: str | None = None) -> Path:
    """Write the HTML report of ``runs`` to ``out`` (atomically) and return its path.

    Raises:
        ProbeError: ``out`` cannot be written (a directory, a file in the way, a
            folder that is not writable), found before the report is rendered.
    """
    from probe.checkpoint import check_writable

    path = Path(out)
    check_writable(path, "report", ProbeError)
    text = render_report(runs, title)
    try:
        atomic_write_bytes(path, text.encode("utf-8"))
    except OSError as exc:
        raise ProbeError(f"cannot write report {path}: {exc.strerror or exc}") from None
    return path
