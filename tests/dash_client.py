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
