"""``probe dash`` as a real server process: waitress on 127.0.0.1, concurrent clients."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from dash_client import free_port, router_body, start_server, stop_server

from probe.sample_runs import synthetic_tables, write_tables_run


def _get(url: str, body: dict | None = None) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def server(tmp_path: Path):
    """``probe dash RUNS --port P`` in a subprocess; yields its base URL, then stops it."""
    write_tables_run(tmp_path / "runs" / "r", synthetic_tables({"c1": 6, "c2": 3}, images=16),
                     ["c1", "c2"])
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    try:
        process = start_server(tmp_path / "runs", port, 4, log, timeout=60)
    except RuntimeError as exc:
        log.close()
        pytest.fail(f"{exc}: {(tmp_path / 'server.log').read_text()}")
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        stop_server(process)
        log.close()


def test_probe_dash_serves_with_waitress_on_localhost(server: str) -> None:
    status, headers, body = _get(server + "/")
    assert status == 200 and b"_dash-config" in body
    assert headers["Server"] == "probe dash"  # waitress (ident), not the development server
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert _get(server + "/_dash-component-suites/dash/nope.js")[0] == 404
    assert _get(server + "/files/r/unit-stats/" + "a" * 300 + ".png")[0] == 404

    def unit_page(unit: int) -> tuple[int, bytes]:
        status, _, body = _get(server + "/_dash-update-component",
                               router_body(f"/unit/r/c1/{unit}"))
        return status, body

    with ThreadPoolExecutor(8) as pool:  # concurrent clients, each answered
        answers = list(pool.map(unit_page, [u % 6 for u in range(24)]))
    assert all(status == 200 for status, _ in answers)
    assert all(f"unit {u % 6}".encode() in body for u, (_, body) in enumerate(answers))
