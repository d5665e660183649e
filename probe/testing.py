"""The conformance kit for analysis plugins (in the spirit of scikit-learn's ``check_estimator``).

>>> from probe.testing import check_analysis
>>> check_analysis(MyAnalysis)                       # raises AssertionError listing failures
>>> check_analysis(MyAnalysis, options={"bins": 8}, arch="lenet5", dataset="digits")

Every check drives the analysis through probe's own runner building blocks
(dry forward, :func:`probe.runner.run_pass`, the declared-state reduction), on
a small model and data set that fit its requirements (or the ones you name):

``declares``
    name, options and tables are declared; an analysis that reads data
    declares its state with ``add_state``.
``options_round_trip``
    the resolved options survive JSON (what the manifest stores) unchanged.
``tables``
    ``finalize`` returns every declared table with its declared columns.
``state_on_device``
    every declared state tensor lives on the run's device.
``no_model_in_state``
    no ``nn.Module``, data set, handle or context is kept in the accumulator.
``two_shards``, ``shards_equal_one_pass``
    two in-process shards (images ``0, 2, 4, ...`` and ``1, 3, 5, ...``),
    reduced only through their declared state after each pass (what
    ``torchrun`` ranks exchange, without pickling anything), give the tables of
    one pass over all images.
``figures``
    ``figures(tables)`` builds plotly figures from the tables.
``views``
    every view hook (``run_views``, ``layer_views``, ``unit_views``,
    ``layer_summary``, ``unit_columns``, ``unit_thumbnails``, ``compare_figures``,
    ``headlines``, ``report_sections``) runs on those tables written as a run
    directory and returns view blocks (:mod:`probe.views`).
``hooks_released``
    no forward hook is left on the model afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from probe.analysis import Accumulator, Analysis, ModelHandle, RunContext, check_tables
from probe.capture import count_hooks
from probe.dataset import ProbeDataset
from probe.distributed import Shard
from probe.plan import RunPlan, plan_run
from probe.runner import Slot, build_context, run_pass
from probe.state import State, reduce_in_process, state_tensors
from probe.views.check import check_views

#: Small runs that fit each requirement: (arch, arch options, dataset, dataset options).
DEFAULT_SETUPS: dict[str, tuple[str, dict[str, Any], str, dict[str, Any]]] = {
    "plain": ("lenet5", {}, "digits", {"size": 24}),
    "masks": ("vgg11_bn", {"width": 0.125, "input_size": 32, "fc_width": 32}, "parts",
              {"size": 24, "image_size": 32}),
    "target": ("deconvnet", {"width": 0.125, "input_size": 32, "fc_width": 32, "depth": 3},
               "parts", {"size": 24, "image_size": 32}),
}


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome."""

    name: str
    passed: bool
    detail: str = ""

    def __str__(self) -> str:
        return f"{'ok  ' if self.passed else 'FAIL'} {self.name}" + \
            (f": {self.detail}" if self.detail else "")


def check_analysis(cls: type[Analysis], *, options: Mapping[str, Any] | None = None,
                   arch: str | nn.Module | None = None,
                   arch_options: Mapping[str, Any] | None = None,
                   dataset: str | ProbeDataset | None = None,
                   dataset_options: Mapping[str, Any] | None = None,
                   layers: list[str] | None = None, device: str | None = None,
                   batch_size: int = 8, seed: int = 0, rtol: float = 1e-6,
                   atol: float = 1e-7, raise_on_failure: bool = True) -> list[CheckResult]:
    """Run every conformance check on analysis class ``cls``.

    Args:
        cls: The analysis class (a subclass of :class:`probe.Analysis`).
        options: Options to build it with (default: its defaults).
        arch, arch_options: The model (name or ``nn.Module``); default a small
            one that fits ``cls.requires`` (see :data:`DEFAULT_SETUPS`).
        dataset, dataset_options: The data (name or loaded); default to match.
        layers: Layers to analyse (default: all of the model's).
        device: ``cpu``, ``cuda``... (default: CUDA when available).
        batch_size: Images per batch; keep it below half the data set so each
            shard sees several batches.
        rtol, atol: Tolerance of ``shards_equal_one_pass`` for float cells (sums
            added in another order differ in the last bits; quantities such as
            ``arccos`` near 1 amplify that). On top of it a cell may differ by the
            class's declared ``merge_tolerance`` times its column's largest
            magnitude (0 unless the analysis declares it).
        raise_on_failure: Raise ``AssertionError`` listing the failed checks.

    Returns:
        One :class:`CheckResult` per check, in order.
    """
    from probe.device import resolve_device

    torch_device = resolve_device(device)
    results: list[CheckResult] = []

    def record(name: str, action: Any) -> Any:
        try:
            value = action()
        except AssertionError as exc:
            results.append(CheckResult(name, False, str(exc)))
            return None
        except Exception as exc:  # a crash fails that check, the others still run
            results.append(CheckResult(name, False, f"{type(exc).__name__}: {exc}"))
            return None
        results.append(CheckResult(name, True))
        return value

    record("declares", lambda: _check_declarations(cls))
    analysis = record("options_round_trip", lambda: _check_options(cls, options or {}))
    if analysis is not None:
        plan = record("plan", lambda: _plan(cls, analysis, arch, arch_options, dataset,
                                            dataset_options, layers, batch_size, seed))
        if plan is not None:
            _run_checks(cls, plan, torch_device, record, rtol, atol)
    failed = [r for r in results if not r.passed]
    if failed and raise_on_failure:
        raise AssertionError(f"analysis {cls.name or cls.__qualname__} fails "
                             f"{len(failed)} conformance check(s):\n" +
                             "\n".join(str(r) for r in results))
    return results


