"""Dashboard latency on a large run (≥ 5,000 units), cold and warm, side by side.

Builds a synthetic run directory with the real RunStore (parquet tables shaped
like unit-stats, dissection, filters and equivariance write them, 8 exemplars
per unit with 16×16 activation maps and 112×112 dissection masks), then times:

* every page's layout/callback called as a plain function, cold (caches
  cleared) and warm (second call);
* the same answers over HTTP through the Flask test client
  (``/_dash-update-component``, as the browser asks for them);
* the layer-and-column-restricted table read the dashboard uses against
  reading the whole table through ``probe.load_run``.

Usage: ``python benchmarks/bench_dashboard.py [--units-scale 1] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# the request and server helpers are shared with the tests (tests/dash_client.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from dash_client import router_body

#: Layer widths of the synthetic run (5,056 units in all).
LAYERS = {"conv1": 64, "conv2": 128, "conv3": 256, "conv4": 512, "conv5": 512,
          "conv6": 1024, "conv7": 2048, "conv8": 512}


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Median wall time of ``fn`` in milliseconds, and its last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def build(root: Path, scale: float) -> dict[str, int]:
    """Write runs ``big-a`` and ``big-b`` under ``root``; returns the layer widths."""
    from probe.dashboards.sample import synthetic_tables, write_tables_run

    layers = {k: max(1, int(v * scale)) for k, v in LAYERS.items()}
    dataset = {"name": "digits", "options": {"split": "test"}, "size": 450}
    for seed, name in ((0, "big-a"), (1, "big-b")):
        tables = synthetic_tables(layers, images=450, top_k=8, map_size=16, mask_size=112,
                                  seed=seed)
        write_tables_run(root / name, tables, list(layers), dataset=dataset)
    return layers


def units_body(run: str, layer: str, query: str) -> dict[str, Any]:
    """The request of the units grid's server-side page/sort/filter callback."""
    props = ("data", "columns", "page_count")
    return {"output": "..units-table.data...units-table.columns...units-table.page_count..."
                      "units-notice.children..",
            "outputs": [{"id": "units-table", "property": p} for p in props] +
            [{"id": "units-notice", "property": "children"}],
            "inputs": [{"id": "units-run", "property": "value", "value": run},
                       {"id": "units-layer", "property": "value", "value": layer},
                       {"id": "units-table", "property": "page_current", "value": 3},
                       {"id": "units-table", "property": "page_size", "value": 25},
                       {"id": "units-table", "property": "sort_by",
                        "value": [{"column_id": "iou", "direction": "desc"}]},
                       {"id": "units-table", "property": "filter_query", "value": query}],
            "changedPropIds": ["units-table.filter_query"], "state": []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units-scale", type=float, default=1.0,
                        help="multiply every layer width (1.0 = 5,056 units)")
    parser.add_argument("--keep", type=Path,
                        help="write the runs here and keep them (reused when present)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from probe.dashboards import create_app
    from probe.dashboards.data import clear_caches, get_source, wait_for_prefetch
    from probe.store import load_run

    root = args.keep or Path(tempfile.mkdtemp(prefix="probe-bench-dash-"))
    try:
        start = time.perf_counter()
        if (root / "big-b" / "manifest.json").is_file():
            import pandas as pd

            counts = pd.read_parquet(root / "big-a" / "unit-stats" / "units.parquet",
                                     columns=["layer"])["layer"].value_counts(sort=False)
            layers = {str(k): int(v) for k, v in counts.items()}
        else:
            layers = build(root, args.units_scale)
        size = sum(p.stat().st_size for p in root.rglob("*.parquet")) / 2**20
        print(f"synthetic runs: 2 × {sum(layers.values())} units in {len(layers)} layers, "
              f"{size:.0f} MiB of parquet, ready in {time.perf_counter() - start:.1f} s")
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
              f"(other work on the machine inflates every number below)")
        app = create_app(root)
        from probe.dashboards.pages import analysis, compare, runs, unit, units
        from probe.dashboards.pages import layers as layers_page

        widest = max(layers, key=layers.get)
        query = "{iou} s> 0.02 && {category} contains part"
        probe_unit = layers[widest] // 2
        cases: list[tuple[str, Callable[[], Any]]] = [
            ("runs page", lambda: runs.layout()),
            ("layers page (summary + 4 charts)", lambda: layers_page.layers_content("big-a")),
            (f"units grid, {widest} ({layers[widest]} units), filter+sort+page",
             lambda: units.units_page("big-a", widest, 3, 25,
                                      [{"column_id": "iou", "direction": "desc"}], query)),
            (f"unit page {widest}/{probe_unit} (16 exemplars, filter, links)",
             lambda: unit.layout(run="big-a", layer=widest, unit=str(probe_unit))),
            ("compare page (2 runs)", lambda: compare.compare_content("big-a", "big-b",
                                                                       "detector_share")),
            ("analysis page: dissection tables", lambda: analysis.analysis_content(
                "big-a", "dissection")),
        ]
        print(f"\n{'page or callback (plain function)':58s} {'cold ms':>9s} {'warm ms':>9s} "
              f"{'cold/warm':>9s}")
        with app.server.test_request_context():
            get_source().dataset(get_source().run("big-a"))  # the data set itself: see below
            for name, fn in cases:
                wait_for_prefetch()
                clear_caches()
                get_source().dataset(get_source().run("big-a"))
                cold, _ = timed(fn)
                wait_for_prefetch()  # warm = after the background reads it started
                warm, _ = timed(fn, repeat=5)
                print(f"{name:58s} {cold:9.1f} {warm:9.1f} {cold / warm:9.1f}")

        client = app.server.test_client()
        requests = [
            ("GET / (app shell)", lambda: client.get("/")),
            ("router: /layers?run=big-a", lambda: client.post(
                "/_dash-update-component", json=router_body("/layers", "?run=big-a"))),
            (f"router: /unit/big-a/{widest}/{probe_unit}", lambda: client.post(
                "/_dash-update-component", json=router_body(f"/unit/big-a/{widest}/{probe_unit}"))),
            (f"units grid callback ({widest})", lambda: client.post(
                "/_dash-update-component", json=units_body("big-a", widest, query))),
        ]
        print(f"\n{'HTTP request (Flask test client)':58s} {'cold ms':>9s} {'warm ms':>9s} "
              f"{'KiB':>9s}")
        for name, fn in requests:
            wait_for_prefetch()
            clear_caches()
            with app.server.test_request_context():
                get_source().dataset(get_source().run("big-a"))
            cold, response = timed(fn)
            if response.status_code != 200:
                raise SystemExit(f"{name}: HTTP {response.status_code}: {response.data[:300]!r}")
            wait_for_prefetch()
            warm, response = timed(fn, repeat=5)
            print(f"{name:58s} {cold:9.1f} {warm:9.1f} {len(response.data) / 1024:9.1f}")

        print("\nunit page, by how the user gets there")
        with app.server.test_request_context():
            source = get_source()
            wait_for_prefetch()
            clear_caches()
            source.dataset(source.run("big-a"))
            cold, _ = timed(lambda: unit.layout(run="big-a", layer=widest, unit="7"))
            print(f"  permalink, nothing cached (reads 2 exemplar tables): {cold:8.1f} ms")
            wait_for_prefetch()
            clear_caches()
            source.dataset(source.run("big-a"))
            units.units_page("big-a", widest, 0, 25, [], "")  # starts the prefetch
            time.sleep(3.0)  # the user reads the grid before clicking
            after, _ = timed(lambda: unit.layout(run="big-a", layer=widest, unit="7"))
            print(f"  from the units grid (prefetched meanwhile):          {after:8.1f} ms")
            wait_for_prefetch()
            other, _ = timed(lambda: unit.layout(run="big-a", layer="conv2", unit="3"), 5)
            print(f"  any further unit, any layer:                          {other:8.1f} ms")

        print("\none unit's exemplar rows (unit-stats/top_images, 16×16 maps)")
        run_path = root / "big-a"
        whole, _ = timed(lambda: load_run(run_path).table("unit-stats", "top_images"), 3)
        source = get_source()
        run = source.run("big-a")

        def cold_unit() -> Any:
            wait_for_prefetch()
            clear_caches()
            return source.unit_rows(run, "unit-stats", "top_images", widest, probe_unit)

        first, _ = timed(cold_unit, 3)
        source.prefetch(run, [("unit-stats", "top_images")])
        wait_for_prefetch()
        warm, rows = timed(lambda: source.unit_rows(run, "unit-stats", "top_images", widest,
                                                    probe_unit), 5)
        print(f"  whole table as pandas via load_run (naive):     {whole:8.1f} ms")
        print(f"  dashboard, cold: row groups by statistics:      {first:8.1f} ms   "
              f"ratio {whole / first:.0f}×")
        print(f"  dashboard, after the background decode: {len(rows)} rows {warm:8.1f} ms   "
              f"ratio {whole / warm:.0f}×")
        clear_caches()
        data_ms, _ = timed(lambda: source.dataset(source.run("big-a")))
        print(f"\nreloading the run's data set (digits, once per process): {data_ms:.0f} ms")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
