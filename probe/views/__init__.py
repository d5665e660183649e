"""The view layer: what analyses show, rendered alike by the dashboard and the report.

* :mod:`.blocks` — :class:`Figure`, :class:`Table`, :class:`Pictures`, :class:`Facts`,
  :class:`Note`, :class:`Section`, :class:`Choice`, :class:`Headline`,
  :class:`UnitColumns`;
* :mod:`.run_view` — :class:`RunView`, what a view reads;
* :mod:`.hooks` — :class:`AnalysisViews`, the hooks (a base of :class:`probe.Analysis`);
* :mod:`.format` — numbers and headings for people;
* :mod:`.images` — overlays, heat maps, masks, filter tiles, PNGs;
* :mod:`.plots` — category and layer colours, layer order, empty figures.
"""

from probe.views.blocks import (
    Choice,
    Facts,
    Figure,
    Headline,
    Note,
    Picture,
    Pictures,
    Section,
    Table,
    UnitColumns,
)
from probe.views.format import format_value, heading
from probe.views.hooks import AnalysisViews
from probe.views.plots import CATEGORY_COLORS, category_color, layer_color
from probe.views.run_view import RunView

__all__ = ["CATEGORY_COLORS", "AnalysisViews", "Choice", "Facts", "Figure", "Headline", "Note",
           "Picture", "Pictures", "RunView", "Section", "Table", "UnitColumns",
           "category_color", "format_value", "heading", "layer_color"]
