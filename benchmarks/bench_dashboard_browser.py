"""A real cold unit page, end to end: server started fresh, headless Chromium, exemplars drawn.

1. Builds (or reuses, ``--keep DIR``) the synthetic 5,056-unit runs of
   ``bench_dashboard.py``; their data set is ``digits``, so every exemplar is cut
   from the data set's images when a page is rendered.
2. For each measurement starts the real server as a user does,
   ``python -m probe dash DIR --port P`` (``tests/dash_client.start_server``), so
   nothing is cached: no table read, no data set loaded, no page rendered; and a
   headless Chromium with an empty profile (its HTTP cache empty as well).
3. Opens ``/unit/big-a/conv7/<u>`` and waits, inside the page, until it has
   drawn: ``#unit-title`` present, every section's slot answered (new pages: the
   sections come in slots), every ``img`` in ``#unit-page`` complete with
   ``naturalWidth > 0``, every ``dcc.Graph`` drawn by plotly (``.main-svg``).
   The page's own clock (``performance.now()``, which starts at navigation start,
   ``performance.timeOrigin``) gives the time; Python's wall time from before the
   navigation until the answer is printed next to it. Then, same server and
   browser: the same unit again (a reload: warm), a different unit (a reload),
   and the next unit by its ``next →`` link (no reload: only the page's callback).
4. Starts another fresh server for the Units page of ``conv7`` (2,048 units) and
   waits until its content is drawn: the new page's 48 cards with their images
   loaded and its AG Grid's rows; the old page's grid rows.

With ``--versions old,new`` (default when the old worktree of
``bench_dashboard.py`` is there) every measurement runs for the committed code
(``--old-rev``, default ``HEAD``, from that worktree, ``PYTHONPATH=OLD-site:OLD``)
and for the working tree, interleaved: old, new, old, new, …, ``--repeats`` fresh servers each.

Usage: ``python benchmarks/bench_dashboard_browser.py [--keep DIR] [--repeats 3]
[--versions old,new] [--old-tree /tmp/probe-old-wt] [--old-rev HEAD]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# shared with the tests (tests/dash_client.py) and the other dashboard benchmark
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dashboard import (
    OLD_TREE,
    REPO,
    build,
    existing_layers,
    old_tree,
    tree_commit,
    version_env,
)
from dash_client import free_port, start_server, stop_server

WIDTH, HEIGHT = 1400, 1000
TIMEOUT_S = 180

#: In the page: wait until ``ready()`` holds, polling every 10 ms; answer the page's clock.
WAIT = """
const done = arguments[arguments.length - 1];
const since = arguments[0];
function ready() {
%s
}
function check() {
  let state = null;
  try { state = ready(); } catch (e) { state = null; }
  if (state) {
    const all = performance.getEntriesByType('resource').filter(e => e.startTime >= since);
    const dash = all.filter(e => e.name.includes('_dash-update-component'));
    done({t: performance.now() - since, origin: performance.timeOrigin, state: state,
          callbacks: dash.length,
          callback_kib: dash.reduce((s, e) => s + (e.encodedBodySize || 0), 0) / 1024,
          resources_kib: all.reduce((s, e) => s + (e.transferSize || 0), 0) / 1024,
          first_callback: dash.length ? Math.min(...dash.map(e => e.startTime)) - since : null,
          longest_callback: dash.length ? Math.max(...dash.map(e => e.duration)) : null});
  } else {
    setTimeout(check, 10);
  }
}
check();
"""

#: The unit page has drawn (``arguments``: the title text it must contain).
UNIT_READY = """
const title = document.querySelector('#unit-title');
if (!title || !title.textContent.trim().endsWith(%r)) return null;
const page = document.querySelector('#unit-page');
if (!page) return null;
if (Array.from(page.querySelectorAll('.view-slot')).some(
    s => !s.classList.contains('filled'))) return null;  // a section not answered yet
