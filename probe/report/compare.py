"""The comparison section of a multi-run report.

The runs table (with accuracy), each pair of consecutive runs layer by layer
(by relative depth where the layers differ) with a difference column, and
each analysis that several runs completed through its ``compare_figures``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from probe.report.assets import escape
from probe.report.render import render, table
from probe.store import Run
from probe.views import Note, RunView
from probe.views.contributions import call_hook
from probe.views.summary import options_differ, runs_table, side_by_side


def comparison_section(runs: Sequence[Run]) -> str:
    """The ``<section class="comparison">`` of a multi-run report."""
    views = [RunView(run) for run in runs]
    parts = ['<section class="comparison" id="comparison"><h2>Comparison</h2>',
             table(runs_table(views), max_rows=len(views))]
    for a, b in itertools.pairwise(views):
        layers, problems = side_by_side(a, b)
        parts.append(table(layers, max_rows=60))
        parts.extend(render(Note(p, "warning")) for p in problems)
    names = list(dict.fromkeys(n for v in views for n in v.completed()))
    for name in names:
        having = [v for v in views if name in v.completed()]
        if len(having) < 2:
            continue
        item = call_hook(name, "compare_figures", having)
        warning = options_differ(having, name)
        blocks = ([warning] if warning else []) + item.blocks
        if blocks:
            parts.append(f'<div class="compare" data-analysis="{escape(name)}"><h3>'
                         f'{escape(name)}: {escape(", ".join(v.label for v in having))}</h3>')
            parts.extend(render(b) for b in blocks)
            parts.append("</div>")
    parts.append("</section>")
    return "\n".join(parts)
