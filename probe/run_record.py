"""The run directory as a result sink: manifest, tables, artifacts, resume, events.

:class:`StoreSink` opens (or resumes) a run directory for a plan, records what
runs in ``manifest.json``, writes each analysis's tables atomically the moment
it finishes, and ends the manifest as ``complete``, ``partial``, ``failed``
(an error outside the analyses) or ``interrupted`` (killed). The one resume
rule, :func:`completed_analyses`, is shared with the sweep's skip check.
"""

from __future__ import annotations

import platform
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from probe.analysis import Analysis
from probe.distributed import Shard
from probe.errors import ProbeError
from probe.plan import RunPlan
from probe.run_lock import LOCK, RunLock, writer_record
from probe.runner import RunTimings
from probe.store import RunStore, as_json, is_temporary, utc_now


def completed_analyses(manifest: Mapping[str, Any], identity: Mapping[str, Any],
                       analysis_options: Mapping[str, Any]) -> set[str] | None:
    """The analyses a run directory already holds, complete, with the same options;
    ``None`` when its manifest describes a different run (identity differs).

    The one resume rule: the runner resumes with it, a sweep skips finished runs with it.
    """
    recorded = (manifest.get("config") or {}).get("identity")
    if as_json(recorded) != as_json(dict(identity)):
        return None
    done = set()
    for name, entry in (manifest.get("analyses") or {}).items():
        same_options = as_json(entry.get("options")) == as_json(analysis_options.get(name))
        if entry.get("status") == "complete" and same_options:
            done.add(name)
    return done


def _versions() -> dict[str, str]:
    import pandas
    import torchvision

    from probe import __version__
    from probe.host import get_host

    out = {"probe": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "torchvision": torchvision.__version__, "pandas": pandas.__version__}
    for info in get_host().plugins.values():
        if info.source != "builtin" and info.error is None:  # loaded plugins only
            out[f"plugin:{info.name}"] = info.version
    return out


