"""Dashboard latency on a large run (≥ 5,000 units): the old pages against the new, side by side.

Builds two synthetic runs (``big-a``, ``big-b``) with the real RunStore (parquet
tables shaped like unit-stats, dissection, filters and equivariance write them,
8 exemplars per unit with 16×16 activation maps and 112×112 dissection masks;
the data set is ``digits``, so exemplars are cut from its images), then runs a
worker process per version, alternating (old, new, old, new, …, ``--rounds``
of each) on the same runs. A worker (``--version old|new --root DIR``) times

* every page's layout/callbacks called as plain functions: cold (every
  dashboard cache cleared, the data set reloaded before the clock starts,
  interpreter warm: each operation ran once before) and warm (called again);
* the same answers over HTTP through the Flask test client
  (``/_dash-update-component``, as the browser asks for them), with the size
  of the answer;

and prints them as JSON. The driver prints, per operation, the median over the
rounds of old and new and new/old; a page is called regressed when new/old >
:data:`REGRESSED` (and more than :data:`NOISE_MS` slower) on a cold or warm number.

"old" is the committed code (``git worktree add --detach OLD REV``, ``--old-rev``,
default ``HEAD``; made on first use, reused after), imported entirely from that
worktree: ``PYTHONPATH=OLD-site:OLD``, where ``OLD-site/sitecustomize.py`` maps
``probe.dashboards`` and ``probe.plugins`` to ``OLD/dashboards`` and
``OLD/plugins`` (the editable install maps those two packages to this checkout
through a finder that runs after ``sys.path``; symlinks ``OLD/probe/dashboards
-> ../dashboards`` alone would import the old code, but Dash then names the old
page modules after the symlinked path and registers each page twice). Each
worker reports where ``probe.dashboards`` came from, and the driver stops if it
is not the tree asked for.

Usage: ``python benchmarks/bench_dashboard.py [--keep DIR] [--rounds 5]
[--old-tree /tmp/probe-old-wt] [--old-rev HEAD] [--units-scale 1]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# the request and server helpers are shared with the tests (tests/dash_client.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from dash_client import components, router_body, slot_body, slot_components

REPO = Path(__file__).resolve().parents[1]

#: Layer widths of the synthetic run (5,056 units in all).
LAYERS = {"conv1": 64, "conv2": 128, "conv3": 256, "conv4": 512, "conv5": 512,
          "conv6": 1024, "conv7": 2048, "conv8": 512}
#: new/old above this on a cold or warm page: regressed.
REGRESSED = 1.2
#: ... and new − old above this many ms (a 0.1 → 0.2 ms memo hit is not a regression).
NOISE_MS = 1.0
#: Default place of the old code's worktree.
OLD_TREE = Path("/tmp/probe-old-wt")
COLD_REPEAT, WARM_REPEAT = 3, 5


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[list[float], Any]:
    """Wall times of ``repeat`` calls of ``fn`` in milliseconds, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return times, result


def build(root: Path, scale: float) -> dict[str, int]:
    """Write runs ``big-a`` and ``big-b`` under ``root``; returns the layer widths."""
    from probe.sample_runs import synthetic_tables, write_tables_run

    layers = {k: max(1, int(v * scale)) for k, v in LAYERS.items()}
    dataset = {"name": "digits", "options": {"split": "test"}, "size": 450}
    for seed, name in ((0, "big-a"), (1, "big-b")):
        shutil.rmtree(root / name, ignore_errors=True)
        tables = synthetic_tables(layers, images=450, top_k=8, map_size=16, mask_size=112,
                                  seed=seed)
        write_tables_run(root / name, tables, list(layers), dataset=dataset)
    return layers


def existing_layers(root: Path) -> dict[str, int] | None:
    """Layer widths of runs already under ``root`` (``None`` when they are not there)."""
    import pyarrow.parquet as pq

    errors = root / "big-b" / "equivariance" / "errors.parquet"
    if not (root / "big-b" / "manifest.json").is_file() or not errors.is_file() \
            or "pixels" not in pq.read_schema(errors).names:  # missing, or built before
        return None

    table = pq.read_table(root / "big-a" / "unit-stats" / "units.parquet", columns=["layer"])
    counts: dict[str, int] = {}
    for name in table.column("layer").to_pylist():
        counts[str(name)] = counts.get(str(name), 0) + 1
    return counts


