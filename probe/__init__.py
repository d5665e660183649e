"""probe — look inside convolutional networks.

Plugin authors need only this module::

    from probe import hookimpl, Analysis, Accumulator, ArchitectureSpec, DatasetSpec, Option

Notebook users::

    import probe
    model = probe.load_model("lenet5", checkpoint="lenet5.safetensors")
    run = probe.analyze(model, "digits", ["unit-stats"], out="runs/lenet5")
    run.table("unit-stats", "units")
    tables = probe.measure(model, "digits", ["unit-stats"])   # in memory, no run directory
    tables["unit-stats"]["units"]
"""

from typing import TYPE_CHECKING

# Every name is imported on first use (PEP 562), so that ``import probe.cli`` (and with
# it ``probe --help`` and argument errors) does not pay for torch and pandas.
_LAZY = {
    "Accumulator": "probe.analysis", "Analysis": "probe.analysis", "Batch": "probe.analysis",
    "ModelHandle": "probe.analysis", "RunContext": "probe.analysis",
    "ArchitectureSpec": "probe.architecture", "TrainRecipe": "probe.architecture",
    "TrainingStep": "probe.architecture",
    "DatasetSpec": "probe.dataset", "ProbeDataset": "probe.dataset",
    "ProbeError": "probe.errors", "Register": "probe.hookspecs", "hookimpl": "probe.hookspecs",
    "Option": "probe.options", "Preprocessing": "probe.preprocessing", "State": "probe.state",
    "Run": "probe.store", "load_run": "probe.store",
    "load_model": "probe.api", "load_dataset": "probe.api", "analyze": "probe.api",
    "measure": "probe.api",
}

if TYPE_CHECKING:  # what type checkers and editors see
    from probe.analysis import Accumulator, Analysis, Batch, ModelHandle, RunContext
    from probe.api import analyze, load_dataset, load_model, measure
    from probe.architecture import ArchitectureSpec, TrainingStep, TrainRecipe
    from probe.dataset import DatasetSpec, ProbeDataset
    from probe.errors import ProbeError
    from probe.hookspecs import Register, hookimpl
    from probe.options import Option
    from probe.preprocessing import Preprocessing
    from probe.state import State
    from probe.store import Run, load_run

__version__ = "0.1.0"

__all__ = [
    "Accumulator",
    "Analysis",
    "ArchitectureSpec",
    "Batch",
    "DatasetSpec",
    "ModelHandle",
    "Option",
    "Preprocessing",
    "ProbeDataset",
    "ProbeError",
    "Register",
    "Run",
    "RunContext",
    "State",
    "TrainRecipe",
    "TrainingStep",
    "__version__",
    "analyze",
    "hookimpl",
    "layer_map",
    "load_dataset",
    "load_model",
    "load_run",
    "measure",
]


def __getattr__(name: str) -> object:
    """Import a public name on first use (and keep it: the next use is a plain lookup)."""
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name == "layer_map":
        from probe.plan import model_layers as value
    elif name == "testing":
        value = importlib.import_module("probe.testing")
    else:
        raise AttributeError(f"module 'probe' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Every public name, imported or not (for completion in editors and notebooks)."""
    return sorted(set(globals()) | set(__all__))