class StoreSink:
    """Results of one run written to its directory (only the main rank writes).

    Args:
        out: The run directory.
        plan: The run.
        shard: This process's place in the run.
        device: The run's device (recorded).
        overwrite: Replace a directory holding another run instead of refusing.
    """

    def __init__(self, out: str | Path, plan: RunPlan, shard: Shard, device: torch.device,
                 overwrite: bool = False) -> None:
        from probe.host import get_host

        self.store = RunStore(out)
        self.plan = plan
        self.shard = shard
        self.host = get_host()
        self.lock = RunLock(out).acquire() if shard.is_main else None
        try:
            self.done = self._open(overwrite) if shard.is_main else set()
            self._start(device)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the run directory's writer lock (idempotent)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @property
    def manifest(self) -> dict[str, Any]:
        return self.store.manifest

    def todo(self, done: set[str]) -> list[Analysis]:
        """The plan's analyses not already complete (``done`` as the main rank saw it)."""
        return [a for a in self.plan.analyses if a.name not in done]

    def _open(self, overwrite: bool) -> set[str]:
        existing = self.store.read_manifest()
        if existing is None:  # a writer killed before its first manifest left its temp file
            for path in self.store.path.iterdir():
                if is_temporary(path.name):
                    path.unlink(missing_ok=True)
        others = [p for p in self.store.path.iterdir() if p.name != LOCK]
        if existing is None:
            if others:
                raise ProbeError(f"output folder {self.store.path} exists and is not a probe "
                                 f"run; choose another --out")
            return set()
        if overwrite:
            for path in others:  # everything but the lock this writer holds
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            return set()
        done = completed_analyses(existing, self.plan.identity, self.plan.analysis_options)
        if done is None:
            raise ProbeError(f"{self.store.path} holds a different run (architecture, "
                             f"checkpoint, dataset, layers or seed differ); use another --out "
                             f"or --overwrite")
        self.store.manifest = existing
        return done

    def _start(self, device: torch.device) -> None:
        plan = self.plan
        manifest = self.store.manifest or {}
        previous = dict(manifest.get("analyses", {}))
        self.previous_timings = dict((manifest.get("timings") or {}).get("analyses") or {})
        # a run directory accumulates analyses: every completed one stays; an earlier
        # failure or interruption of an analysis not asked for again is not carried on
        kept = {name: entry for name, entry in previous.items()
                if entry.get("status") == "complete"}
        analyses = kept | {a.name: previous.get(a.name, {}) | {"options": a.settings}
                           for a in plan.analyses}
        manifest.update({
            "schema": 1,
            "status": "running",
            "created": manifest.get("created", utc_now()),
            "arch": plan.arch_record,
            "dataset": plan.dataset_record,
            "preprocessing": plan.preprocessing.record(),
            "layers": list(plan.layer_map),
            "seed": plan.seed,
            "batch_size": plan.batch_size,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
            platform.processor() or platform.machine(),
            "world_size": self.shard.world_size,
            "versions": _versions(),
            "command": " ".join(sys.argv),
            "writer": writer_record(),
            "config": {"identity": plan.identity},
            "analyses": analyses,
        })
        manifest.pop("error", None)
        for analysis in plan.analyses:
            if analysis.name not in self.done:
                manifest["analyses"][analysis.name].update(
                    {"status": "pending", "error": None, "tables": [],
                     "passes": analysis.num_passes()})
        self.store.manifest = manifest
        if self.shard.is_main:
            self.store.save_manifest()
            self.host.notify("probe_run_started", run_dir=str(self.store.path),
                             manifest=manifest)

    # -- the ResultSink protocol -----------------------------------------------------------
    def completed(self, analysis: Analysis, tables: Mapping[str, pd.DataFrame],
                  artifacts: Mapping[str, bytes], seconds: float) -> None:
        """Write an analysis's artifacts and tables, then mark it complete."""
        for rel, data in artifacts.items():
            self.store.write_artifact(analysis.name, rel, data)
        for table, frame in tables.items():
            self.store.write_table(analysis.name, table, frame)
        self.manifest["analyses"][analysis.name].update(
            status="complete", tables=sorted(tables), error=None, traceback=None,
            seconds=round(seconds, 4))
        self.store.save_manifest()
        self.host.notify("probe_analysis_finished", run_dir=str(self.store.path),
                         analysis=analysis.name, tables=dict(tables))

    def failed(self, analysis: Analysis, error: str, details: str | None) -> None:
        """Mark an analysis failed with its one-line error (and traceback)."""
        self.manifest["analyses"][analysis.name].update(
            status="failed", error=error, tables=[], traceback=details)
        self.store.save_manifest()
        self.host.notify("probe_run_failed", run_dir=str(self.store.path),
                         manifest=self.manifest, error=f"{analysis.name}: {error}")

    # -- the end ---------------------------------------------------------------------------
    def finish(self, timings: RunTimings) -> None:
        """End the manifest: ``complete``, or ``partial`` when an analysis did not complete."""
        if not self.shard.is_main:
            return
        complete = all(entry.get("status") == "complete"
                       for entry in self.manifest["analyses"].values())
        record = timings.record()
        record["analyses"] = self.previous_timings | record["analyses"]  # resumed ones too
        self.manifest.update(status="complete" if complete else "partial",
                             timings=record, finished=utc_now())
        self.store.save_manifest()
        self.host.notify("probe_run_finished", run_dir=str(self.store.path),
                         manifest=self.manifest)

    def abort(self, exc: BaseException) -> None:
        """End the manifest after an error outside the analyses (``failed``) or a kill
        (``interrupted``); analyses already complete stay complete."""
        if not self.shard.is_main:
            return
        status = "failed" if isinstance(exc, Exception) else "interrupted"
        self.manifest.update(status=status, error=f"{type(exc).__name__}: {exc}"
                             if not isinstance(exc, ProbeError) else str(exc),
                             finished=utc_now())
        for entry in self.manifest["analyses"].values():
            if entry.get("status") in ("pending", "running"):
                entry["status"] = status
        self.store.save_manifest()
        self.host.notify("probe_run_finished", run_dir=str(self.store.path),
                         manifest=self.manifest)
