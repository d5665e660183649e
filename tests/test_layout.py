"""The layout shows the design: small modules with one job, no cycles, no side doors."""

import ast
import dataclasses
from pathlib import Path

import probe
from probe.analysis import Batch, RunContext

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [p for folder in ("probe", "plugins", "dashboards")
           for p in (ROOT / folder).rglob("*.py")]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_shipped_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in SHIPPED
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"split these by job: {long}"


def test_dissection_is_a_package_exporting_only_its_analysis():
    from probe.plugins.analyses import dissection

    assert Path(dissection.__file__).name == "__init__.py"
    assert dissection.__all__ == ["Dissection"]


def test_reference_loops_are_not_shipped():
    analyses = ROOT / "plugins" / "analyses"
    assert not [p for p in analyses.rglob("*.py") if "reference" in p.name]
    assert (ROOT / "tests" / "dissection_reference.py").is_file()


def test_the_runner_and_transforms_do_not_reach_back_to_the_host():
    for module in ("runner.py", "transforms.py", "state.py", "analysis.py"):
        assert not {"probe.host", "probe.api"} & _imports(ROOT / "probe" / module), module


def test_no_registry_of_contexts_and_no_pickled_accumulators():
    for path in SHIPPED:
        text = path.read_text()
        assert "all_gather_object" not in text, path
        assert "WeakValueDictionary" not in text, path
        assert "__getstate__" not in text, path


def test_names_that_explain_themselves():
    assert "scalars" not in {f.name for f in dataclasses.fields(Batch)}
    assert "image_concepts" in {f.name for f in dataclasses.fields(Batch)}
    assert "extras" not in {f.name for f in dataclasses.fields(RunContext)}
    assert not (ROOT / "probe" / "requests.py").exists()  # a name taken by the HTTP library
    assert callable(probe.measure) and callable(probe.layer_map)


#: What the dashboard and report cores may not mention: the built-in analyses, and the
#: columns of their tables a core would otherwise guess at.
BUILT_IN_WORDS = ("dissection", "unit-stats", "unit_stats", "filters", "equivariance",
                  "compositional", "concept-vectors", "concept_vectors", "receptive-field",
                  "receptive_field", "attribution", "visualize",
                  "is_detector", "iou", "gabor_r2", "relative_error", "top_images",
                  "exemplars", "detector", "hierarchy", "formula", "erf")


def _mentions(path: Path) -> list[str]:
    """Built-in analysis or column names in a file's strings, docstrings and comments."""
    import io
    import re
    import tokenize

    words = re.compile(r"(?<![A-Za-z0-9_\-])(" + "|".join(map(re.escape, BUILT_IN_WORDS))
                       + r")(?![A-Za-z0-9_\-])", re.IGNORECASE)
    found = []
    for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if token.type in (tokenize.STRING, tokenize.COMMENT):
            found += [f"{path.name}:{token.start[0]}: {m.group(0)}"
                      for m in words.finditer(token.string)]
    return found


def test_dashboard_and_report_cores_name_no_built_in_analysis():
    """Built-ins show themselves through the view hooks, exactly as a third party does."""
    cores = [p for folder in (ROOT / "dashboards", ROOT / "probe" / "report",
                              ROOT / "probe" / "views") for p in folder.rglob("*.py")]
    assert len(cores) > 15
    mentions = [m for p in cores for m in _mentions(p)]
    assert not mentions, "\n".join(mentions)


def test_the_mention_list_covers_every_built_in_analysis():
    """A new built-in analysis cannot slip past the check by being left off the list."""
    from probe.host import get_host

    names = {a for info in get_host().plugins.values() if info.source == "builtin"
             for a in info.registered.get("analyses", [])}
    assert len(names) >= 9, names
    missing = names - set(BUILT_IN_WORDS)
    assert not missing, f"add {sorted(missing)} to BUILT_IN_WORDS"


def test_the_mention_check_can_fail(tmp_path: Path):
    sample = tmp_path / "page.py"
    sample.write_text('TABLE = ("dissection", "units")  # reads is_detector\nx = 1\n')
    assert len(_mentions(sample)) == 2
