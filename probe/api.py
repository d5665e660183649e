"""The Python API for notebooks: same validation as the command line.

>>> model = probe.load_model("lenet5", checkpoint="lenet5.safetensors")
>>> data = probe.load_dataset("digits", split="test")
>>> tables = probe.measure(model, data, ["unit-stats"])          # in memory
>>> run = probe.analyze(model, data, ["unit-stats"], out="runs/lenet5")   # + run directory
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from probe.dataset import ProbeDataset
from probe.device import resolve_device
from probe.distributed import barrier, broadcast_names, current_shard
from probe.errors import ProbeError
from probe.models import get_architecture, load_dataset, load_model
from probe.pass_cache import budget_bytes
from probe.plan import AnalysisRequest, RunPlan, make_analyses, plan_run
from probe.preprocessing import Preprocessing
from probe.runner import MemorySink, execute
from probe.store import Run, load_run

__all__ = ["analyze", "get_architecture", "load_dataset", "load_model", "make_analyses",
           "measure", "plan_run"]


class AnalysisFailed(ProbeError):
    """An analysis of :func:`measure` raised; the message names it and its error."""


def _planned(model_or_arch: nn.Module | str, dataset: ProbeDataset | str | None,
             analyses: Sequence[AnalysisRequest], device: str | None, workers: int,
             **options: Any) -> tuple[RunPlan, torch.device]:
    """The plan (:func:`probe.plan.plan_run`) and the device of an API call."""
    if workers < 0:
        raise ProbeError(f"workers must be >= 0, got {workers}")
    budget_bytes()  # a bad PROBE_PASS_CACHE_MIB: said before anything runs
    return plan_run(model_or_arch, dataset, analyses, **options), resolve_device(device)


def measure(model_or_arch: nn.Module | str, dataset: ProbeDataset | str | None,
            analyses: Sequence[AnalysisRequest], *, checkpoint: str | Path | None = None,
            arch_options: Mapping[str, Any] | None = None,
            dataset_options: Mapping[str, Any] | None = None,
            analysis_options: Mapping[str, Mapping[str, Any]] | None = None,
            layers: Sequence[str] | None = None, device: str | None = None,
            batch_size: int = 64, workers: int = 0, seed: int = 0,
            preprocessing: Preprocessing | None = None,
            progress: bool = False) -> dict[str, dict[str, pd.DataFrame]]:
    """Run analyses and return their tables in memory, without a run directory.

    The same runner as ``probe run`` (one forward pass per batch feeds every
    analysis; sharded under ``torchrun``).

    Args:
        model_or_arch: An ``nn.Module`` (one from :func:`load_model` keeps its
            architecture's layers and preprocessing) or an architecture name.
        dataset: A loaded data set, a registered name, or ``None`` for
            weight-only analyses.
        analyses: Names, ``(name, options)`` pairs or :class:`~probe.Analysis` instances.
        checkpoint: Weights for a named architecture.
        layers: Layer names to analyse (default: all analysable layers).
        preprocessing: Override the model's own normalisation.

    Returns:
        ``{analysis name: {table name: DataFrame}}``. Under ``torchrun`` every
        rank takes part and rank 0 returns the tables (the others ``{}``).

    Raises:
        AnalysisFailed: An analysis raised (the others' tables are lost with it;
            use :func:`analyze` to keep them on disk).
    """
    plan, torch_device = _planned(
        model_or_arch, dataset, analyses, device, workers, checkpoint=checkpoint,
        arch_options=arch_options, dataset_options=dataset_options,
        analysis_options=analysis_options, layers=layers, batch_size=batch_size, seed=seed,
        preprocessing=preprocessing)
    sink = MemorySink.empty()
    shard = current_shard(torch_device)
    execute(plan, plan.analyses, sink, device=torch_device, shard=shard, workers=workers,
            progress=progress)
    if sink.errors:
        name, (error, details) = next(iter(sink.errors.items()))
        raise AnalysisFailed(f"analysis {name} failed: {error}" +
                             (f"\n{details}" if details else ""))
    return sink.tables


def analyze(model_or_arch: nn.Module | str, dataset: ProbeDataset | str | None,
            analyses: Sequence[AnalysisRequest], out: str | Path, *,
            checkpoint: str | Path | None = None,
            arch_options: Mapping[str, Any] | None = None,
            dataset_options: Mapping[str, Any] | None = None,
            analysis_options: Mapping[str, Mapping[str, Any]] | None = None,
            layers: Sequence[str] | None = None, device: str | None = None,
            batch_size: int = 64, workers: int = 0, seed: int = 0,
            preprocessing: Preprocessing | None = None,
            progress: bool = False, overwrite: bool = False) -> Run:
    """:func:`measure`, with the tables written to the run directory ``out``.

    An analysis that fails is recorded in the manifest and the others' tables
    are kept (the run's status is then ``partial``); ``out`` is resumed when it
    holds the same run.

    Returns:
        The run, as :func:`probe.load_run` reads it.
    """
    plan, torch_device = _planned(
        model_or_arch, dataset, analyses, device, workers, checkpoint=checkpoint,
        arch_options=arch_options, dataset_options=dataset_options,
        analysis_options=analysis_options, layers=layers, batch_size=batch_size, seed=seed,
        preprocessing=preprocessing)
    return execute_plan(plan, out, device=torch_device, workers=workers, progress=progress,
                        overwrite=overwrite)


def execute_plan(plan: RunPlan, out: str | Path, *, device: Any, workers: int = 0,
                 progress: bool = False, overwrite: bool = False) -> Run:
    """Execute a plan into the run directory ``out`` (resuming it when it holds this run)."""
    from probe.run_record import StoreSink

    budget_bytes()  # a bad PROBE_PASS_CACHE_MIB: said before the run directory is made
    shard = current_shard(device)
    sink = StoreSink(out, plan, shard, device, overwrite)
    try:
        done = set(broadcast_names(sorted(sink.done), shard))
        with terminate_as_interrupt():
            try:
                timings = execute(plan, sink.todo(done), sink, device=device, shard=shard,
                                  workers=workers, progress=progress)
            except BaseException as exc:
                sink.abort(exc)
                raise
        sink.finish(timings)
    finally:
        sink.close()
    barrier(shard)  # the main rank has written everything before anyone reads it back
    return load_run(sink.store.path)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM ends a run like Ctrl-C (``KeyboardInterrupt``: the run reads ``interrupted``).

    Only in the main thread (where Python can install signal handlers).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
