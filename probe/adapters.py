"""Adapt models that are not probe plugins: ``torchvision:NAME`` and ``package.module:function``.

>>> spec = adapt_external("torchvision:resnet18")      # weights=None, nothing downloaded
>>> spec = adapt_external("mypkg.models:make_net")     # any callable returning an nn.Module

The adapted :class:`~probe.architecture.ArchitectureSpec` names its layers by
discovering every convolution (module path = layer name). Pretrained weights
load only from a file the user names (``--checkpoint``); the adapter never asks
torchvision for weights.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from probe.architecture import ArchitectureSpec, discover_conv_layers
from probe.errors import ProbeError
from probe.options import Option
from probe.preprocessing import imagenet

#: Options a user function may accept; declared only when its signature has them.
_FUNCTION_OPTIONS = {
    "num_classes": ("number of output classes", 1),
    "in_channels": ("input channels", 1),
    "input_size": ("input side in pixels", 1),
}


def torchvision_classifiers() -> list[str]:
    """Names of torchvision's classification models (``torchvision.models.list_models``)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def adapt_torchvision(model_name: str) -> ArchitectureSpec:
    """Spec for torchvision classification model ``model_name``, built with ``weights=None``.

    Raises:
        ProbeError: when torchvision has no classification model of that name.
    """
    import torchvision

    known = torchvision_classifiers()
    if model_name not in known:
        raise ProbeError(f"torchvision has no classification model {model_name!r}; "
                         f"known: {', '.join(known)}")
    input_size = 299 if model_name == "inception_v3" else 224

    def build(num_classes: int, input_size: int) -> nn.Module:
        del input_size  # torchvision classifiers pool adaptively
        return torchvision.models.get_model(model_name, weights=None,
                                            num_classes=num_classes)

    return ArchitectureSpec(
        name=f"torchvision:{model_name}", build=build, task="classification",
        family="torchvision", input_size=input_size, in_channels=3,
        options=(Option("num_classes", int, 1000, "number of output classes", minimum=1),
                 Option("input_size", int, input_size, "input side in pixels", minimum=1)),
        layers=discover_conv_layers,
        description=f"torchvision.models.{model_name} (weights=None; load yours with "
                    "--checkpoint)",
        preprocessing=imagenet(source="torchvision"))


def _load_callable(target: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ProbeError(f"an external architecture is 'package.module:function' or "
                         f"'torchvision:NAME', got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProbeError(f"cannot import module {module_name!r} for architecture "
                         f"{target!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ProbeError(f"module {module_name!r} has no attribute {attr!r} "
                             f"(architecture {target!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ProbeError(f"{target!r} is not callable (got {type(obj).__name__})")
    return obj


def adapt_callable(target: str) -> ArchitectureSpec:
    """Spec for ``package.module:function``, a callable that returns an ``nn.Module``.

    Of the function's keyword parameters, ``num_classes``, ``in_channels`` and
    ``input_size`` with integer defaults become options (filled from the data set).

    Raises:
        ProbeError: when the module or function cannot be found, or the function
            does not return an ``nn.Module``.
    """
    factory = _load_callable(target)
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        parameters = {}
    options = []
    for name, (help_text, minimum) in _FUNCTION_OPTIONS.items():
        param = parameters.get(name)
        if param is not None and isinstance(param.default, int) and \
                not isinstance(param.default, bool):
            options.append(Option(name, int, param.default, help_text, minimum=minimum))
    defaults = {opt.name: opt.default for opt in options}

    def build(**kwargs: Any) -> nn.Module:
        model = factory(**kwargs)
        if not isinstance(model, nn.Module):
            raise ProbeError(f"{target} returned {type(model).__name__}, not a torch.nn.Module")
        return model

    return ArchitectureSpec(
        name=target, build=build, task="classification", family="external",
        input_size=defaults.get("input_size", 224),
        in_channels=defaults.get("in_channels", 3), options=tuple(options),
        layers=discover_conv_layers, description=f"user model {target}")


def adapt_external(name: str) -> ArchitectureSpec:
    """The spec for an external architecture name (``torchvision:NAME`` or ``pkg.mod:fn``).

    Raises:
        ProbeError: for an unknown torchvision model, a module that does not import,
            a missing function, or a name without ``:``.
    """
    prefix, sep, rest = name.partition(":")
    if not sep:
        raise ProbeError(f"an external architecture is 'package.module:function' or "
                         f"'torchvision:NAME', got {name!r}")
    if prefix == "torchvision":
        return adapt_torchvision(rest)
    return adapt_callable(name)