def callback_body(outputs: list[tuple[str, str]], inputs: list[tuple[str, str, Any]],
                  changed: str) -> dict[str, Any]:
    """A ``/_dash-update-component`` request for one callback."""
    return {"output": ".." + "...".join(f"{i}.{p}" for i, p in outputs) + "..",
            "outputs": [{"id": i, "property": p} for i, p in outputs],
            "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
            "changedPropIds": [changed], "state": []}


def old_units_body(run: str, layer: str, page: int) -> dict[str, Any]:
    """The old units grid's server-side page/sort/filter callback (first view: unit order)."""
    return callback_body(
        [("units-table", "data"), ("units-table", "columns"), ("units-table", "page_count"),
         ("units-notice", "children")],
        [("units-run", "value", run), ("units-layer", "value", layer),
         ("units-table", "page_current", page), ("units-table", "page_size", 25),
         ("units-table", "sort_by", []), ("units-table", "filter_query", "")],
        "units-layer.value")


def new_units_body(run: str, layer: str, sort: str | None, page: int) -> dict[str, Any]:
    """The new units page's cards callback (first view: sorted by the score)."""
    return callback_body(
        [("units-cards", "children"), ("units-count", "children")],
        [("units-run", "value", run), ("units-layer", "value", layer),
         ("units-flagged", "value", []), ("units-sort", "value", sort),
         ("units-page", "data", page)],
        "units-layer.value")


def new_rows_body(run: str, layer: str) -> dict[str, Any]:
    """The new units grid's first block of rows (AG Grid's infinite row model asks for it)."""
    key = {"type": "units-rows", "key": f"{run}-{layer}-all"}
    body = callback_body([], [], "")
    body.update(output='{"key":["MATCH"],"type":"units-rows"}.getRowsResponse',
        outputs={"id": key, "property": "getRowsResponse"},
        inputs=[{"id": key, "property": "getRowsRequest",
                 "value": {"startRow": 0, "endRow": 100, "sortModel": [], "filterModel": {}}}],
        state=[{"id": "units-run", "property": "value", "value": run},
               {"id": "units-layer", "property": "value", "value": layer},
               {"id": "units-flagged", "property": "value", "value": []}],
        changedPropIds=[json.dumps(key, sort_keys=True, separators=(",", ":"))
                        + ".getRowsRequest"])
    return body


def fill_slots(component: Any) -> None:
    """Fill every slot of a page's answer, as the browser's slot requests would."""
    from probe.dashboards import slots

    for item in slot_components(component):  # the answers are computed, the page kept as is
        slots.fill(item.id)


