"""Run many requests (a sweep): skip finished runs, go on after failures, report at the end.

A run whose folder already holds the same run, finished with every requested
analysis complete under the same options, is skipped without touching its
files; a run that was interrupted is resumed by the runner (analyses already
complete are kept). A failing run is recorded with its reason and the sweep
goes on; the caller exits non-zero when any run failed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from probe.errors import ProbeError
from probe.requests import RunRequest
from probe.store import RunStore


def _plain(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples become lists), for manifest comparisons."""
    return json.loads(json.dumps(value, default=str))


def _layers_of(arch_name: str, options: dict[str, Any]) -> list[str] | None:
    """Default layer names of an architecture built (on the meta device) with ``options``."""
    import torch

    from probe.api import get_architecture

    spec = get_architecture(arch_name)
    try:
        with torch.device("meta"):
            return list(spec.layer_map(spec.build(**options)))
    except Exception:  # a builder that cannot run on meta: let the runner decide
        return None


def is_finished(request: RunRequest) -> bool:
    """Whether ``request.out`` already holds this exact run, complete.

    Compares what the runner's resume check compares (architecture and its
    options, checkpoint hash, data set and its options, layers, seed) plus the
    status and options of every requested analysis, without loading the model
    or the data.
    """
    from probe.api import get_architecture
    from probe.checkpoint import file_sha256
    from probe.host import get_host

    if request.overwrite:
        return False
    manifest = RunStore(request.out).read_manifest()
    if not manifest or manifest.get("status") != "complete":
        return False
    host = get_host()
    arch = manifest.get("arch") or {}
    spec = get_architecture(request.arch)
    if arch.get("name") != spec.name:
        return False
    recorded = arch.get("options") or {}
    if _plain(spec.resolve({**recorded, **request.settings.get("arch", {})})) != recorded:
        return False
    if request.checkpoint is None:
        if arch.get("checkpoint_sha256"):
            return False
    elif not request.checkpoint.is_file() or \
            file_sha256(request.checkpoint) != arch.get("checkpoint_sha256"):
        return False
    data = manifest.get("dataset")
    if (request.dataset is None) != (data is None):
        return False
    if data is not None:
        dspec = host.datasets.get(str(request.dataset))
        if data.get("name") != dspec.name or \
                _plain(dspec.resolve(request.settings.get("dataset", {}))) != data.get("options"):
            return False
    identity = (manifest.get("config") or {}).get("identity") or {}
    if identity.get("seed", manifest.get("seed")) != request.seed:
        return False
    layers = identity.get("layers", manifest.get("layers"))
    wanted = request.layers or _layers_of(spec.name, recorded)
    if wanted is None or list(wanted) != list(layers or []):
        return False
    analyses = manifest.get("analyses") or {}
    for name in request.analyses:
        entry = analyses.get(name) or {}
        settings = host.analyses.get(name)(**request.settings.get(name, {})).settings
        if entry.get("status") != "complete" or entry.get("options") != _plain(settings):
            return False
    return True


@dataclass
class Outcome:
    """What happened to one run of a sweep."""

    request: RunRequest
    status: str  # complete | skipped | partial | failed
    detail: str = ""
    seconds: float = 0.0


@dataclass
class SweepResult:
    """Every run's outcome, in order."""

    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        """Runs that raised or left an analysis incomplete."""
        return [o for o in self.outcomes if o.status in ("failed", "partial")]

    def summary(self) -> str:
        """One line: how many runs completed, were skipped and failed."""
        counts = {s: sum(o.status == s for o in self.outcomes)
                  for s in ("complete", "skipped", "partial", "failed")}
        return (f"sweep: {len(self.outcomes)} run(s): {counts['complete']} complete, "
                f"{counts['skipped']} skipped (complete), {counts['partial']} partial, "
                f"{counts['failed']} failed")


def _partial_detail(run: Any) -> str:
    errors = [f"{name}: {entry.get('error')}" for name, entry in
              run.manifest.get("analyses", {}).items() if entry.get("status") != "complete"]
    return "; ".join(errors) or "some analyses did not complete (see its manifest.json)"


def run_one(request: RunRequest, progress: bool) -> Outcome:
    """Run (or skip) one request; a user-facing error becomes a ``failed`` outcome."""
    from probe.api import analyze

    start = time.perf_counter()
    if is_finished(request):
        return Outcome(request, "skipped", "skipped (complete)")
    run = analyze(**request.analyze_kwargs(), progress=progress)
    seconds = time.perf_counter() - start
    if run.status == "complete":
        return Outcome(request, "complete", f"complete ({seconds:.1f} s)", seconds)
    return Outcome(request, "partial", _partial_detail(run), seconds)


def run_sweep(requests: Sequence[RunRequest], progress: bool = True,
              echo: Callable[[str], None] | None = None) -> SweepResult:
    """Run every request in order under one overall progress bar.

    A run that raises (a bad checkpoint, an unknown name, a crash) is recorded
    as failed with its reason and the sweep continues. ``KeyboardInterrupt``
    stops the sweep (the interrupted run resumes next time).
    """
    from tqdm.auto import tqdm

    result = SweepResult()
    bar = tqdm(total=len(requests), desc="runs", unit="run", position=0, leave=True,
               dynamic_ncols=True, disable=not progress, file=sys.stderr)
    say = echo or (lambda line: bar.write(line, file=sys.stdout))
    try:
        for index, request in enumerate(requests):
            bar.set_postfix_str(str(request.out), refresh=True)
            prefix = f"[{index + 1}/{len(requests)}] {request.out}"
            try:
                outcome = run_one(request, progress)
            except ProbeError as exc:
                outcome = Outcome(request, "failed", str(exc))
            except Exception as exc:  # one broken run must not end the sweep
                outcome = Outcome(request, "failed", f"{type(exc).__name__}: {exc}")
            result.outcomes.append(outcome)
            say(f"{prefix}: {outcome.detail if outcome.status != 'partial' else 'partial'}")
            bar.update(1)
    finally:
        bar.close()
    return result
