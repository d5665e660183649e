"""The runner: one data loop that feeds every analysis of a run.

It executes a :class:`~probe.plan.RunPlan` and hands each analysis's tables
to a :class:`ResultSink` (the run directory, or memory for ``probe.measure``).
Steps: a one-image dry forward checks that model and data fit and measures
every layer's shape; each analysis builds its accumulator from the
:class:`~probe.analysis.RunContext`; for each pass the model runs once per
batch with hooks on the union of the layers the active analyses need; after
each pass declared state is reduced across shards with tensor collectives
(:mod:`probe.state`) and ``end_pass`` runs; then ``after_passes`` (model work
after the loop) and ``finalize``. An analysis that raises is marked failed
on every rank and dropped; the others go on.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset

from probe.analysis import Accumulator, Analysis, Batch, ModelHandle, RunContext, check_tables
from probe.capture import Capture
from probe.distributed import Shard, any_rank
from probe.fit_checks import (
    check_finite,
    checked_batches,
    count_non_finite,
    dry_forward,
    model_dtype,
    out_of_memory_error,
)
from probe.pass_cache import PassCache, budget_bytes
from probe.plan import RunPlan
from probe.prefetch import Prefetched
from probe.state import sync_states


class ResultSink(Protocol):
    """Where a run's results go (see :class:`MemorySink` and ``probe.run_record.StoreSink``)."""

    def completed(self, analysis: Analysis, tables: Mapping[str, pd.DataFrame],
                  artifacts: Mapping[str, bytes], seconds: float) -> None:
        """An analysis finished (main rank only)."""

    def failed(self, analysis: Analysis, error: str, details: str | None) -> None:
        """An analysis failed (main rank only); ``details`` is its traceback."""


@dataclass
class MemorySink:
    """Keeps every analysis's tables in memory (``probe.measure``)."""

    tables: dict[str, dict[str, pd.DataFrame]]
    errors: dict[str, tuple[str, str | None]]

    @classmethod
    def empty(cls) -> MemorySink:
        """A sink with nothing in it yet."""
        return cls({}, {})

    def completed(self, analysis: Analysis, tables: Mapping[str, pd.DataFrame],
                  artifacts: Mapping[str, bytes], seconds: float) -> None:
        self.tables[analysis.name] = dict(tables)

    def failed(self, analysis: Analysis, error: str, details: str | None) -> None:
        self.errors[analysis.name] = (error, details)


@dataclass
class RunTimings:
    """Seconds spent: each pass, each analysis (its own steps), each after-passes step."""

    passes: list[float]
    analyses: dict[str, float]
    steps: dict[str, float]
    total: float = 0.0
    pass_cache: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        """JSON-ready form for the manifest."""
        out = {"passes": self.passes, "analyses": {k: round(v, 4) for k, v in
                                                   self.analyses.items()},
               "after_passes": {k: round(v, 4) for k, v in self.steps.items()},
               "total": self.total}
        if self.pass_cache is not None:
            out["pass_cache"] = self.pass_cache
        return out


@dataclass
class Slot:
    """One analysis in a run: its accumulator, error and time spent."""

    analysis: Analysis
    accumulator: Accumulator | None = None
    error: str | None = None
    details: str | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.error is not None


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    return value


def build_context(plan: RunPlan, device: torch.device, shard: Shard) -> RunContext:
    """Move the model to ``device``, run the dry forward and build the run's context."""
    model = plan.model.to(device)
    handle = ModelHandle(model, plan.layer_map, plan.preprocessing)
    shapes = dry_forward(plan, handle, device)
    return RunContext(model=model, handle=handle, layers=dict(plan.layer_map), device=device,
                      preprocessing=plan.preprocessing, dataset=plan.data, arch=plan.spec,
                      seed=plan.seed, input_shape=shapes.input_shape,
                      layer_shapes=shapes.layer_shapes, output_shape=shapes.output_shape,
                      rank=shard.rank, world_size=shard.world_size)