def slot_ids(answer: Any) -> list[dict[str, Any]]:
    """The slot ids in a JSON callback answer (what the browser then asks to fill)."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ident = node.get("id")
            if isinstance(ident, dict) and ident.get("type") == "view-slot":
                found.append(ident)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(answer)
    return found


# -- worker ------------------------------------------------------------------------
def worker(version: str, root: Path) -> dict[str, Any]:
    """Time every operation in this process (the version on ``sys.path``)."""
    import torch

    torch.set_num_threads(1)
    import probe.dashboards
    from probe.dashboards import create_app
    from probe.dashboards.data import clear_caches, get_source, wait_for_prefetch

    app = create_app(root)
    from probe.dashboards.pages import analysis, compare, runs, unit, units
    from probe.dashboards.pages import layers as layers_page

    layers = existing_layers(root) or {}
    widest = max(layers, key=layers.get)
    first_layer = next(iter(layers))
    probe_unit = layers[widest] // 2
    old = version == "old"
    sort = None if old else units.sort_choices("big-a", widest, None)[1]

    if old:
        def layers_op() -> Any:
            return layers_page.layers_content("big-a")

        def units_first() -> Any:
            return units.units_page("big-a", widest, 0, 25, [], "")

        def units_next() -> Any:
            return units.units_page("big-a", widest, 1, 25, [], "")

        def compare_op() -> Any:
            return compare.compare_content("big-a", "big-b", "detector_share")
    else:
        def layers_op() -> Any:
            return (layers_page.layers_content("big-a"),
                    layers_page.layer_detail("big-a", first_layer))

        def units_first() -> Any:  # cards, the grid's shell and its first block of rows
            units.sort_choices("big-a", widest, None)
            cards = units.units_content("big-a", widest, [], sort, 0)
            units.units_table("big-a", widest, [])
            units.units_rows({"startRow": 0, "endRow": 100}, "big-a", widest, [])
            return cards

        def units_next() -> Any:
            return units.units_content("big-a", widest, [], sort, 1)

        def units_with_pictures() -> Any:  # ... and the cards' pictures, one request
            cards = units_first()
            thumbs = [i.id for i in components(cards)
                      if isinstance(getattr(i, "id", None), dict)
                      and i.id.get("type") == "card-thumb"]
            units.card_thumbnails(thumbs)
            return cards

        def compare_op() -> Any:
            return compare.compare_content("big-a", "big-b")

    def unit_op() -> Any:
        return unit.layout(run="big-a", layer=widest, unit=str(probe_unit))

    def complete(fn: Callable[[], Any]) -> Callable[[], Any]:
        """``fn``, then every slot of its answer filled (new); the old pages had none."""
        if old:
            return fn

        def run() -> Any:
            out = fn()
            fill_slots(out)
            return out

        return run

    cases: list[tuple[str, Callable[[], Any], Callable[[], Any] | None]] = [
        ("runs page", runs.layout, None),
        ("layers page, first view", layers_op, None),
        ("layers page, complete (every section)", complete(layers_op), None),
        (f"units page, first view ({widest}, {layers[widest]} units)", units_first, None),
        ("units page, complete (cards' pictures)", units_first if old else units_with_pictures,
         None),
        ("units page, next page", units_next, units_first),
        (f"unit page {widest}/{probe_unit}, first view", unit_op, None),
        (f"unit page {widest}/{probe_unit}, complete", complete(unit_op), None),
        ("compare page (2 runs), first view", compare_op, None),
        ("compare page (2 runs), complete", complete(compare_op), None),
        ("analysis page: dissection", lambda: analysis.analysis_content("big-a", "dissection"),
         None),
    ]
    out: dict[str, Any] = {"version": version, "dashboards": probe.dashboards.__file__,
                           "pid": os.getpid(), "ops": {}}

    def cold_start() -> None:
        wait_for_prefetch()
        clear_caches()
        source = get_source()
        source.dataset(source.run("big-a"))  # the data set itself: reloaded once per process

    with app.server.test_request_context():
        for _, fn, before in cases:  # interpreter warm: imports, templates, first figures
            (before or fn)()
            fn()
        for name, fn, before in cases:
            cold = []
            for _ in range(COLD_REPEAT):
                cold_start()
                if before is not None:
                    before()
                cold += timed(fn)[0]
            wait_for_prefetch()  # warm = after the background reads it started
            warm = timed(fn, WARM_REPEAT)[0]
            out["ops"][name] = {"cold": statistics.median(cold), "warm": statistics.median(warm)}

        # a further unit: the unit tables decoded, the page itself never rendered before (not
        # a neighbour of one shown: the new pages render those ahead, measured next)
        cold_start()
        unit_op()
        wait_for_prefetch()
        fresh = []
        for k in range(WARM_REPEAT):
            other = (probe_unit + 5 * (k + 1)) % layers[widest]
            fresh += timed(complete(lambda u=other: unit.layout(run="big-a", layer=widest,
                                                                 unit=str(u))))[0]
            wait_for_prefetch()
        out["ops"]["unit page, a further unit, complete (tables decoded)"] = {
            "cold": statistics.median(fresh), "warm": None}
        # the next unit (→ key, next link) once the page shown has been idle a moment: the
        # background work the page started is done (tables decoded; new: neighbours rendered)
        after = []
        for _ in range(WARM_REPEAT):
            cold_start()
            unit_op()
            wait_for_prefetch()
            after += timed(complete(lambda: unit.layout(run="big-a", layer=widest,
                                                        unit=str(probe_unit + 1))))[0]
        out["ops"]["unit page, the next unit after a pause, complete"] = {
            "cold": statistics.median(after), "warm": None}
        wait_for_prefetch()  # the last page's work ahead: not during the next measurement
        clear_caches()
        source = get_source()
        out["ops"]["data set reload (digits, once per process)"] = {
            "cold": timed(lambda: source.dataset(source.run("big-a")))[0][0], "warm": None}

    client = app.server.test_client()
    unit_path = f"/unit/big-a/{widest}/{probe_unit}"
    if old:
        def units_request() -> Any:
            return client.post("/_dash-update-component",
                               json=old_units_body("big-a", widest, 0))
    else:
        def units_request() -> Any:  # the cards, then the grid's first block of rows
            cards = client.post("/_dash-update-component",
                                json=new_units_body("big-a", widest, sort, 0))
            if cards.status_code != 200:
                return cards
            return client.post("/_dash-update-component", json=new_rows_body("big-a", widest))
    def unit_request() -> Any:
        return client.post("/_dash-update-component", json=router_body(unit_path))

    def unit_complete() -> Any:  # the page, then each slot as the browser asks for it
        page = unit_request()
        if old or page.status_code != 200:
            return page
        for ident in slot_ids(page.get_json()):
            answer = client.post("/_dash-update-component",
                                 json=slot_body(ident["page"], **json.loads(ident["key"])))
            if answer.status_code != 200:
                return answer
        return page

    requests = [
        ("HTTP GET / (app shell)", lambda: client.get("/"), None),
        (f"HTTP router {unit_path}, first view", unit_request, b"unit-title"),
        (f"HTTP {unit_path}, complete (router + every slot)", unit_complete, b"unit-title"),
        ("HTTP units callback, first view", units_request, b"unit"),
    ]
    for _, fn, _ in requests:
        fn()
    for name, fn, marker in requests:
        cold = []
        for _ in range(COLD_REPEAT):
            with app.server.test_request_context():
                cold_start()
            times, response = timed(fn)
            cold += times
            if response.status_code != 200 or (marker and marker not in response.data):
                raise SystemExit(f"{name}: HTTP {response.status_code}: {response.data[:300]!r}")
        wait_for_prefetch()
        warm, response = timed(fn, WARM_REPEAT)
        out["ops"][name] = {"cold": statistics.median(cold), "warm": statistics.median(warm),
                            "kib": len(response.data) / 1024}
    return out


# -- driver ------------------------------------------------------------------------
SITE = """\
# Written by benchmarks/bench_dashboard.py: import probe.dashboards and probe.plugins from
# the old worktree under their real paths (Dash names page modules by comparing the
# package's import path with its resolved path, so a symlinked package would not do).
import sys
from importlib.util import spec_from_file_location

