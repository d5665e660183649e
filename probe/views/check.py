"""The view hooks' conformance check: every hook, on a real run directory, returns blocks.

Used by :func:`probe.testing.check_analysis` (check ``views``); callable on its own
to check the views of any analysis class against tables it wrote.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from probe.views import blocks
from probe.views.run_view import RunView

#: What each hook may return: a list of these (``None`` allowed where noted).
_BLOCKS = (blocks.Figure, blocks.Table, blocks.Pictures, blocks.Facts, blocks.Note,
           blocks.Section, blocks.Choice)


def _blocks(hook: str, value: Any, allowed: tuple[type, ...] = _BLOCKS) -> None:
    assert isinstance(value, list), f"{hook} must return a list, got {type(value).__name__}"
    for item in value:
        assert isinstance(item, allowed), f"{hook} returned a {type(item).__name__}, not one " \
                                          f"of {', '.join(t.__name__ for t in allowed)}"
        if isinstance(item, blocks.Figure):
            figure = item.figure
            assert isinstance(figure, dict) or hasattr(figure, "to_dict"), \
                f"{hook}: Figure holds a {type(figure).__name__}, not a plotly figure"
        if isinstance(item, blocks.Table):
            assert isinstance(item.frame, pd.DataFrame), f"{hook}: Table.frame is no DataFrame"
        if isinstance(item, blocks.Choice):
            assert item.options, f"{hook}: Choice has no options"
            for label, inner in item.options:
                assert isinstance(label, str), f"{hook}: a Choice option label is no string"
                _blocks(f"{hook} (option {label!r})", list(inner), allowed)


def check_views(cls: type, tables: Mapping[str, pd.DataFrame], layers: Sequence[str],
                dataset: Mapping[str, Any] | None = None) -> None:
    """Write ``tables`` as a run of ``cls`` and call every view hook on it.

    Raises:
        AssertionError: a hook raises or returns something that is not a view block.
    """
    from probe.store import RunStore, load_run, utc_now

    with tempfile.TemporaryDirectory(prefix="probe-views-") as folder:
        store = RunStore(f"{folder}/run")
        store.manifest = {"schema": 1, "status": "complete", "created": utc_now(),
                          "arch": {"name": "check"}, "dataset": dict(dataset or {}) or None,
                          "layers": list(layers), "seed": 0, "timings": {"analyses": {}},
                          "analyses": {cls.name: {"status": "complete", "options": {},
                                                  "tables": sorted(tables)}}}
        for name, frame in tables.items():
            store.write_table(cls.name, name, frame)
        store.save_manifest()
        view = RunView(load_run(store.path))
        _blocks("run_views", cls.run_views(view))
        for layer in layers[:3]:
            _blocks(f"layer_views({layer!r})", cls.layer_views(view, layer))
            columns = cls.unit_columns(view, layer)
            assert columns is None or isinstance(columns, blocks.UnitColumns), \
                f"unit_columns must return UnitColumns or None, got {type(columns).__name__}"
            if columns is not None and len(columns.frame):
                unit = int(columns.frame["unit"].iloc[0])
                _blocks(f"unit_views({layer!r}, {unit})", cls.unit_views(view, layer, unit))
                pictures = cls.unit_thumbnails(view, layer, [unit], 64)
                assert isinstance(pictures, dict), "unit_thumbnails must return a dict"
                assert all(isinstance(v, bytes) for v in pictures.values()), \
                    "unit_thumbnails must map units to PNG bytes"
        summary = cls.layer_summary(view)
        assert summary is None or (isinstance(summary, blocks.Table)
                                   and "layer" in summary.frame.columns), \
            "layer_summary must return None or a Table with a 'layer' column"
        _blocks("compare_figures", cls.compare_figures([view, RunView(view.run, "copy")]))
        _blocks("headlines", cls.headlines(view), (blocks.Headline, *_BLOCKS))
        sections = cls.report_sections(view)
        _blocks("report_sections", sections, (blocks.Section,))
        for section in sections:
            _blocks(f"report section {section.title!r}", list(section.blocks))
