"""Run many requests (a sweep): skip finished runs, go on after failures, report at the end.

A run whose folder already holds the same run, finished with every requested
analysis complete under the same options, is skipped without touching its
files; a run that was interrupted is resumed by the runner (analyses already
complete are kept). A failing run is recorded with its reason and the sweep
goes on; the caller exits non-zero when any run failed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from probe.errors import ProbeError
from probe.runfile import RunRequest
from probe.store import RunStore


def is_finished(request: RunRequest) -> bool:
    """Whether ``request.out`` already holds this exact run, complete.

    Reads the manifest's identity and compares it with the request's own
    (:meth:`RunRequest.identity`: names, given options, checkpoint hash, layers,
    seed) by the runner's resume rule (:func:`probe.run_record.completed_analyses`);
    nothing is loaded or planned.
    """
    from probe.plan import make_analyses
    from probe.run_record import completed_analyses

    if request.overwrite:
        return False
    manifest = RunStore(request.out).read_manifest()
    if not manifest or manifest.get("status") != "complete":
        return False
    options = {a.name: a.settings for a in make_analyses(request.analyses,
                                                         request.analysis_options)}
    done = completed_analyses(manifest, request.identity(), options)
    return done is not None and set(options) <= done


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
    from probe.api import execute_plan
    from probe.device import resolve_device

    start = time.perf_counter()
    if is_finished(request):
        return Outcome(request, "skipped", "skipped (complete)")
    run = execute_plan(request.plan(), request.out, device=resolve_device(request.device),
                       workers=request.workers, progress=progress,
                       overwrite=request.overwrite)
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
