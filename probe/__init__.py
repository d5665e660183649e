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

from probe.analysis import Accumulator, Analysis, Batch, ModelHandle, RunContext
from probe.architecture import ArchitectureSpec, TrainRecipe
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
    "__version__",
    "analyze",
    "hookimpl",
    "layer_map",
    "load_dataset",
    "load_model",
    "load_run",
    "measure",
]


def __getattr__(name: str):
    if name in ("load_model", "load_dataset", "analyze", "measure"):
        from probe import api

        return getattr(api, name)
    if name == "layer_map":
        from probe.plan import model_layers

        return model_layers
    if name == "testing":
        import probe.testing

        return probe.testing
    raise AttributeError(f"module 'probe' has no attribute {name!r}")