_TREE = {tree!r}
_MAP = {{"probe.dashboards": _TREE + "/dashboards", "probe.plugins": _TREE + "/plugins"}}


class _OldTree:
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname in _MAP:
            return spec_from_file_location(fullname, _MAP[fullname] + "/__init__.py",
                                           submodule_search_locations=[_MAP[fullname]])
        return None


sys.meta_path.insert(0, _OldTree)
"""


def old_tree(path: Path, rev: str = "HEAD") -> Path:
    """The committed code (``rev``) as a worktree at ``path`` (made when missing; an existing
    one is reused as it is), with the links that keep ``probe.dashboards`` and
    ``probe.plugins`` inside it, and a ``sitecustomize`` (in ``PATH-site``) that imports
    them from it first."""
    path = path.resolve()
    if not (path / "probe" / "__init__.py").is_file():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path),
                        rev], check=True)
    for name in ("dashboards", "plugins"):
        link = path / "probe" / name
        if not link.exists():
            link.symlink_to(Path("..") / name)
    site = Path(f"{path}-site")
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITE.format(tree=str(path)))
    return path


def tree_commit(path: Path) -> str:
    """The commit checked out in the worktree ``path`` (short form)."""
    return subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()


def version_env(version: str, tree: Path) -> dict[str, str]:
    """The environment of a process running ``version`` (old: imported from ``tree``)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    if version == "old":
        env["PYTHONPATH"] = f"{tree}-site{os.pathsep}{tree}"
    return env


