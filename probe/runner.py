"""The runner: one data loop that feeds every analysis of a run.

For each pass, the model runs once per batch with hooks on the union of the
layers the active analyses need; every active accumulator gets the same
:class:`~probe.analysis.Batch`. An analysis that raises is marked failed in
the manifest and dropped; the others go on and their tables are written.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from probe.analysis import Accumulator, Analysis, Batch, ModelHandle, RunContext, check_tables
from probe.architecture import ArchitectureSpec
from probe.capture import Capture
from probe.dataset import ProbeDataset
from probe.device import seed_everything
from probe.distributed import Shard, barrier, current_shard, gather_objects
from probe.errors import ProbeError
from probe.progress import progress_bar
from probe.store import Run, RunStore, load_run, utc_now


@dataclass
class RunConfig:
    """What defines a run; two runs with equal configs produce equal tables.

    ``arch`` and ``dataset`` are records (name, options, checkpoint hash) for
    the manifest; the live objects are passed to :func:`execute` separately.
    """

    arch: dict[str, Any]
    dataset: dict[str, Any] | None
    analyses: dict[str, dict[str, Any]]
    layers: list[str]
    seed: int = 0
    batch_size: int = 64

    def identity(self) -> dict[str, Any]:
        """The part of the config a resumed run must match."""
        return {"arch": self.arch, "dataset": self.dataset, "layers": self.layers,
                "seed": self.seed}


@dataclass
class _Slot:
    analysis: Analysis
    context: RunContext
    accumulator: Accumulator | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.error is not None


def _versions() -> dict[str, str]:
    import pandas
    import torchvision

    from probe import __version__
    from probe.host import get_host

    out = {"probe": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "torchvision": torchvision.__version__, "pandas": pandas.__version__}
    for info in get_host().plugins.values():
        if info.source != "builtin":
            out[f"plugin:{info.name}"] = info.version
    return out


def _check_requirements(analyses: Sequence[Analysis], dataset: ProbeDataset | None) -> None:
    for analysis in analyses:
        if analysis.num_passes() > 0 and dataset is None:
            raise ProbeError(f"analysis {analysis.name} needs a data set (--dataset)")
        if dataset is None:
            continue
        if "masks" in analysis.requires and not dataset.has_masks:
            raise ProbeError(f"analysis {analysis.name} needs concept masks, but dataset "
                             f"{dataset.name} has none (try --dataset parts or broden)")
        if "labels" in analysis.requires and dataset.num_classes <= 0:
            raise ProbeError(f"analysis {analysis.name} needs class labels, but dataset "
                             f"{dataset.name} has none")
        if "target" in analysis.requires and len(dataset) and "target" not in dataset[0]:
            raise ProbeError(f"analysis {analysis.name} needs segmentation targets, but "
                             f"dataset {dataset.name} has none")


def _prepare_directory(store: RunStore, config: RunConfig, overwrite: bool) -> set[str]:
    """Create or reopen the run directory; return analyses already complete (resume)."""
    existing = store.read_manifest()
    if existing is None:
        if store.path.exists() and any(store.path.iterdir()):
            raise ProbeError(f"output folder {store.path} exists and is not a probe run; "
                             f"choose another --out")
        return set()
    if overwrite:
        shutil.rmtree(store.path)
        return set()
    done = completed_analyses(existing, config)
    if done is None:
        raise ProbeError(f"{store.path} holds a different run (architecture, checkpoint, "
                         f"dataset, layers or seed differ); use another --out or --overwrite")
    store.manifest = existing
    return done


def completed_analyses(manifest: Mapping[str, Any], config: RunConfig) -> set[str] | None:
    """The analyses of ``config`` a run directory already holds, complete, with the same
    options; ``None`` when its manifest describes a different run (identity differs).

    The one resume rule: the runner resumes with it, a sweep skips finished runs with it.
    """
    recorded = (manifest.get("config") or {}).get("identity")
    if _as_json(recorded) != _as_json(config.identity()):
        return None
    done = set()
    for name, entry in (manifest.get("analyses") or {}).items():
        same_options = _as_json(entry.get("options")) == _as_json(config.analyses.get(name))
        if entry.get("status") == "complete" and same_options:
            done.add(name)
    return done


def _as_json(value: Any) -> Any:
    """``value`` as a JSON manifest reads it back (tuples become lists, paths strings)."""
    return json.loads(json.dumps(value, default=str))


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    return value


def execute(model: nn.Module, analyses: Sequence[Analysis], dataset: ProbeDataset | None,
            out: str | Path, config: RunConfig, *, arch: ArchitectureSpec | None = None,
            layer_map: Mapping[str, str], device: torch.device, workers: int = 0,
            progress: bool = True, overwrite: bool = False) -> Run:
    """Run ``analyses`` over ``dataset`` with ``model`` and write the run directory.

    Returns:
        The finished run as :func:`probe.load_run` reads it. Its status is
        ``complete``, or ``partial`` when at least one analysis failed (the
        CLI then exits non-zero).
    """
    from probe.host import get_host

    host = get_host()
    _check_requirements(analyses, dataset)
    shard = current_shard(device)
    store = RunStore(out)
    done = _prepare_directory(store, config, overwrite) if shard.is_main else set()
    done = gather_objects(done, shard)[0]
    todo = [a for a in analyses if a.name not in done]
    generator = seed_everything(config.seed)
    started = time.perf_counter()
    manifest = store.manifest or {}
    previous = dict(manifest.get("analyses", {}))
    manifest.update({
        "schema": 1,
        "status": "running",
        "created": manifest.get("created", utc_now()),
        "arch": config.arch,
        "dataset": config.dataset,
        "layers": list(layer_map),
        "seed": config.seed,
        "batch_size": config.batch_size,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
        platform.processor() or platform.machine(),
        "world_size": shard.world_size,
        "versions": _versions(),
        "command": " ".join(sys.argv),
        "config": {"identity": config.identity()},
        "analyses": {a.name: previous.get(a.name, {}) | {"options": config.analyses[a.name]}
                     for a in analyses},
    })
    for analysis in todo:
        manifest["analyses"][analysis.name].update(
            {"status": "pending", "error": None, "tables": [], "passes": analysis.num_passes()})
    store.manifest = manifest
    if shard.is_main:
        store.save_manifest()
        host.notify("probe_run_started", run_dir=str(store.path), manifest=manifest)
    mean = dataset.mean if dataset is not None else (0.0,)
    std = dataset.std if dataset is not None else (1.0,)
    handle = ModelHandle(model, layer_map, mean, std)
    slots = [_Slot(a, RunContext(model=model, handle=handle, layers=dict(layer_map),
                                 device=device, dataset=dataset, arch=arch, seed=config.seed,
                                 artifact_dir=store.analysis_dir(a.name), rank=shard.rank,
                                 world_size=shard.world_size)) for a in todo]
    timings: dict[str, Any] = {"passes": []}
    try:
        for slot in slots:
            _guard(slot, lambda s: setattr(s, "accumulator", s.analysis.accumulator(s.context)))
        n_passes = max((s.analysis.num_passes() for s in slots), default=0)
        for pass_index in range(n_passes):
            active = [s for s in slots if not s.failed and s.analysis.num_passes() > pass_index]
            if not active:
                break
            seconds = _run_pass(model, dataset, active, handle, shard, config, workers,
                                device, pass_index, n_passes, generator, progress)
            timings["passes"].append(seconds)
            _merge_shards(active, shard, pass_index)
        _finalize(slots, store, shard, host)
    except BaseException as exc:
        if shard.is_main:
            manifest["status"] = "interrupted"
            manifest["error"] = f"{type(exc).__name__}: {exc}"
            store.save_manifest()
        raise
    timings["total"] = time.perf_counter() - started
    timings["analyses"] = {s.analysis.name: round(s.seconds, 4) for s in slots}
    failed = [s for s in slots if s.failed]
    any_failed = failed or any(manifest["analyses"][a.name].get("status") != "complete"
                               for a in analyses)
    manifest["status"] = "partial" if any_failed else "complete"
    manifest["timings"] = timings
    manifest["finished"] = utc_now()
    if shard.is_main:
        store.save_manifest()
        for slot in failed:
            host.notify("probe_run_failed", run_dir=str(store.path), manifest=manifest,
                        error=f"{slot.analysis.name}: {slot.error}")
        host.notify("probe_run_finished", run_dir=str(store.path), manifest=manifest)
    barrier(shard)
    return load_run(store.path)


def _guard(slot: _Slot, action: Any) -> None:
    """Run ``action(slot)``; on an exception mark the analysis failed instead of raising."""
    if slot.failed:
        return
    start = time.perf_counter()
    try:
        action(slot)
    except Exception as exc:
        slot.error = f"{type(exc).__name__}: {exc}"
        slot.context.extras["traceback"] = traceback.format_exc()
    finally:
        slot.seconds += time.perf_counter() - start


def _run_pass(model: nn.Module, dataset: ProbeDataset | None, active: list[_Slot],
              handle: ModelHandle, shard: Shard, config: RunConfig, workers: int,
              device: torch.device, pass_index: int, n_passes: int,
              generator: torch.Generator, progress: bool) -> float:
    assert dataset is not None  # checked by _check_requirements
    subset = Subset(dataset, shard.indices(len(dataset)))
    loader = DataLoader(subset, batch_size=config.batch_size, shuffle=False,
                        num_workers=workers, pin_memory=device.type == "cuda",
                        generator=generator)
    layers: dict[str, str] = {}
    for slot in active:
        for name in slot.analysis.select_layers(slot.context):
            layers[name] = handle.layers[name]
    start = time.perf_counter()
    label = f"pass {pass_index + 1}/{n_passes}"
    with torch.no_grad(), Capture(model, layers) as capture:
        for sample in progress_bar(loader, label, enabled=progress and shard.is_main):
            images = _to_device(sample["image"], device).float()
            inputs = handle.normalize(images)
            outputs = model(inputs)
            batch = Batch(
                images=images, inputs=inputs,
                indices=sample["index"].to(device),
                labels=_to_device(sample.get("label", torch.full((len(images),), -1)), device),
                outputs=outputs, activations=capture.take(),
                masks=_to_device(sample.get("masks"), device),
                scalars=_to_device(sample.get("scalars"), device),
                target=_to_device(sample.get("target"), device),
                pass_index=pass_index,
            )
            for slot in active:
                if slot.analysis.num_passes() > pass_index:
                    _guard(slot, lambda s, b=batch: s.accumulator.update(b))
    return time.perf_counter() - start


def _merge_shards(active: list[_Slot], shard: Shard, pass_index: int) -> None:
    """Merge every rank's accumulators (rank order) and close the pass."""
    if shard.world_size > 1:
        states = [(s.accumulator, s.error) for s in active]
        everyone = gather_objects(states, shard)
        for i, slot in enumerate(active):
            errors = [rank_states[i][1] for rank_states in everyone if rank_states[i][1]]
            if errors:
                slot.error = slot.error or errors[0]
                continue
            merged = everyone[0][i][0]
            for rank_states in everyone[1:]:
                merged.merge(rank_states[i][0])
            slot.accumulator = merged
    for slot in active:
        _guard(slot, lambda s: s.accumulator.end_pass(pass_index))


def _finalize(slots: list[_Slot], store: RunStore, shard: Shard, host: Any) -> None:
    manifest = store.manifest
    for slot in slots:
        name = slot.analysis.name
        entry = manifest["analyses"][name]
        if shard.is_main:
            result: dict[str, Any] = {}

            def finish(s: _Slot, result: dict[str, Any] = result) -> None:
                tables = s.accumulator.finalize()
                check_tables(s.analysis, tables)
                artifacts = s.accumulator.artifacts()
                for rel, data in artifacts.items():
                    store.write_artifact(s.analysis.name, rel, data)
                for table, frame in tables.items():
                    store.write_table(s.analysis.name, table, frame)
                result.update(tables)

            _guard(slot, finish)
            if not slot.failed:
                entry.update(status="complete", tables=sorted(result), error=None,
                             seconds=round(slot.seconds, 4))
                store.save_manifest()
                host.notify("probe_analysis_finished", run_dir=str(store.path),
                            analysis=name, tables=result)
        if slot.failed:
            entry.update(status="failed", error=slot.error, tables=[],
                         traceback=slot.context.extras.get("traceback"))
            if shard.is_main:
                store.save_manifest()
