"""Print an HTML report to PDF with headless Chromium (no network, throw-away profile)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from probe.errors import ProbeError

#: Browser names tried in order on ``PATH`` (``PROBE_CHROMIUM`` overrides).
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

#: Flags that keep a headless print offline, quiet and free of the user's profile.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-pdf-header-footer", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
         "--disable-extensions", "--run-all-compositor-stages-before-draw",
         "--virtual-time-budget=10000")


class ChromiumMissing(ProbeError):
    """No Chromium/Chrome executable was found, so no PDF can be printed."""


def find_chromium() -> str | None:
    """Path of a Chromium-like browser (``PROBE_CHROMIUM`` first, then ``PATH``), or ``None``."""
    override = os.environ.get("PROBE_CHROMIUM")
    if override is not None:
        return override if override and Path(override).is_file() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def print_pdf(html_path: str | Path, pdf_path: str | Path, timeout: float = 600.0) -> Path:
    """Print ``html_path`` to ``pdf_path`` with headless Chromium.

    Raises:
        ChromiumMissing: when no browser is installed.
        ProbeError: when the browser fails or writes no PDF.
    """
    browser = find_chromium()
    if browser is None:
        raise ChromiumMissing("--pdf needs Chromium or Chrome, and none was found (install "
                              "chromium, or set PROBE_CHROMIUM=/path/to/chrome); the HTML "
                              "report was written")
    source = Path(html_path).resolve()
    target = Path(pdf_path).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="probe-chromium-") as profile:
        partial = target.with_name(f".{target.name}.partial")
        command = [browser, *FLAGS, f"--user-data-dir={profile}",
                   f"--print-to-pdf={partial}", source.as_uri()]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                    check=False)
        except subprocess.TimeoutExpired:
            partial.unlink(missing_ok=True)
            raise ProbeError(f"Chromium did not finish printing {source} within "
                             f"{timeout:.0f} s") from None
        if result.returncode != 0 or not partial.is_file() or partial.stat().st_size == 0:
            partial.unlink(missing_ok=True)
            tail = (result.stderr or "").strip().splitlines()[-1:] or ["no output"]
            raise ProbeError(f"Chromium failed to print {source} (exit {result.returncode}): "
                             f"{tail[0]}")
        os.replace(partial, target)
    return target
