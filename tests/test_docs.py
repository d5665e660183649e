"""Docs stay true: every hook is documented and tested, the example is verbatim."""

from pathlib import Path

from probe import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name in vars(hookspecs) if name.startswith("probe_"))


def test_every_hook_is_in_the_plugin_guide():
    guide = (ROOT / "docs" / "plugins.md").read_text()
    missing = [hook for hook in HOOKS if f"`{hook}(" not in guide]
    assert not missing, f"hooks missing from docs/plugins.md: {missing}"


def test_every_hook_is_exercised_by_a_test():
    tests = "".join(p.read_text() for p in (ROOT / "tests").rglob("*.py")
                    if p.name != "test_docs.py")
    missing = [hook for hook in HOOKS if hook not in tests]
    assert not missing, f"hooks without a test: {missing}"


def test_the_guide_embeds_the_example_plugin_verbatim():
    guide = (ROOT / "docs" / "plugins.md").read_text()
    source = (ROOT / "examples" / "probe-sparsity" / "probe_sparsity" / "__init__.py").read_text()
    assert source in guide