def _run_checks(cls: type[Analysis], plan: RunPlan, device: torch.device, record: Any,
                rtol: float, atol: float) -> None:
    model = plan.model
    one = record("one_pass", lambda: drive(plan, device, shards=1))
    if one is not None:
        accumulator, context, tables = one
        record("tables", lambda: check_tables(plan.analyses[0], tables))
        record("state_on_device", lambda: _check_device(accumulator, context.device))
        record("no_model_in_state", lambda: _check_no_model(accumulator))
        record("declares_state", lambda: _check_has_state(plan.analyses[0], accumulator))
        two = record("two_shards", lambda: drive(plan, device, shards=2))
        if two is not None:
            record("shards_equal_one_pass",
                   lambda: assert_tables_equal(tables, two[2], rtol=rtol, atol=atol,
                                               scale_rtol=float(cls.merge_tolerance)))
        record("figures", lambda: _check_figures(cls, tables))
        record("views", lambda: check_views(cls, tables, list(context.layers),
                                            plan.dataset_record))
    record("hooks_released", lambda: _check_hooks(model))


def _check_declarations(cls: type[Analysis]) -> None:
    from probe.analysis import validate_analysis_class

    validate_analysis_class(cls)
    assert cls.tables, "declare the tables finalize returns: tables = {name: (columns...)}"
    for table, columns in cls.tables.items():
        assert columns, f"table {table!r} declares no columns"


def _check_options(cls: type[Analysis], options: Mapping[str, Any]) -> Analysis:
    analysis = cls(**options)
    stored = json.loads(json.dumps(analysis.settings, default=list))
    again = cls(**stored)
    assert json.dumps(again.settings, default=list, sort_keys=True) == \
        json.dumps(analysis.settings, default=list, sort_keys=True), \
        f"options change through JSON: {analysis.settings} -> {again.settings}"
    return analysis


def _plan(cls: type[Analysis], analysis: Analysis, arch: str | nn.Module | None,
          arch_options: Mapping[str, Any] | None, dataset: str | ProbeDataset | None,
          dataset_options: Mapping[str, Any] | None, layers: list[str] | None,
          batch_size: int, seed: int) -> RunPlan:
    need = "target" if "target" in cls.requires else \
        "masks" if "masks" in cls.requires else "plain"
    default_arch, default_arch_options, default_data, default_data_options = DEFAULT_SETUPS[need]
    if arch is None:
        arch, arch_options = default_arch, {**default_arch_options, **(arch_options or {})}
    if dataset is None:
        dataset = default_data
        dataset_options = {**default_data_options, **(dataset_options or {})}
    return plan_run(arch, dataset, [analysis], arch_options=arch_options,
                    dataset_options=dataset_options, layers=layers, batch_size=batch_size,
                    seed=seed)


def drive(plan: RunPlan, device: torch.device,
          shards: int = 1) -> tuple[Accumulator, RunContext, dict[str, pd.DataFrame]]:
    """Run the plan's one analysis in-process over ``shards`` shards, as ranks would.

    Each shard gets its own context and accumulator and the images ``rank,
    rank + shards, ...``; after every pass only the declared state is reduced
    (:func:`probe.state.reduce_in_process`), then ``end_pass`` runs on every
    shard. Shard 0 then runs ``after_passes`` and ``finalize``.

    Returns:
        ``(accumulator of shard 0, its context, tables)``.

    Raises:
        AssertionError: A step of the analysis raised (with its traceback).
    """
    analysis = plan.analyses[0]
    contexts = [build_context(plan, device, Shard(rank, shards)) for rank in range(shards)]
    slots = [Slot(analysis) for _ in range(shards)]
    for slot, context in zip(slots, contexts, strict=True):
        slot.accumulator = analysis.accumulator(context)
    passes = analysis.num_passes()
    for pass_index in range(passes):
        for rank, (slot, context) in enumerate(zip(slots, contexts, strict=True)):
            run_pass(plan, [slot], context, Shard(rank, shards), 0, pass_index, passes, False)
            _raise_failure(slot, f"pass {pass_index + 1} (update)")
        reduce_in_process([s.accumulator for s in slots], pass_index, passes - 1)
        for slot, context in zip(slots, contexts, strict=True):
            slot.accumulator.end_pass(pass_index, context)
    first, context = slots[0].accumulator, contexts[0]
    first.after_passes(context)
    return first, context, first.finalize(context)