def execute(plan: RunPlan, analyses: Sequence[Analysis], sink: ResultSink, *,
            device: torch.device, shard: Shard, workers: int = 0,
            progress: bool = True) -> RunTimings:
    """Run ``analyses`` (of ``plan``) over its data and hand each result to ``sink``.

    Raises:
        ProbeError: A user-facing problem outside any one analysis (model and
            data do not fit, out of GPU memory); no analysis result is then
            handed on.
    """
    started = time.perf_counter()
    context = build_context(plan, device, shard)
    slots = [Slot(a) for a in analyses]
    timings = RunTimings([], {}, {})
    for slot in slots:
        guard(slot, lambda s: setattr(s, "accumulator", s.analysis.accumulator(context)))
    n_passes = max((s.analysis.num_passes() for s in slots), default=0)
    # a later pass reads the first pass's batches from memory when they fit
    budget = budget_bytes()  # a bad PROBE_PASS_CACHE_MIB is an error whatever runs
    cache = PassCache(budget if n_passes > 1 else 0, _forward_layers(slots, context))
    try:
        for pass_index in range(n_passes):
            active = [s for s in slots if s.analysis.num_passes() > pass_index]
            _agree_on_failures(active, shard, device)
            active = [s for s in active if not s.failed]
            if not active:
                break
            seconds = run_pass(plan, active, context, shard, workers, pass_index, n_passes,
                               progress, cache)
            timings.passes.append(seconds)
            _close_pass(active, shard, pass_index, context)
    except torch.cuda.OutOfMemoryError as exc:
        raise out_of_memory_error(exc, plan.batch_size) from None
    if n_passes > 1:
        timings.pass_cache = cache.record()
    _agree_on_failures(slots, shard, device)
    if shard.is_main:
        for slot in slots:
            _finish(slot, context, sink, timings)
    timings.analyses = {s.analysis.name: s.seconds for s in slots}
    timings.total = time.perf_counter() - started
    return timings


def _forward_layers(slots: Sequence[Slot], context: RunContext) -> set[str] | None:
    """The layers whose first-pass activations the pass cache keeps, so later passes
    skip the model: those of the analyses with more than one pass, on the CPU, when
    none of them needs gradients (``None``: later passes run the model again)."""
    later = [s for s in slots if s.analysis.num_passes() > 1 and not s.failed]
    if context.device.type != "cpu" or not later or any(s.analysis.gradients for s in later):
        return None
    return {name for s in later for name in s.analysis.select_layers(context)}


def guard(slot: Slot, action: Callable[[Slot], Any]) -> None:
    """Run ``action(slot)``; on an exception mark the analysis failed instead of raising.

    CUDA out-of-memory is not one analysis's fault: it ends the run with a hint.
    """
    if slot.failed:
        return
    start = time.perf_counter()
    try:
        action(slot)
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as exc:
        slot.error = f"{type(exc).__name__}: {exc}"
        slot.details = traceback.format_exc()
    finally:
        slot.seconds += time.perf_counter() - start


def _agree_on_failures(slots: list[Slot], shard: Shard, device: torch.device) -> None:
    """An analysis that failed on any rank is failed on every rank (collectives stay paired)."""
    flags = any_rank([s.failed for s in slots], shard, device)
    for slot, failed in zip(slots, flags, strict=True):
        if failed and not slot.failed:
            slot.error = "failed on another rank (see that rank's output)"


