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