def _raise_failure(slot: Slot, step: str) -> None:
    if slot.failed:
        raise AssertionError(f"{step} raised {slot.error}\n{slot.details or ''}")


def _check_device(accumulator: Accumulator, device: torch.device) -> None:
    wrong = [(path, str(t.device)) for path, t in state_tensors(accumulator)
             if t.device.type != device.type]
    assert not wrong, f"state not on {device}: " + ", ".join(f"{p} on {d}" for p, d in wrong[:5])


_FORBIDDEN = (nn.Module, ProbeDataset, ModelHandle, RunContext)


def _check_no_model(accumulator: Accumulator) -> None:
    found: list[str] = []

    def walk(prefix: str, value: Any, depth: int) -> None:
        if isinstance(value, _FORBIDDEN):
            found.append(f"{prefix} ({type(value).__name__})")
        elif depth < 4 and isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}[{key!r}]", item, depth + 1)
        elif depth < 4 and isinstance(value, list | tuple):
            for i, item in enumerate(value):
                walk(f"{prefix}[{i}]", item, depth + 1)
        elif depth < 4 and isinstance(value, State):
            for key, item in vars(value).items():
                walk(f"{prefix}.{key}", item, depth + 1)

    for key, item in vars(accumulator).items():
        walk(key, item, 0)
    assert not found, ("keep no model, module, data set or context in the accumulator "
                       "(take them from the RunContext each step gets): " + ", ".join(found))


def _check_has_state(analysis: Analysis, accumulator: Accumulator) -> None:
    if analysis.num_passes() == 0:
        return
    assert accumulator.state_specs(), ("an analysis that reads data declares its state with "
                                       "self.add_state(name, tensor, reduce) so shards reduce")


def _check_figures(cls: type[Analysis], tables: Mapping[str, pd.DataFrame]) -> None:
    import plotly.graph_objects as go

    figures = cls.figures(tables)
    assert isinstance(figures, list), f"figures() must return a list, got {type(figures)}"
    for figure in figures:
        assert isinstance(figure, go.Figure), f"figures() returned a {type(figure).__name__}"
        figure.to_dict()


def _check_hooks(model: nn.Module) -> None:
    left = count_hooks(model)
    assert left == 0, f"{left} forward hook(s) left on the model"


def assert_tables_equal(expected: Mapping[str, pd.DataFrame], actual: Mapping[str, pd.DataFrame],
                        rtol: float = 1e-6, atol: float = 1e-9,
                        scale_rtol: float = 0.0) -> None:
    """Assert two ``{table: DataFrame}`` results are equal (floats to ``rtol``/``atol``).

    Cells holding arrays or bytes (maps, masks) are compared element by element.
    ``scale_rtol`` also lets a float cell differ by that fraction of its column's
    largest magnitude (of its array's, for array cells): the tolerance for fitted
    coefficients, whose near-zero entries have no meaningful relative error.
    """
    assert sorted(expected) == sorted(actual), f"tables differ: {sorted(expected)} vs " \
                                               f"{sorted(actual)}"
    for name in expected:
        a, b = expected[name].reset_index(drop=True), actual[name].reset_index(drop=True)
        assert list(a.columns) == list(b.columns), f"table {name}: columns differ"
        assert len(a) == len(b), f"table {name}: {len(a)} rows vs {len(b)}"
        for column in a.columns:
            _assert_column_equal(f"{name}.{column}", a[column], b[column], rtol, atol,
                                 scale_rtol)


def _scaled(atol: float, scale_rtol: float, values: np.ndarray) -> float:
    """``atol`` widened by ``scale_rtol`` × the largest finite magnitude in ``values``."""
    finite = np.abs(values[np.isfinite(values)])
    return atol + scale_rtol * float(finite.max()) if scale_rtol and finite.size else atol


def _assert_column_equal(where: str, a: pd.Series, b: pd.Series, rtol: float,
                         atol: float, scale_rtol: float = 0.0) -> None:
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        x, y = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
        ok = np.isclose(x, y, rtol=rtol, atol=_scaled(atol, scale_rtol, x), equal_nan=True)
        assert ok.all(), f"{where}: row {int(np.argmin(ok))}: {x[~ok][0]} vs {y[~ok][0]}"
        return
    for row, (x, y) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
        if isinstance(x, np.ndarray | list) or isinstance(y, np.ndarray | list):
            xa, ya = np.asarray(x), np.asarray(y)
            same = xa.shape == ya.shape and (
                np.allclose(xa, ya, rtol=rtol, equal_nan=True,
                            atol=_scaled(atol, scale_rtol, xa.astype(float)))
                if xa.dtype.kind in "fc" else np.array_equal(xa, ya))
        else:
            both_nan = isinstance(x, float) and isinstance(y, float) and np.isnan(x) and np.isnan(y)
            same = both_nan or x == y
        assert same, f"{where}: row {row}: {x!r} vs {y!r}"