def run_pass(plan: RunPlan, active: Sequence[Slot], context: RunContext, shard: Shard,
             workers: int, pass_index: int, n_passes: int, progress: bool,
             cache: PassCache | None = None) -> float:
    """One pass over this shard's images, every active slot's ``update`` once per batch.

    The first pass keeps its batches in ``cache`` (while they fit); a later pass reads
    them from there when the cache is complete, instead of loading the data again.
    """
    handle, device = context.handle, context.device
    dataset = plan.data
    assert dataset is not None  # checked by probe.plan.check_requirements
    cache = cache if cache is not None else PassCache(0)
    source: Any
    last = pass_index == n_passes - 1
    if cache.complete:
        source = cache.batches(last=last)
    else:
        subset = Subset(dataset, shard.indices(len(dataset)))
        # a local generator: the loader's worker seeds must not draw from the caller's RNG
        source = DataLoader(subset, batch_size=plan.batch_size, shuffle=False,
                            num_workers=workers, pin_memory=device.type == "cuda",
                            generator=torch.Generator().manual_seed(plan.seed))
        if workers == 0:  # read the next batch in a thread while this one is analysed
            source = Prefetched(source)
    keeping = pass_index == 0 and not cache.complete
    layers: dict[str, str] = {}
    for slot in active:
        for name in slot.analysis.select_layers(context):
            layers[name] = handle.layers[name]
    gradients = any(s.analysis.gradients for s in active)
    forwards = cache.forwards(last=last) if cache.has_forward and not gradients and \
        set(layers) <= (cache.forward_layers or set()) else None
    model = handle.model
    dtype = model_dtype(model)
    start = time.perf_counter()
    # the bar names the pass and what it feeds: "pass 1/2 · dissection, unit-stats"
    names = ", ".join(sorted(s.analysis.name for s in active))
    label = f"pass {pass_index + 1}/{n_passes} · {names}"
    # non-finite activations, counted on the device, read once at the end of the pass
    bad = {name: torch.zeros((), dtype=torch.int64, device=device) for name in layers}
    with torch.set_grad_enabled(gradients), Capture(model, layers,
                                                    detach=not gradients) as capture:
        for sample in checked_batches(source, dataset.name, label, progress and shard.is_main):
            images = _to_device(sample["image"], device).to(dtype)
            inputs = handle.normalize(images)
            if gradients:
                inputs = inputs.detach().requires_grad_(True)
            if forwards is not None:  # this forward pass was kept by the first pass
                kept = next(forwards)
                outputs = kept["outputs"]
                activations = {k: v for k, v in kept["activations"].items() if k in layers}
            else:
                outputs = model(inputs)
                activations = capture.take()
            if keeping:
                cache.keep(sample, outputs.detach(), {k: v.detach() for k, v in
                                                      activations.items()})
            batch = Batch(
                images=images, inputs=inputs,
                indices=sample["index"].to(device),
                labels=_to_device(sample.get("label", torch.full((len(images),), -1)), device),
                outputs=outputs, activations=activations,
                masks=_to_device(sample.get("masks"), device),
                image_concepts=_to_device(sample.get("scalars"), device),
                target=_to_device(sample.get("target"), device),
                pass_index=pass_index, handle=handle,
            )
            if forwards is None:  # kept activations were counted in the pass that kept them
                for name, act in batch.activations.items():
                    bad[name] += count_non_finite(act.detach())
            plain = batch.detached() if gradients else batch
            for slot in active:
                given = batch if slot.analysis.gradients else plain
                guard(slot, lambda s, b=given: s.accumulator.update(b))
    if keeping:
        cache.close()
    check_finite(bad, pass_index)
    return time.perf_counter() - start


def _close_pass(active: list[Slot], shard: Shard, pass_index: int,
                context: RunContext) -> None:
    """Reduce each accumulator's state due after this pass across ranks, then ``end_pass``."""
    _agree_on_failures(active, shard, context.device)
    for slot in active:
        if slot.failed:
            continue
        last = slot.analysis.num_passes() - 1
        if shard.world_size > 1:
            guard(slot, lambda s, last=last: sync_states(s.accumulator, pass_index, last))
        guard(slot, lambda s: s.accumulator.end_pass(pass_index, context))


def _finish(slot: Slot, context: RunContext, sink: ResultSink, timings: RunTimings) -> None:
    """After the passes, on the main rank: model work, tables, artifacts, to the sink."""
    result: dict[str, Any] = {}

    def after(s: Slot) -> None:
        start = time.perf_counter()
        s.accumulator.after_passes(context)
        timings.steps[s.analysis.name] = time.perf_counter() - start

    def finish(s: Slot) -> None:
        tables = s.accumulator.finalize(context)
        check_tables(s.analysis, tables)
        result["tables"] = tables
        result["artifacts"] = s.accumulator.artifacts(context)

    guard(slot, after)
    guard(slot, finish)
    if slot.failed:
        sink.failed(slot.analysis, slot.error or "", slot.details)
    else:
        sink.completed(slot.analysis, result["tables"], result["artifacts"], slot.seconds)
