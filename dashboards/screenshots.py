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

#: ``(file stem, URL path, CSS selector that shows the page has drawn)``
PageShot = tuple[str, str, str]


def plan(source: Any, run: str, other: str | None) -> list[PageShot]:
    """The pages to photograph for ``run`` (and ``other`` for the comparison)."""
    run_obj = source.run(run)
    layers = source.layers(run_obj)
    units = source.optional(run_obj, "dissection", "units")
    edges = source.optional(run_obj, "dissection", "edges")
    if units is not None and units["is_detector"].any():
        detectors = units[units["is_detector"]]
        if edges is not None and not edges.empty:
            # an object detector built from part detectors shows every section filled
            linked = set(zip(edges["object_layer"], edges["object_unit"], strict=True))
            with_links = detectors[[(x, int(y)) in linked for x, y in
                                    zip(detectors["layer"], detectors["unit"], strict=True)]]
            detectors = with_links if not with_links.empty else detectors
        best = detectors.sort_values("iou", ascending=False).iloc[0]
        layer, unit = str(best["layer"]), int(best["unit"])
    else:
        layer, unit = (layers[len(layers) // 2] if layers else ""), 0
    q = quote(run)
    shots = [("runs", "/", "#runs-table"),
             ("layers", f"/layers?run={q}", "#layers-summary"),
             ("units", f"/units?run={q}&layer={quote(layer)}", "#units-count"),
             ("unit", f"/unit/{q}/{quote(layer)}/{unit}", "#unit-title")]
    if other:
        shots.append(("compare", f"/compare?a={q}&b={quote(other)}", "#compare-figure"))
    analyses = source.completed(run_obj)
    if analyses:
        pick = "dissection" if "dissection" in analyses else analyses[0]
        shots.append(("analysis", f"/analysis?run={q}&analysis={pick}", "#analysis-status"))
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
         settle: float = 1.5) -> list[Path]:
    """Photograph the main pages; returns the PNG paths.

    Args:
        runs_dir: Folder of runs served by the dashboard.
        out_dir: Where ``dashboard_<page>.png`` files go.
        run: The run to show (default: the first).
        other: A second run for the comparison page (default: the next one, if any).
        width, height: Browser window in pixels; each shot is as tall as its page.
        settle: Seconds to wait after the page's marker appears (plots finish drawing).
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
    shots = plan(source, run, other)
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
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args(argv)
    try:
        take(args.runs_dir, args.out_dir, args.run, args.other, width=args.width)
    except ProbeError as exc:
        print(f"probe: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