const images = Array.from(page.querySelectorAll('img'));
if (!images.every(i => i.complete && i.naturalWidth > 0)) return null;
const graphs = Array.from(page.querySelectorAll('.dash-graph'));
if (!graphs.every(g => g.querySelector('.js-plotly-plot .main-svg'))) return null;
if (document.querySelector('._dash-loading, ._dash-loading-callback')) return null;
return {images: images.length, graphs: graphs.length};
"""

#: The units page has drawn: cards with their images and the grid (new), or the grid (old).
UNITS_READY = """
const count = document.querySelector('#units-count');
if (!count || !count.textContent.trim()) return null;
const cards = Array.from(document.querySelectorAll('#units-cards .card'));
const images = Array.from(document.querySelectorAll('#units-cards img'));
if (!images.every(i => i.complete && i.naturalWidth > 0)) return null;
const agRows = document.querySelectorAll('#units-table .ag-row').length;
const tableRows = Array.from(document.querySelectorAll('#units-table tr'))
  .filter(r => r.querySelector('td')).length;
if (document.querySelector('#units-cards')) {
  if (cards.length === 0 || images.length < cards.length || agRows === 0) return null;
} else if (tableRows === 0) {
  return null;
}
return {cards: cards.length, images: images.length, grid_rows: agRows || tableRows};
"""


@contextlib.contextmanager
def served(version: str, root: Path, tree: Path, log_dir: Path) -> Iterator[str]:
    """A fresh ``probe dash`` server of ``version`` on a free port; yields its base URL."""
    port = free_port()
    saved = dict(os.environ)
    log = (log_dir / f"server-{version}-{port}.log").open("w")
    process = None
    try:
        os.environ.clear()
        os.environ.update(version_env(version, tree))
        # started outside the checkout: ``python -m`` puts the working folder first on
        # sys.path, so from the checkout the old server would import the new probe
        with contextlib.chdir(tempfile.gettempdir()):
            process = start_server(root.resolve(), port, 8, log)  # passes os.environ on
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(process)
        log.close()


@contextlib.contextmanager
def browser() -> Iterator[Any]:
    """Headless Chromium with an empty profile (the flags of ``screenshots._browser``)."""
    from probe.dashboards.screenshots import _browser

    driver = _browser(WIDTH, HEIGHT)
    driver.set_script_timeout(TIMEOUT_S)
    driver.set_page_load_timeout(TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(driver.probe_profile, ignore_errors=True)


def open_page(driver: Any, url: str, ready: str) -> dict[str, Any]:
    """Navigate to ``url`` and wait until ``ready`` holds; page clock and wall time in ms."""
    start = time.perf_counter()
    driver.get(url)
    result = driver.execute_async_script(WAIT % ready, 0)
    result["wall"] = (time.perf_counter() - start) * 1000
    return result


def follow_link(driver: Any, selector: str, ready: str) -> dict[str, Any]:
    """Click the link ``selector`` (no reload) and wait until ``ready`` holds; the page's
    clock starts at the click."""
    start = time.perf_counter()
    since = driver.execute_script(
        f"const t = performance.now(); document.querySelector({selector!r}).click(); return t;")
    result = driver.execute_async_script(WAIT % ready, since)
    result["wall"] = (time.perf_counter() - start) * 1000
    return result


def unit_round(version: str, root: Path, tree: Path, logs: Path, layer: str, first: int,
               other: int) -> dict[str, dict[str, Any]]:
    """One fresh server and browser: unit page cold, again, another unit, the next unit."""
    path = f"/unit/big-a/{layer}"
    out = {}
    with served(version, root, tree, logs) as base, browser() as driver:
        out["cold"] = open_page(driver, f"{base}{path}/{first}", UNIT_READY % f"unit {first}")
        out["warm"] = open_page(driver, f"{base}{path}/{first}", UNIT_READY % f"unit {first}")
        out["other"] = open_page(driver, f"{base}{path}/{other}", UNIT_READY % f"unit {other}")
        out["next"] = follow_link(driver, f'#unit-page a[href="{path}/{other + 1}"]',
                                  UNIT_READY % f"unit {other + 1}")
    return out


def units_round(version: str, root: Path, tree: Path, logs: Path, layer: str
                ) -> dict[str, dict[str, Any]]:
    """One fresh server and browser: the Units page of ``layer``, cold."""
    with served(version, root, tree, logs) as base, browser() as driver:
        return {"units": open_page(driver, f"{base}/units?run=big-a&layer={layer}",
                                   UNITS_READY)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="the runs' folder (built there if missing)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh servers per version")
    parser.add_argument("--versions", default=None,
                        help="old,new (default: both when the old worktree exists) or new")
    parser.add_argument("--old-tree", type=Path, default=OLD_TREE)
    parser.add_argument("--old-rev", default="HEAD", help="commit of the old code when the "
                        "worktree is made (as bench_dashboard.py)")
    args = parser.parse_args()
    versions = (args.versions or ("old,new" if (args.old_tree / "probe").is_dir() else "new")
                ).split(",")
    if not set(versions) <= {"old", "new"} or args.repeats < 1:
        raise SystemExit("--versions: old,new or new or old; --repeats >= 1")
    tree = old_tree(args.old_tree, args.old_rev) if "old" in versions else args.old_tree

    root = args.keep or Path(tempfile.mkdtemp(prefix="probe-bench-browser-"))
    logs = Path(tempfile.mkdtemp(prefix="probe-bench-browser-logs-"))
    try:
        layers = existing_layers(root) or build(root, 1.0)
        layer = max(layers, key=layers.get)
        width = layers[layer]
        print(f"runs: {root} ({sum(layers.values())} units per run; {layer}: {width} units); "
              f"data set digits; {args.repeats} fresh servers per version and page, "
              f"versions {' / '.join(versions)} interleaved")
        if "old" in versions:
            print(f"old: {tree} (commit {tree_commit(tree)}), new: {REPO} (working tree)")
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs at the start")
        results: dict[str, dict[str, list[dict[str, Any]]]] = {v: {} for v in versions}
        loads = []
        for r in range(args.repeats):
            first, other = width // 2 + r, width // 4 + r  # fresh units each round
            for version in versions:
                loads.append(os.getloadavg()[0])
                for key, value in unit_round(version, root, tree, logs, layer, first,
                                             other).items():
                    results[version].setdefault(key, []).append(value)
                cold = results[version]["cold"][-1]
                print(f"  {r + 1} {version}: unit page cold {cold['t']:.0f} ms "
                      f"({cold['state']['images']} images, {cold['state']['graphs']} charts), "
                      f"load {loads[-1]:.2f}", flush=True)
            for version in versions:
                loads.append(os.getloadavg()[0])
                for key, value in units_round(version, root, tree, logs, layer).items():
                    results[version].setdefault(key, []).append(value)
                units = results[version]["units"][-1]
                print(f"  {r + 1} {version}: units page cold {units['t']:.0f} ms "
                      f"({units['state']}), load {loads[-1]:.2f}", flush=True)
        loads.append(os.getloadavg()[0])
        print(f"load average during the runs: {min(loads):.2f}–{max(loads):.2f} "
              f"(median {statistics.median(loads):.2f}) on {os.cpu_count()} CPUs")

        rows = [("cold", f"unit page, fresh server, permalink /unit/big-a/{layer}/<u>"),
                ("warm", "same unit again (reload)"),
                ("other", "another unit, same server (reload)"),
                ("next", "next unit by its link (no reload)"),
                ("units", f"units page {layer}, fresh server, until drawn")]
        print(f"\n{'browser, median of ' + str(args.repeats):52s}" +
              "".join(f" {v + ' page ms':>12s} {v + ' wall ms':>12s}" for v in versions) +
              ("  new/old" if len(versions) == 2 else ""))
        for key, label in rows:
            line = f"{label:52s}"
            medians = []
            for version in versions:
                runs = results[version][key]
                page = statistics.median(x["t"] for x in runs)
                wall = statistics.median(x["wall"] for x in runs)
                medians.append(page)
                line += f" {page:12.0f} {wall:12.0f}"
            if len(medians) == 2:
                line += f"  {medians[1] / medians[0]:7.2f}"
            print(line)
        print("\nwhere the time went (medians, page clock): first callback sent (the app has "
              "booted), longest callback (server + transfer); what was loaded")
        for key, label in rows:
            for version in versions:
                runs = results[version][key]

                def med(field: str, runs: list[dict[str, Any]] = runs) -> float:
                    values = [x[field] for x in runs if x[field] is not None]
                    return statistics.median(values) if values else float("nan")

                print(f"  {label[:36]:36s} {version}: first callback at "
                      f"{med('first_callback'):5.0f} ms, longest {med('longest_callback'):5.0f} "
                      f"ms; {med('callbacks'):.0f} callbacks, {med('callback_kib'):.0f} KiB of "
                      f"answers, {med('resources_kib'):.0f} KiB in all; {runs[-1]['state']}")
    finally:
        shutil.rmtree(logs, ignore_errors=True)
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