def run_worker(version: str, root: Path, tree: Path) -> dict[str, Any]:
    env = version_env(version, tree)
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--version", version,
         "--root", str(root)], env=env, cwd=tempfile.gettempdir(), capture_output=True,
        text=True, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"{version} worker failed:\n{result.stderr[-3000:]}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    expected = str(tree if version == "old" else REPO)
    if not data["dashboards"].startswith(expected):
        raise SystemExit(f"{version} worker imported probe.dashboards from {data['dashboards']}")
    return data


def median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units-scale", type=float, default=1.0,
                        help="multiply every layer width (1.0 = 5,056 units)")
    parser.add_argument("--keep", type=Path,
                        help="write the runs here and keep them (reused when present)")
    parser.add_argument("--rounds", type=int, default=5, help="workers per version (default 5)")
    parser.add_argument("--old-tree", type=Path, default=OLD_TREE,
                        help="worktree of the old code (made with git worktree when missing)")
    parser.add_argument("--old-rev", default="HEAD",
                        help="commit of the old code when the worktree is made (6a87c67: the "
                             "pages before the view-hook rewrite)")
    parser.add_argument("--version", choices=("old", "new"), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.version:
        print(json.dumps(worker(args.version, args.root)))
        return

    tree = old_tree(args.old_tree, args.old_rev)
    root = args.keep or Path(tempfile.mkdtemp(prefix="probe-bench-dash-"))
    try:
        start = time.perf_counter()
        layers = existing_layers(root) or build(root, args.units_scale)
        size = sum(p.stat().st_size for p in root.rglob("*.parquet")) / 2**20
        print(f"synthetic runs: 2 × {sum(layers.values())} units in {len(layers)} layers, "
              f"{size:.0f} MiB of parquet, ready in {time.perf_counter() - start:.1f} s")
        print(f"old: {tree} (commit {tree_commit(tree)}), new: {REPO} (working tree); "
              f"{args.rounds} rounds, "
              f"old and new alternating; per worker cold ×{COLD_REPEAT}, warm ×{WARM_REPEAT}")
        results: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
        loads = []
        for r in range(args.rounds):
            for version in ("old", "new"):
                loads.append(os.getloadavg()[0])
                began = time.perf_counter()
                data = run_worker(version, root, tree)
                results[version].append(data)
                print(f"  round {r + 1} {version}: {time.perf_counter() - began:5.1f} s, "
                      f"load average {loads[-1]:.2f}, probe.dashboards from "
                      f"{Path(data['dashboards']).parent}", flush=True)
        loads.append(os.getloadavg()[0])
        print(f"load average during the runs: {min(loads):.2f}–{max(loads):.2f} "
              f"(median {statistics.median(loads):.2f}) on {os.cpu_count()} CPUs")

        names = list(results["new"][0]["ops"])
        print(f"\n{'operation (median of ' + str(args.rounds) + ' workers each)':58s} "
              f"{'old ms':>8s} {'new ms':>8s} {'new/old':>8s}")
        regressed = []
        for name in names:
            for kind in ("cold", "warm"):
                a = median([d["ops"].get(name, {}).get(kind) for d in results["old"]])
                b = median([d["ops"][name][kind] for d in results["new"]])
                if a is None or b is None:
                    continue
                ratio = b / a if a > 0 else float("inf")
                label = f"{name}, {kind}" if results["new"][0]["ops"][name]["warm"] is not None \
                    else name
                flag = "  REGRESSED" if ratio > REGRESSED and b - a > NOISE_MS else ""
                print(f"{label:58s} {a:8.1f} {b:8.1f} {ratio:8.2f}{flag}")
                if flag:
                    regressed.append(label)
            kib = [median([d["ops"].get(name, {}).get("kib") for d in results[v]])
                   for v in ("old", "new")]
            if None not in kib:
                print(f"{'  answer size, KiB':58s} {kib[0]:8.1f} {kib[1]:8.1f} "
                      f"{kib[1] / kib[0]:8.2f}")
        if regressed:
            print(f"\nREGRESSED (new/old > {REGRESSED} and > {NOISE_MS} ms slower): "
                  + "; ".join(regressed))
        else:
            print(f"\nno regression: new/old ≤ {REGRESSED} (or within {NOISE_MS} ms) everywhere")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
