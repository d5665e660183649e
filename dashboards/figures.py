"""Pure figure and table builders shared by the dashboard and ``probe report``.

Every function here takes DataFrames (or plain dicts) and returns a plotly
figure or a DataFrame; none reads files, so the report can call them on the
tables of :func:`probe.load_run` and tests can call them on hand-made frames.

They live in modules by job and are all importable from here (the pages import
them from this module):

* :mod:`.plotting` — category colours, layer order, empty figures, column picks;
* :mod:`.run_figures` — the runs table and seconds per analysis;
* :mod:`.layer_figures` — per-layer figures and the layer summary;
* :mod:`.unit_figures` — the unit table, concept ranking, one layer's equivariance;
* :mod:`.table_query` — server-side filter, sort and paging of DataTables;
* :mod:`.compare_figures` — two runs side by side.

Column conventions (the analyses' declared tables):

* ``unit-stats/units``: ``layer, unit, mean, std, max, fraction_positive``.
* ``dissection/units``: ``layer, unit, label`` (id), ``name, category, iou,
  is_detector`` (best label overall per unit); ``dissection/labels``:
  ``layer, unit, category, rank, name, iou`` (each unit's best labels).
* ``equivariance/errors``: ``layer, transform, magnitude, relative_error``.
* ``filters/units``: ``layer, unit, gabor_r2, gabor_status, separability``.
"""

from __future__ import annotations

from probe.dashboards.compare_figures import make_compare_figure, make_compare_table
from probe.dashboards.layer_figures import (
    detector_shares,
    make_activation_figure,
    make_equivariance_figure,
    make_filter_figure,
    make_hierarchy_figure,
    make_layer_summary,
)
from probe.dashboards.plotting import (
    CATEGORY_COLORS,
    category_color,
    error_column,
    layer_order,
    ordered_unique,
    r2_column,
)
from probe.dashboards.run_figures import make_runs_table, make_timings_figure
from probe.dashboards.table_query import filter_sort_page, parse_filter_query
from probe.dashboards.unit_figures import (
    make_concept_ranking_figure,
    make_layer_equivariance_figure,
    make_unit_table,
)

__all__ = [
    "CATEGORY_COLORS",
    "category_color",
    "detector_shares",
    "error_column",
    "filter_sort_page",
    "layer_order",
    "make_activation_figure",
    "make_compare_figure",
    "make_compare_table",
    "make_concept_ranking_figure",
    "make_equivariance_figure",
    "make_filter_figure",
    "make_hierarchy_figure",
    "make_layer_equivariance_figure",
    "make_layer_summary",
    "make_runs_table",
    "make_timings_figure",
    "make_unit_table",
    "ordered_unique",
    "parse_filter_query",
    "r2_column",
]
