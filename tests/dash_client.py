"""Talking to a real ``probe dash`` server, for the tests and the benchmarks.

``router_body`` is the request the browser sends to render a page through Dash's
page router; ``start_server`` / ``stop_server`` run ``probe dash`` in a subprocess
on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


def router_body(pathname: str, search: str = "") -> dict[str, Any]:
    """The callback request that renders ``pathname`` (and ``search``)."""
    return {"output": ".._pages_content.children..._pages_store.data..",
            "outputs": [{"id": "_pages_content", "property": "children"},
                        {"id": "_pages_store", "property": "data"}],
            "inputs": [{"id": "_pages_location", "property": "pathname", "value": pathname},
                       {"id": "_pages_location", "property": "search", "value": search}],
            "changedPropIds": ["_pages_location.pathname"], "state": []}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(root: Path, port: int, threads: int, log: Any,
                 timeout: float = 120) -> subprocess.Popen:
    """``probe dash ROOT --port PORT --threads N`` in a subprocess; returns once it accepts
    connections. Raises ``RuntimeError`` (with the log's path) when it does not start."""
    process = subprocess.Popen(
        [sys.executable, "-m", "probe", "dash", str(root), "--port", str(port),
         "--threads", str(threads)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"probe dash exited with {process.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return process
        except OSError:
            time.sleep(0.2)
    stop_server(process)
    raise RuntimeError(f"probe dash did not start within {timeout:.0f} s")


def stop_server(process: subprocess.Popen) -> None:
    """Terminate the server (kill it if it does not stop within 15 s)."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


def components(component: Any):
    """Every component of a Dash layout tree (or a list of them), depth first."""
    if isinstance(component, (list, tuple)):
        for item in component:
            yield from components(item)
        return
    yield component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if hasattr(child, "to_plotly_json"):
            yield from components(child)


def grid_rows(component: Any, name: str) -> list[dict[str, Any]]:
    """The rows of the AG Grid called ``name`` in a layout (as sent to the browser)."""
    for item in components(component):
        ident = getattr(item, "id", None)
        if isinstance(ident, dict) and ident.get("type") == "probe-grid" \
                and ident.get("id") == name:
            return list(item.rowData)
    raise KeyError(f"no grid {name!r} in the layout")


def ids(component: Any) -> list[str]:
    """Every string element id in a layout."""
    return [i for c in components(component) if isinstance(i := getattr(c, "id", None), str)]


def filled(component: Any) -> Any:
    """A copy of ``component`` with every slot filled, as the browser shows the page once
    the slot callbacks (:mod:`probe.dashboards.slots`) answered."""
    import copy

    from probe.dashboards import slots

    out = copy.deepcopy(component)
    for item in slot_components(out):
        item.children, item.className = slots.fill(item.id)
    return out


def slot_components(component: Any) -> list[Any]:
    """The slots (:mod:`probe.dashboards.slots`) of a layout tree, in page order."""
    from probe.dashboards import slots

    return [item for item in components(component)
            if isinstance(getattr(item, "id", None), dict)
            and item.id.get("type") == slots.SLOT]


def slot_body(page: str, **args: Any) -> dict[str, Any]:
    """The callback request the browser sends to fill one slot (:mod:`probe.dashboards.slots`)."""
    import json

    ident = {"type": "view-slot", "page": page, "key": json.dumps(args, sort_keys=True)}
    wire = json.dumps(ident, sort_keys=True, separators=(",", ":"))
    pattern = '{"key":["MATCH"],"page":["MATCH"],"type":"view-slot"}'
    return {"output": f"..{pattern}.children...{pattern}.className..",
            "outputs": [{"id": ident, "property": "children"},
                        {"id": ident, "property": "className"}],
            "inputs": [{"id": ident, "property": "id", "value": ident}],
            "changedPropIds": [f"{wire}.id"], "state": []}
