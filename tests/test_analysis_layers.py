"""An analysis's own ``layers`` option (``Analysis.chosen_layers``): chosen layers only, a
layer not in the run is one line naming the option."""

from __future__ import annotations

import pytest

import probe

QUICK = {"visualize": {"steps": 2}, "receptive-field": {"images": 2, "per_unit": False}}


@pytest.mark.parametrize("name", ["visualize", "receptive-field"])
def test_layers_option_picks_layers_and_names_a_wrong_one(tmp_path, name) -> None:
    options = {**QUICK[name], "layers": ("c3",)}
    tables = probe.measure("lenet5", "digits", [(name, options)], dataset_options={"size": 4},
                           batch_size=4)[name]
    layered = [t for t in tables.values() if "layer" in t and len(t)]
    assert layered and all(set(t["layer"]) == {"c3"} for t in layered)
    everything = probe.measure("lenet5", "digits", [(name, QUICK[name])],
                               dataset_options={"size": 4}, batch_size=4)[name]
    assert any(len(set(t["layer"])) > 1 for t in everything.values() if "layer" in t)
    run = probe.analyze("lenet5", "digits", [(name, {**QUICK[name], "layers": ("c9",)})],
                        out=tmp_path / "r", dataset_options={"size": 4}, batch_size=4)
    error = run.manifest["analyses"][name]["error"]
    assert error.startswith(f"OptionError: {name}.layers: layer 'c9' is not in the run; "
                            "layers: c1, s2, ")
    assert "\n" not in error
