"""What the dashboard reads and serves: only files of runs under RUNS_DIR, cached by manifest."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest
from dash_client import grid_rows, router_body

from probe.dashboards.data import NotFound, RunSource, clear_caches
from probe.errors import ProbeError
from probe.sample_runs import write_tables_run


def _units(layer: str = "c1", n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"layer": layer, "unit": range(n), "mean": 0.0, "std": 1.0,
                         "max": [float(i) for i in range(n)], "fraction_positive": 0.5,
                         "count": 10})


@pytest.fixture
def root(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    write_tables_run(runs / "good", {"unit-stats": {"units": _units()}}, ["c1"])
    (runs / "good" / "unit-stats" / "note.txt").write_text("hello")
    (runs / "good" / "unit-stats" / "evil.py").write_text("print('never served')")
    (tmp_path / "secret.txt").write_text("outside")
    write_tables_run(tmp_path / "elsewhere", {"unit-stats": {"units": _units()}}, ["c1"])
    os.symlink(tmp_path / "elsewhere", runs / "linked-out")  # a run outside the root
    os.symlink(tmp_path / "secret.txt", runs / "good" / "unit-stats" / "leak.txt")
    (runs / "not-a-run").mkdir()
    clear_caches()
    return runs


def test_lists_only_runs_inside_the_root(root: Path) -> None:
    source = RunSource(root)
    assert source.run_names() == ["good"]
    with pytest.raises(NotFound, match="no run 'linked-out'"):
        source.run("linked-out")
    for bad in ("..", "../elsewhere", "/etc", "good/../..", "", None, "not-a-run"):
        with pytest.raises(NotFound):
            source.run(bad)
    single = RunSource(root / "good")  # RUNS_DIR may be one run
    assert single.run_names() == ["good"]
    with pytest.raises(ProbeError, match="does not exist"):
        RunSource(root / "missing")


def test_layers_are_checked_against_the_run(root: Path) -> None:
    source = RunSource(root)
    run = source.run("good")
    assert source.check_layer(run, "c1") == "c1"
    for bad in ("c2", "../c1", None):
        with pytest.raises(NotFound, match="has no layer"):
            source.check_layer(run, bad)


def test_artifacts_never_escape(root: Path) -> None:
    source = RunSource(root)
    assert source.artifact("good", "unit-stats", "note.txt").read_text() == "hello"
    bad = [("good", "unit-stats", "../manifest.json"), ("good", "unit-stats", "/etc/passwd"),
           ("good", "unit-stats", "leak.txt"),  # symlink to a file outside
           ("good", "unit-stats", "evil.py"),  # type not served
           ("good", "..", "manifest.json"), ("good", "dissection", "x.png"),
           ("linked-out", "unit-stats", "units.parquet"), ("good", "unit-stats", "a//b.png")]
    for run, analysis, relative in bad:
        with pytest.raises(NotFound):
            source.artifact(run, analysis, relative)


def test_file_route_answers_404_with_the_reason(root: Path) -> None:
    from probe.dashboards import create_app

    client = create_app(root).server.test_client()
    ok = client.get("/files/good/unit-stats/note.txt")
    assert ok.status_code == 200 and ok.data == b"hello"
    assert ok.headers["X-Content-Type-Options"] == "nosniff"
    for url in ("/files/good/unit-stats/..%2Fmanifest.json", "/files/good/unit-stats/leak.txt",
                "/files/good/unit-stats/evil.py", "/files/linked-out/unit-stats/units.parquet",
                "/files/good/unit-stats/%2Fetc%2Fpasswd", "/files/..%2F..%2Fsecret/x/y.txt",
                "/files/good//etc/passwd", "/files/good", "/files/"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert b"outside" not in response.data and b"print" not in response.data


def test_tables_are_cached_until_the_manifest_changes(root: Path) -> None:
    source = RunSource(root)
    run = source.run("good")
    first = source.table(run, "unit-stats", "units", columns=("unit", "max"), layer="c1")
    assert list(first.columns) == ["unit", "max"] and list(first["max"]) == [0.0, 1.0, 2.0]
    assert source.run("good") is run
    assert source.table(run, "unit-stats", "units", columns=("unit", "max"), layer="c1") \
        is first
    write_tables_run(root / "good", {"unit-stats": {"units": _units(n=5)}}, ["c1"])
    stamp = (root / "good" / "manifest.json").stat().st_mtime_ns
    os.utime(root / "good" / "manifest.json", ns=(stamp + 10**9, stamp + 10**9))
    rerun = source.run("good")
    assert rerun is not run
    assert len(source.table(rerun, "unit-stats", "units", layer="c1")) == 5
    assert source.optional(rerun, "dissection", "units") is None
    with pytest.raises(NotFound, match="no completed table dissection/units"):
        source.table(rerun, "dissection", "units")


def test_dataset_of_a_run_is_reloaded_by_name(tmp_path: Path) -> None:
    write_tables_run(tmp_path / "d", {"unit-stats": {"units": _units()}}, ["c1"],
                     dataset={"name": "digits", "options": {"size": 5}, "size": 5})
    write_tables_run(tmp_path / "n", {"unit-stats": {"units": _units()}}, ["c1"],
                     dataset={"name": "not-installed", "options": {}, "size": 5})
    source = RunSource(tmp_path)
    data = source.dataset(source.run("d"))
    assert len(data) == 5 and tuple(data[0]["image"].shape) == (1, 32, 32)
    assert source.dataset(source.run("d")) is data  # cached
    assert source.dataset(source.run("n")) is None


def test_decoded_tables_stay_within_the_memory_budget(root: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from probe.dashboards import table_cache

    source = RunSource(root)
    run = source.run("good")
    first = table_cache.read_arrow(str(run.path), 1, "unit-stats", "units", None)
    monkeypatch.setattr(table_cache, "ARROW_BUDGET", first.nbytes)  # room for one table
    table_cache.read_arrow(str(run.path), 2, "unit-stats", "units", None)
    assert [k[1] for k in table_cache.cached_keys()] == [2]  # the older one was evicted
    assert len(source.unit_rows(run, "unit-stats", "units", "c1", 2)) == 1


def test_unit_rows_by_row_group_statistics_match_the_table(tmp_path: Path) -> None:
    import numpy as np
    import pyarrow.parquet as pq

    n = 6000  # > ROW_GROUP_ROWS: written in several row groups
    frame = pd.DataFrame({"layer": np.repeat(["a", "b"], n // 2),
                          "unit": np.tile(np.arange(n // 4), 4), "rank": np.arange(n) % 2,
                          "value": np.arange(n, dtype=float)})
    write_tables_run(tmp_path / "r", {"unit-stats": {"top_images": frame}}, ["a", "b"])
    clear_caches()
    assert pq.ParquetFile(tmp_path / "r" / "unit-stats" / "top_images.parquet") \
        .metadata.num_row_groups == 2
    source = RunSource(tmp_path)
    run = source.run("r")
    by_groups = source.unit_rows(run, "unit-stats", "top_images", "b", 7)
    want = frame[(frame.layer == "b") & (frame.unit == 7)].reset_index(drop=True)
    assert by_groups["value"].tolist() == want["value"].tolist() == [3007.0, 4507.0]
    source.table(run, "unit-stats", "top_images")  # now decoded whole: the cached path
    source.prefetch(run, [("unit-stats", "top_images")])
    from probe.dashboards.data import wait_for_prefetch

    wait_for_prefetch()
    assert source.unit_rows(run, "unit-stats", "top_images", "b", 7)["value"].tolist() == \
        [3007.0, 4507.0]


def test_one_layer_of_a_table_in_row_groups_is_read_alone(tmp_path: Path) -> None:
    """A layer's maps come from its row groups only (the whole table is not decoded), and
    equal the whole table's rows of that layer, before and after it is decoded."""
    import numpy as np

    from probe.dashboards import table_cache

    n = 9000  # three row groups: a, a+b, b
    frame = pd.DataFrame({"layer": np.repeat(["a", "b"], n // 2),
                          "unit": np.tile(np.arange(n // 4), 4),
                          "value": np.arange(n, dtype=float),
                          "map": [np.full(4, i, np.float32) for i in range(n)]})
    write_tables_run(tmp_path / "r", {"unit-stats": {"top_images": frame}}, ["a", "b"])
    clear_caches()
    source = RunSource(tmp_path)
    run = source.run("r")
    want = frame[frame.layer == "b"].reset_index(drop=True)
    alone = source.table(run, "unit-stats", "top_images", columns=("unit", "map"), layer="b")
    assert not [k for k in table_cache.cached_keys() if k[2:4] == ("unit-stats", "top_images")]
    assert alone["unit"].tolist() == want["unit"].tolist()
    assert [m[0] for m in alone["map"]] == [m[0] for m in want["map"]]
    source.table(run, "unit-stats", "top_images")  # decoded whole
    clear_caches()
    source.table(run, "unit-stats", "top_images")
    again = source.table(run, "unit-stats", "top_images", columns=("value",), layer="a")
    assert again["value"].tolist() == frame[frame.layer == "a"]["value"].tolist()


def test_scalar_columns_are_decoded_once_for_every_choice_of_them(tmp_path: Path) -> None:
    """Views asking for different scalar columns of one table (and one layer of it, and one
    unit) share one decode of its scalar columns; its maps are never decoded for them."""
    import numpy as np

    from probe.dashboards import table_cache

    n = 9000
    frame = pd.DataFrame({"layer": np.repeat(["a", "b"], n // 2),
                          "unit": np.tile(np.arange(n // 4), 4),
                          "value": np.arange(n, dtype=float), "rank": np.arange(n) % 3,
                          "map": [np.full(4, i, np.float32) for i in range(n)]})
    write_tables_run(tmp_path / "r", {"unit-stats": {"top_images": frame,
                                                     "units": frame.drop(columns="map")}},
                     ["a", "b"])
    clear_caches()
    source = RunSource(tmp_path)
    run = source.run("r")
    first = source.table(run, "unit-stats", "top_images", columns=("unit", "value"))
    second = source.table(run, "unit-stats", "top_images", columns=("rank",), layer="b")
    both = source.table(run, "unit-stats", "top_images", columns=("layer", "unit", "rank",
                                                                  "value"))
    keys = [k[4] for k in table_cache.cached_keys() if k[3] == "top_images"]
    assert keys == [("layer", "unit", "value", "rank")]  # one decode, the scalar columns
    assert first["value"].tolist() == frame["value"].tolist()
    assert second["rank"].tolist() == frame[frame.layer == "b"]["rank"].tolist()
    assert both.columns.tolist() == ["layer", "unit", "rank", "value"]
    # a table of scalars only: decoded whole once, one unit's rows sliced from it
    source.table(run, "unit-stats", "units", columns=("value",), layer="a")
    rows = source.unit_rows(run, "unit-stats", "units", "b", 7)
    assert rows["value"].tolist() == frame[(frame.layer == "b") & (frame.unit == 7)][
        "value"].tolist()
    assert [k[4] for k in table_cache.cached_keys() if k[3] == "units"] == [None]


def _write_manifest(folder: Path, content: str | bytes) -> None:
    folder.mkdir(parents=True)
    data = content.encode() if isinstance(content, str) else content
    (folder / "manifest.json").write_bytes(data)


#: Run folders whose manifest cannot be used, and what the runs page must say about each.
BAD_MANIFESTS = {
    "bad-json": ("{not json", "is not valid JSON"),
    "bad-list": ("[1, 2, 3]", "list"),
    "bad-bytes": (b"\xff\xfe\x00{", "manifest.json"),
    "bad-entry": ('{"analyses": {"unit-stats": ["complete"]}}', "unit-stats"),
    "bad-arch": ('{"analyses": {}, "arch": "lenet5"}', "arch"),
    "bad-tables": ('{"analyses": {"x": {"status": "complete", "tables": ["../../secret"]}}}',
                   "plain names"),
    "bad-timings": ('{"analyses": {}, "timings": {"total": "soon"}}', "timings"),
}


def test_unreadable_manifests_are_listed_with_the_reason(root: Path) -> None:
    """A malformed manifest (invalid JSON, a JSON list, wrong field types) takes no page down."""
    from probe.dashboards import create_app

    for name, (content, _) in BAD_MANIFESTS.items():
        _write_manifest(root / name, content)
    clear_caches()
    source = RunSource(root)
    problems = source.unreadable()
    assert sorted(problems) == sorted(BAD_MANIFESTS)
    for name, (_, reason) in BAD_MANIFESTS.items():
        assert reason in problems[name], (name, problems[name])
        assert "\n" not in problems[name]
        with pytest.raises(ProbeError):
            source.run(name)
    assert [r.name for r in source.runs()] == ["good"]

    app = create_app(root)
    from probe.dashboards.pages import runs

    page = runs.layout()
    assert [r["run"] for r in grid_rows(page, "runs-table")] == ["good"]  # still works
    unreadable = {r["run"]: r["problem"] for r in grid_rows(page, "runs-unreadable")}
    assert unreadable == problems

    client = app.server.test_client()
    response = client.post("/_dash-update-component", json=router_body("/"))
    assert response.status_code == 200
    assert b"runs-unreadable" in response.data and b"is not valid JSON" in response.data
    for path, search in (("/layers", "?run=bad-list"), ("/units", "?run=bad-entry&layer=c1"),
                         ("/unit/bad-arch/c1/0", ""), ("/analysis", "?run=bad-json"),
                         ("/compare", "?a=good&b=bad-tables")):
        assert client.post("/_dash-update-component",
                           json=router_body(path, search)).status_code == 200, path
    from probe.dashboards.pages import units

    assert "bad-entry" in str(units.units_content("bad-entry", "c1", [], None, 0)[0])
    cards, count = units.units_content("good", "c1", [], None, 0)
    assert cards and count.startswith("3 units of 3 in c1")  # the good run is untouched


def test_long_names_and_bad_component_paths_are_404(root: Path) -> None:
    from probe.dashboards import create_app

    app = create_app(root)
    client = app.server.test_client()
    long = "a" * 300
    for url in (f"/files/good/unit-stats/{long}.png", f"/files/good/{long}/x.png",
                f"/files/{long}/unit-stats/x.png", f"/files/good/unit-stats/{long}/{long}.txt",
                f"/files/good/unit-stats/{'b/' * 600}c.txt",
                "/_dash-component-suites/dash/nope.js", "/_dash-component-suites/nopkg/x.js",
                f"/_dash-component-suites/dash/{long}.js",
                "/_dash-component-suites/dash/../../etc/passwd",
                "/_dash-component-suites/dash/dcc/%2e%2e/%2e%2e/dash.py",
                "/_dash-component-suites/plotly/package_data/nope.v1_0_0m1.min.js"):
        response = client.get(url)
        assert response.status_code == 404, (url[:90], response.status_code)
        assert response.mimetype == "text/plain" and len(response.data) < 2000
    page = client.get("/").get_data(as_text=True)  # the real component files still load
    scripts = re.findall(r'src="(/_dash-component-suites/[^"]+)"', page)
    assert scripts and all(client.get(s).status_code == 200 for s in scripts)
    assert client.get("/files/good/unit-stats/note.txt").status_code == 200


def test_a_body_that_is_no_callback_request_is_400(root: Path) -> None:
    from probe.dashboards import create_app

    client = create_app(root).server.test_client()
    for body in ([1, 2], {"output": 5}, {"output": "nope.children", "inputs": "x"},
                 {"output": "..nope.children..", "outputs": [], "inputs": [], "state": []}):
        response = client.post("/_dash-update-component", json=body)
        assert response.status_code == 400, body
        assert response.get_data(as_text=True).startswith("not a Dash callback request")
    response = client.post("/_dash-update-component", data="{no json",
                           content_type="application/json")
    assert response.status_code == 400


def test_artifacts_are_sandboxed_and_svg_is_a_download(root: Path) -> None:
    """A script in an artifact never runs in the dashboard's origin; the app has its own CSP."""
    import base64
    import hashlib

    from probe.dashboards import create_app

    (root / "good" / "unit-stats" / "chart.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    client = create_app(root).server.test_client()
    svg = client.get("/files/good/unit-stats/chart.svg")
    assert svg.status_code == 200
    assert svg.headers["Content-Security-Policy"].startswith("sandbox")
    assert svg.headers["X-Content-Type-Options"] == "nosniff"
    assert svg.headers["Content-Disposition"].startswith("attachment")
    text = client.get("/files/good/unit-stats/note.txt")
    assert text.headers["Content-Security-Policy"].startswith("sandbox")
    assert text.headers["X-Content-Type-Options"] == "nosniff"
    assert "attachment" not in text.headers.get("Content-Disposition", "")

    page = client.get("/units?run=good")
    policy = dict(part.strip().split(" ", 1) for part in
                  page.headers["Content-Security-Policy"].split(";"))
    scripts = policy["script-src"].split()
    assert "'self'" in scripts and "'unsafe-inline'" not in scripts
    assert "'unsafe-eval'" not in scripts and policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    html = re.sub(r"<!--.*?-->", "", page.get_data(as_text=True), flags=re.S)  # IE-only parts
    inline = re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>(.*?)</script>",
                        html, re.S)
    assert inline  # Dash's own inline scripts run: each is allowed by its hash
    for body in inline:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in scripts
    layout = client.get("/_dash-layout")
    assert "Content-Security-Policy" in layout.headers
    assert layout.headers["X-Content-Type-Options"] == "nosniff"


def test_a_damaged_table_is_one_line_naming_the_file(tmp_path: Path) -> None:
    from probe.dashboards.table_cache import UnreadableTable
    from probe.sample_runs import synthetic_tables

    write_tables_run(tmp_path / "r", synthetic_tables({"c1": 4}), ["c1"])
    file = tmp_path / "r" / "dissection" / "exemplars.parquet"
    file.write_bytes(file.read_bytes()[:200])  # truncated: no footer
    clear_caches()
    source = RunSource(tmp_path)
    run = source.run("r")
    for read in (lambda: source.table(run, "dissection", "exemplars"),
                 lambda: source.unit_rows(run, "dissection", "exemplars", "c1", 0),
                 lambda: source.columns(run, "dissection", "exemplars"),
                 lambda: source.head(run, "dissection", "exemplars", 5)):
        with pytest.raises(UnreadableTable) as info:
            read()
        message = str(info.value)
        assert message.startswith("r/dissection/exemplars.parquet cannot be read (")
        assert "\n" not in message and str(tmp_path) not in message
    source.prefetch(run, [("dissection", "exemplars")])  # a background read fails quietly
    from probe.dashboards.data import wait_for_prefetch

    wait_for_prefetch(10)
    assert len(source.unit_rows(run, "unit-stats", "top_images", "c1", 1)) == 4


def test_memo_computes_a_key_once_under_concurrency() -> None:
    import threading
    import time

    from probe.dashboards.memo import Memo

    memo, calls = Memo(2), []

    def slow() -> int:
        calls.append(1)
        time.sleep(0.2)
        return 42

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(memo.get(("k",), slow)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [42] * 8 and len(calls) == 1  # one rendering for eight requests
    assert memo.get(("no",), lambda: 1, keep=lambda v: False) == 1 and len(memo) == 1
    memo.get(("a",), lambda: 1)
    memo.get(("b",), lambda: 2)
    assert len(memo) == 2 and memo.get(("k",), lambda: 0) == 0  # least recently used went

    def broken() -> int:
        raise ProbeError("damaged")

    with pytest.raises(ProbeError):
        memo.get(("x",), broken)
    assert memo.get(("x",), lambda: 5) == 5  # a failure is not kept


def test_a_prefetch_waits_until_the_dashboard_is_quiet(root: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Background reads start only once no page or section has been computed for QUIET
    seconds, so they never take the cores from the sections of the page being answered."""
    import time

    from probe.dashboards import quiet, table_cache

    monkeypatch.setattr(quiet, "QUIET", 0.2)
    clear_caches()
    source = RunSource(root)
    run = source.run("good")
    key = (str(run.path), source.stamp(run), "unit-stats", "units", None)
    with quiet.working():  # a section being computed
        source.prefetch(run, [("unit-stats", "units")])
        time.sleep(0.5)
        assert key not in table_cache.cached_keys()  # still waiting
    finished = time.monotonic()
    table_cache.wait_for_prefetch()
    assert key in table_cache.cached_keys()
    assert time.monotonic() - finished >= 0.2 - 0.01  # and it waited for the quiet time
    started = time.monotonic()
    source.memo(run, ("some view",), lambda: time.sleep(0.05))  # marks itself as working
    quiet.wait_until_quiet()
    assert time.monotonic() - started >= 0.25 - 0.01


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_work_ahead_keeps_only_the_newest_job_and_one_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages opened while the dashboard is busy each ask for work ahead: only the newest is
    done (nothing piles up under load), by one thread; a job that fails is dropped."""
    import threading

    from probe.dashboards import quiet, table_cache

    monkeypatch.setattr(quiet, "QUIET", 0.05)
    table_cache.wait_for_prefetch()
    ran: list[object] = []
    with quiet.working():
        for k in range(50):
            table_cache.work_ahead(lambda k=k: ran.append(k))
        alive = [t for t in threading.enumerate() if t.name == "probe-dash-ahead"]
        assert len(alive) == 1 and ran == []  # waiting for the quiet moment
    table_cache.wait_for_prefetch()
    assert ran == [49]
    table_cache.work_ahead(lambda: 1 / 0)
    table_cache.wait_for_prefetch()
    table_cache.work_ahead(lambda: ran.append("after"))
    table_cache.wait_for_prefetch()
    assert ran == [49, "after"]

    def leave() -> None:
        raise SystemExit  # ends the thread: the next job gets a new one
    table_cache.work_ahead(leave)
    table_cache.wait_for_prefetch()
    table_cache.work_ahead(lambda: ran.append("again"))
    table_cache.wait_for_prefetch()
    assert ran == [49, "after", "again"]
