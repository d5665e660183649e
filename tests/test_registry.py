from dataclasses import dataclass

import pytest

from probe.errors import PluginError, ProbeError
from probe.registry import Registry


@dataclass
class Item:
    name: str


def test_duplicate_names_both_plugins():
    reg: Registry[Item] = Registry("architecture")
    reg.add(Item("vgg"), "plugin-a")
    with pytest.raises(PluginError) as info:
        reg.add(Item("vgg"), "plugin-b")
    assert "plugin-a" in str(info.value) and "plugin-b" in str(info.value)
    assert reg.owner("vgg") == "plugin-a"


def test_unknown_name_lists_known():
    reg: Registry[Item] = Registry("dataset")
    for name in ("digits", "parts"):
        reg.add(Item(name), "p")
    with pytest.raises(ProbeError, match="unknown dataset 'mnist'; known datasets: digits, parts"):
        reg.get("mnist")
    assert reg.names() == ["digits", "parts"] and len(reg) == 2 and "parts" in reg


def test_validation_error_names_plugin():
    def validate(item):
        raise TypeError("not a spec")

    reg: Registry[Item] = Registry("analysis", validate)
    with pytest.raises(PluginError, match="plugin my-plugin: bad analysis: not a spec"):
        reg.add(Item("x"), "my-plugin")
