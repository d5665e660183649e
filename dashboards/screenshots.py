"""Screenshots of the dashboard's main pages, taken in headless Chromium.

``python -m probe.dashboards.screenshots RUNS_DIR OUT_DIR [--run NAME] [--other NAME]``
serves the dashboard on a free local port, opens each main page in headless
Chromium (selenium, from the ``test`` extra; Chromium and chromedriver on the
PATH or in /usr/bin), waits until the page has drawn and writes
``OUT_DIR/dashboard_<page>.png``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from probe.errors import ProbeError

_PAGE_HEIGHT = """
const main = document.querySelector('.app-main');
const bottom = main ? main.getBoundingClientRect().bottom + window.scrollY : 0;
return Math.ceil(Math.max(document.documentElement.scrollHeight, document.body.scrollHeight,
                          bottom));
"""

#: True once every dropdown on the page shows a value (and no loading spinner is left).
_DROPDOWNS_FILLED = """
const boxes = [...document.querySelectorAll('.dash-dropdown, .Select')];
const loading = document.querySelectorAll('._dash-loading, .dash-spinner').length;
const waiting = document.querySelectorAll('.view-slot:not(.filled)').length;  // sections
const pictures = [...document.querySelectorAll('.card img')].every(i => i.naturalWidth > 0);
return loading === 0 && waiting === 0 && pictures
  && boxes.every(b => b.innerText.trim().length > 0);
"""

#: ``(file stem, URL path, CSS selector that shows the page has drawn)``
PageShot = tuple[str, str, str]


def best_unit(source: Any, run_obj: Any, only: str | None = None) -> tuple[str, int]:
    """The unit to photograph: the flagged unit with the highest score over all layers
    (``only`` that layer), as the analyses' ``unit_columns`` declare them; else unit 0 of
    a middle layer (of ``only``)."""
    from probe.dashboards.run_view import DashRunView
    from probe.dashboards.unit_data import unit_grid

    view = DashRunView(source, run_obj)
    layers = [only] if only else source.layers(run_obj)
    best: tuple[bool, float, str, int] | None = None
    for layer in layers:
        grid = unit_grid(view, layer)
        frame = grid.frame
        flagged = bool(grid.flag and grid.flag in frame and frame[grid.flag].any())
        if flagged:
            frame = frame[frame[grid.flag].astype(bool)]
        if grid.score is None or grid.score not in frame or frame.empty:
            continue
        top = frame.sort_values(grid.score, ascending=False).iloc[0]
        candidate = (flagged, float(top[grid.score]), layer, int(top["unit"]))
        if best is None or candidate[:2] > best[:2]:  # a flagged unit beats any other
            best = candidate
    if best is None:
        return (layers[len(layers) // 2] if layers else ""), 0
    return best[2], best[3]


def plan(source: Any, run: str, other: str | None, layer: str | None = None,
         unit: int | None = None) -> list[PageShot]:
    """The pages to photograph for ``run`` (and ``other`` for the comparison): its layer
    ``layer`` and unit ``unit`` (default: :func:`best_unit`, within ``layer`` if given)."""
    run_obj = source.run(run)
    if layer is not None:
        layer = source.check_layer(run_obj, layer)
    layer, best = best_unit(source, run_obj, layer)
    unit = best if unit is None else unit
    q = quote(run)
    shots = [("runs", "/", "#table-runs-table"),
             ("layers", f"/layers?run={q}&layer={quote(layer)}", "#layer-detail-title"),
             ("units", f"/units?run={q}&layer={quote(layer)}", ".card"),
             ("unit", f"/unit/{q}/{quote(layer)}/{unit}", "#unit-title")]
    if other:
        shots.append(("compare", f"/compare?a={q}&b={quote(other)}", "#table-compare-table"))
    analyses = source.completed(run_obj)
    if analyses:
        shots.append(("analysis", f"/analysis?run={q}&analysis={analyses[-1]}",
                      "#analysis-status"))
    return shots


def _serve(app: Any) -> tuple[str, Any]:
    import logging

    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request

    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


def _browser(width: int, height: int) -> Any:
    try:
        from selenium import webdriver
    except ImportError:
        raise ProbeError("screenshots need selenium: pip install 'probe-cnn[test]'") from None
    profile = tempfile.mkdtemp(prefix="probe-shots-")
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run", "--hide-scrollbars",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    for binary in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(binary).is_file():
            options.binary_location = binary
            break
    driver = webdriver.Chrome(options=options)
    driver.probe_profile = profile  # removed with the driver
    return driver


def take(runs_dir: str | Path, out_dir: str | Path, run: str | None = None,
         other: str | None = None, width: int = 1400, height: int = 1000,
         settle: float = 1.5, layer: str | None = None,
         unit: int | None = None) -> list[Path]:
    """Photograph the main pages; returns the PNG paths.

    Args:
        runs_dir: Folder of runs served by the dashboard.
        out_dir: Where ``dashboard_<page>.png`` files go.
        run: The run to show (default: the first).
        other: A second run for the comparison page (default: the next one, if any).
        width, height: Browser window in pixels; each shot is as tall as its page.
        settle: Seconds to wait after the page's marker appears (plots finish drawing).
        layer, unit: The layer (layers, units and unit pages) and unit to show.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from probe.dashboards import create_app
    from probe.dashboards.data import get_source

    app = create_app(runs_dir)
    source = get_source()
    names = [r.name for r in source.runs()]  # readable runs only
    run = source.default_run(run)
    if run is None:
        raise ProbeError(f"no runs under {runs_dir}")
    if other is None:
        other = next((n for n in names if n != run), None)
    shots = plan(source, run, other, layer, unit)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base, server = _serve(app)
    driver = _browser(width, height)
    written = []
    try:
        for stem, path, marker in shots:
            driver.set_window_size(width, height)
            driver.get(base + path)
            WebDriverWait(driver, 60).until(
                ec.presence_of_element_located((By.CSS_SELECTOR, marker)))
            # dropdowns show their value once their options arrive (a later callback)
            WebDriverWait(driver, 120).until(lambda d: d.execute_script(_DROPDOWNS_FILLED))
            time.sleep(settle)
            for _ in range(3):  # grow the window until the whole page fits (plots grow late)
                full = int(driver.execute_script(_PAGE_HEIGHT))
                inner = int(driver.execute_script("return window.innerHeight"))
                outer = driver.get_window_size()["height"]
                size = min(max(height, full + 20 + outer - inner), 8000)  # + window chrome
                if size <= outer:
                    break
                driver.set_window_size(width, size)
                time.sleep(settle / 2)
            target = out / f"dashboard_{stem}.png"
            driver.save_screenshot(str(target))
            written.append(target)
            print(f"{target}  ({path})")
    finally:
        driver.quit()
        shutil.rmtree(driver.probe_profile, ignore_errors=True)
        server.shutdown()
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m probe.dashboards.screenshots",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--run", help="run to show (default: the first)")
    parser.add_argument("--other", help="second run for the comparison page")
    parser.add_argument("--layer", help="layer to show (default: the best unit's)")
    parser.add_argument("--unit", type=int, help="unit to show (default: the best of the layer)")
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args(argv)
    try:
        take(args.runs_dir, args.out_dir, args.run, args.other, width=args.width,
             layer=args.layer, unit=args.unit)
    except ProbeError as exc:
        print(f"probe: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
