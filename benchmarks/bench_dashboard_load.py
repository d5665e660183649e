"""Load test of ``probe dash``: concurrent clients on the unit page of a 5,000-unit run.

1. Builds one synthetic run of 5,056 units (8 layers) with the real ``RunStore``,
   with the tables unit-stats, dissection, filters and equivariance write
   (``probe.sample_runs.synthetic_tables``, as ``bench_dashboard.py``:
   8 exemplars per unit with 16×16 activation maps and 112×112 masks).
2. Starts the real server as a user does, ``python -m probe dash RUN_DIR --port P``
   (waitress, 127.0.0.1), in a subprocess, and waits until it answers.
3. Warms it up the way a user would (one unit page of another layer, then a
   pause for the background decode it starts), then runs ``--clients`` threads,
   each with its own keep-alive connection, sending ``--requests`` unit-page
   requests one after another. A request is what the browser sends to render
   ``/unit/<run>/<layer>/<unit>``: the page router's ``/_dash-update-component``
   call, whose answer is the whole page (exemplar images, charts, tables). With
   ``--units 1`` every request asks for the same unit (one page, many readers);
   with ``--units N`` the requests walk N different units of the widest layer.
4. Prints p50/p95/max latency, errors and requests per second, then stops the
   server.

Everything is bounded: 127.0.0.1 only, at most ``--clients × --requests``
requests, a 30 s timeout per request, ``--deadline`` seconds for the whole
load phase, 120 s for the server to start.

Usage: ``python benchmarks/bench_dashboard_load.py [--clients 20] [--requests 25]
[--units 1] [--threads 8] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

# the request and server helpers are shared with the tests (tests/dash_client.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from dash_client import free_port, router_body, start_server, stop_server

#: Layer widths of the synthetic run (5,056 units in all), as in bench_dashboard.py.
LAYERS = {"conv1": 64, "conv2": 128, "conv3": 256, "conv4": 512, "conv5": 512,
          "conv6": 1024, "conv7": 2048, "conv8": 512}
RUN = "big"
HOST = "127.0.0.1"


def build(root: Path) -> None:
    """Write the synthetic run ``root/big`` (skipped when it is already there)."""
    if (root / RUN / "manifest.json").is_file():
        return
    from probe.sample_runs import synthetic_tables, write_tables_run

    tables = synthetic_tables(LAYERS, images=450, top_k=8, map_size=16, mask_size=112, seed=0)
    write_tables_run(root / RUN, tables, list(LAYERS),
                     dataset={"name": "digits", "options": {"split": "test"}, "size": 450})


class Client:
    """One keep-alive HTTP/1.1 connection to the server (reconnects after an error)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.connection is None:
            self.connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
        try:
            self.connection.request("POST", path, body=body,
                                    headers={"Content-Type": "application/json"})
            response = self.connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = None
            raise

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


def unit_request(port: int, layer: str, unit: int) -> float:
    """One unit page, in seconds (raises on a failure)."""
    client = Client(port)
    try:
        start = time.perf_counter()
        status, body = client.post("/_dash-update-component",
                                   json.dumps(router_body(f"/unit/{RUN}/{layer}/{unit}")).encode())
        if status != 200 or b"unit-title" not in body:
            raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
        return time.perf_counter() - start
    finally:
        client.close()


def load(port: int, layer: str, units: list[int], clients: int, requests: int,
         deadline: float) -> tuple[list[float], list[str], float]:
    """Run the clients; returns latencies (s), errors and the wall time of the phase (s)."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)
    stop_at = [0.0]

    def client_loop(index: int) -> None:
        client = Client(port)
        barrier.wait(timeout=60)
        try:
            for j in range(requests):
                if time.monotonic() > stop_at[0]:
                    with lock:
                        errors.append("deadline: not sent")
                    continue
                unit = units[(index * requests + j) % len(units)]
                start = time.perf_counter()
                try:
                    status, body = client.post("/_dash-update-component",
                                               json.dumps(router_body(f"/unit/{RUN}/{layer}/{unit}")).encode())
                    ok = status == 200 and b"unit-title" in body
                    problem = "" if ok else f"HTTP {status}"
                except (OSError, http.client.HTTPException) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                elapsed = time.perf_counter() - start
                with lock:
                    (errors.append(problem) if problem else latencies.append(elapsed))
        finally:
            client.close()

    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True)
               for i in range(clients)]
    stop_at[0] = time.monotonic() + deadline
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=deadline + 60)
    return latencies, errors, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=25, help="requests per client")
    parser.add_argument("--units", type=int, default=1,
                        help="distinct units the requests walk (1: all ask for the same page)")
    parser.add_argument("--threads", type=int, default=8, help="server worker threads")
    parser.add_argument("--deadline", type=float, default=300.0,
                        help="seconds the load phase may take at most")
    parser.add_argument("--keep", type=Path, help="build the run here and keep it (reused)")
    args = parser.parse_args()
    if not (1 <= args.clients <= 200 and 1 <= args.requests <= 1000 and args.units >= 1):
        raise SystemExit("--clients 1..200, --requests 1..1000, --units >= 1")

    root = args.keep or Path(tempfile.mkdtemp(prefix="probe-bench-load-"))
    process, log = None, None
    try:
        start = time.perf_counter()
        build(root)
        size = sum(p.stat().st_size for p in (root / RUN).rglob("*.parquet")) / 2**20
        print(f"synthetic run: {sum(LAYERS.values())} units in {len(LAYERS)} layers, "
              f"{size:.0f} MiB of parquet, ready in {time.perf_counter() - start:.1f} s")
        port = free_port()
        log = (root / "server.log").open("w")
        started = time.perf_counter()
        process = start_server(root, port, args.threads, log)
        print(f"probe dash (waitress, {args.threads} threads) on http://{HOST}:{port}/, "
              f"up in {time.perf_counter() - started:.1f} s")

        layer = max(LAYERS, key=LAYERS.get)
        width = LAYERS[layer]
        step = max(1, width // args.units)
        units = [(width // 2 + i * step) % width for i in range(args.units)]
        first = unit_request(port, "conv2", 3)  # the server's first page: reads, data set
        time.sleep(3.0)  # the user reads it; the tables it started decoding finish
        print(f"warm-up: first unit page (another layer) {first * 1000:.0f} ms")
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

        latencies, errors, wall = load(port, layer, units, args.clients, args.requests,
                                       args.deadline)
        print(f"load average after:  {os.getloadavg()[0]:.2f}")
        done = len(latencies)
        print(f"\n{args.clients} clients × {args.requests} requests, unit page "
              f"/unit/{RUN}/{layer}/<unit>, {len(units)} distinct unit(s)")
        if latencies:
            ms = sorted(x * 1000 for x in latencies)
            p95 = ms[max(0, math.ceil(0.95 * len(ms)) - 1)]  # nearest rank
            print(f"  ok {done}, errors {len(errors)}, wall {wall:.2f} s, "
                  f"{done / wall:.1f} req/s")
            print(f"  latency ms: p50 {statistics.median(ms):.0f}, p95 {p95:.0f}, "
                  f"max {ms[-1]:.0f}, mean {statistics.fmean(ms):.0f}")
        else:
            print(f"  no request succeeded; errors {len(errors)}")
        for problem in sorted(set(errors))[:5]:
            print(f"  error: {problem} ({errors.count(problem)}×)")
        single = [unit_request(port, layer, units[0]) * 1000 for _ in range(5)]
        print(f"  single client afterwards: {statistics.median(single):.0f} ms")
    finally:
        if process is not None:
            stop_server(process)
        if log is not None:
            log.close()
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
