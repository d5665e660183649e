"""``probe new-plugin NAME``: a starter package for an analysis plugin.

It writes an installable package with one working analysis (per-unit mean and
peak activation, declared as a sum and a max), its entry point, and a test
that runs the conformance kit (:func:`probe.testing.check_analysis`) and checks
the numbers against a direct computation.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from probe.errors import ProbeError

_NAME = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "A probe analysis plugin: {name}."
requires-python = ">=3.11"
dependencies = ["probe-cnn"]

# probe finds plugins through the entry-point group `probe`.
[project.entry-points.probe]
{name} = "{package}"

[tool.setuptools]
packages = ["{package}"]
'''

MODULE = '''\
"""{name}: per-unit mean and peak activation (a starting point; edit freely).

Declared state (``add_state``) is all a sharded run needs: the sums reduce with
``all_reduce``, the peaks with ``max``, and no ``merge`` code is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from probe import Accumulator, Analysis, Batch, Option, Register, RunContext, hookimpl


class {cls}Accumulator(Accumulator):
    """Per layer: Σ activation and count per unit (sums), and the largest value (max)."""

    def __init__(self, layers: list[str], units: dict[str, int], device: torch.device) -> None:
        self.layers = layers
        zeros = {{k: torch.zeros(units[k], dtype=torch.float64, device=device) for k in layers}}
        self.add_state("total", zeros, "sum")
        self.add_state("count", {{k: torch.zeros((), dtype=torch.int64, device=device)
                                 for k in layers}}, "sum")
        self.add_state("peak", {{k: torch.full((units[k],), -torch.inf, device=device)
                                for k in layers}}, "max")

    def update(self, batch: Batch) -> None:
        for layer in self.layers:
            act = batch.activations[layer].float()           # [B, K, ...]
            per_unit = act.transpose(0, 1).reshape(act.shape[1], -1)  # [K, B·positions]
            self.total[layer] += per_unit.double().sum(dim=1)
            self.count[layer] += per_unit.shape[1]
            self.peak[layer] = torch.maximum(self.peak[layer], per_unit.amax(dim=1))

    def finalize(self, context: RunContext) -> dict[str, pd.DataFrame]:
        frames = []
        for layer in self.layers:
            mean = (self.total[layer] / self.count[layer].clamp(min=1)).cpu().numpy()
            frames.append(pd.DataFrame({{"layer": layer, "unit": np.arange(len(mean)),
                                        "mean": mean,
                                        "peak": self.peak[layer].cpu().numpy()}}))
        return {{"units": pd.concat(frames, ignore_index=True)}}


class {cls}(Analysis):
    """Per-unit mean and peak activation over every position of every image."""

    name = "{name}"
    description = "per-unit mean and peak activation"
    options = (Option("layers", tuple, (), "layers to measure (default: all)", item_type=str),)
    passes = 1
    tables = {{"units": ("layer", "unit", "mean", "peak")}}

    def select_layers(self, context: RunContext) -> list[str]:
        return list(self.settings["layers"]) or list(context.layers)

    def accumulator(self, context: RunContext) -> {cls}Accumulator:
        layers = self.select_layers(context)
        units = {{layer: context.layer_shapes[layer][0] for layer in layers}}
        return {cls}Accumulator(layers, units, context.device)

    @classmethod
    def figures(cls, tables: Mapping[str, pd.DataFrame]) -> list[Any]:
        import plotly.express as px

        return [px.box(tables["units"], x="layer", y="mean", title="{name}: mean per unit")]


@hookimpl
def probe_register_analyses(register: Register) -> None:
    register({cls})
'''

TEST = '''\
"""{name}: the conformance kit, and the numbers against a direct computation."""

import numpy as np
import torch

import probe
from probe.testing import check_analysis
from {package} import {cls}


def test_conforms_to_the_analysis_contract():
    check_analysis({cls})


def test_mean_and_peak_match_a_direct_computation():
    model = probe.load_model("lenet5", seed=0)
    data = probe.load_dataset("digits", size=20)
    tables = probe.measure(model, data, [{cls}()], layers=["c1"], batch_size=8)
    units = tables["{name}"]["units"]
    images = torch.stack([data[i]["image"] for i in range(len(data))])
    handle = probe.ModelHandle(model, probe.layer_map(model), model.probe_preprocessing)
    _, acts = handle.capture(handle.normalize(images), ["c1"])
    per_unit = acts["c1"].transpose(0, 1).flatten(1).double()
    np.testing.assert_allclose(units["mean"], per_unit.mean(1).numpy(), rtol=1e-9)
    np.testing.assert_allclose(units["peak"], per_unit.amax(1).numpy(), rtol=1e-6)
'''

README = '''\
# {dist}

A probe analysis plugin. Install it next to probe and it is found through the
`probe` entry-point group:

```bash
pip install -e .
probe analyses            # lists {name}
probe run --arch lenet5 --dataset digits --analysis {name} --out runs/{name}
python -m pytest tests    # the conformance kit and a numeric check
```
'''


def scaffold(name: str, into: str | Path = ".") -> Path:
    """Write the starter package for analysis ``name`` under ``into``; return its folder.

    Raises:
        ProbeError: ``name`` is not a lower-case dashed name, or the folder exists.
    """
    if not _NAME.match(name):
        raise ProbeError(f"plugin names are lower-case letters, digits and dashes "
                         f"(e.g. unit-peaks), got {name!r}")
    package = name.replace("-", "_")
    if keyword.iskeyword(package):
        raise ProbeError(f"plugin name {name!r} makes the Python keyword {package!r}")
    dist = f"probe-{name}"
    cls = "".join(part.capitalize() for part in name.split("-"))
    root = Path(into) / dist
    if root.exists():
        raise ProbeError(f"{root} exists; choose another name or folder")
    fields = {"name": name, "package": package, "dist": dist, "cls": cls}
    files = {
        "pyproject.toml": PYPROJECT,
        f"{package}/__init__.py": MODULE,
        f"tests/test_{package}.py": TEST,
        "README.md": README,
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**fields))
    return root
