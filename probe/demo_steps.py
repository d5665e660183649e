"""The steps of ``probe demo``, each timed on the demo's clock.

:func:`probe.demo.run_demo` calls, for each model, :func:`train_step` (train or
find its checkpoint), :func:`run_step` (its analyses) and :func:`report_step`
(the report of every run so far); :func:`plan_clock` estimates them all up
front (:mod:`probe.demo_clock`). Each step says what it is doing and how long
the demo has left through ``echo``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from probe.demo import (
    REPORT_TITLE,
    DemoModel,
    DemoResult,
    applicable_analyses,
    cached_checkpoint,
    ensure_checkpoint,
    metrics_line,
    run_request,
)
from probe.demo_clock import FINAL_REPORT_SECONDS, REPORT_SECONDS, DemoClock
from probe.runfile import RunRequest


def plan_clock(models: list[DemoModel], root: Path, cache: Path,
               started: float | None = None) -> DemoClock:
    """A :class:`~probe.demo_clock.DemoClock` with every step of the demo estimated
    (0 for a checkpoint already cached or a run already complete), started at
    ``started`` (a ``time.perf_counter()`` value; default now)."""
    from probe.training import sidecar_path

    clock = DemoClock() if started is None else DemoClock(started=started)
    for index, model in enumerate(models, 1):
        path = cached_checkpoint(model, cache)
        cached = path.is_file() and sidecar_path(path).is_file()
        clock.add(f"train {model.run}", 0.0 if cached else model.estimate[0])
        clock.add(f"run {model.run}", 0.0 if _complete(root / "runs" / model.run)
                  else model.estimate[1])
        if index < len(models):
            clock.add(f"report {index}", REPORT_SECONDS)
    clock.add("report", FINAL_REPORT_SECONDS)
    return clock


def _complete(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "manifest.json").read_text()).get("status") == "complete"
    except (OSError, ValueError, AttributeError):
        return False


def train_step(model: DemoModel, tag: str, cache: Path, root: Path, clock: DemoClock,
               result: DemoResult, *, device: str | None, progress: bool, fast: bool,
               echo: Callable[[str], None]) -> RunRequest | None:
    """Train (or find) one model's checkpoint; the request of its run, ``None`` if it failed."""
    key = f"train {model.run}"
    if clock.pending.get(key):
        echo(f"{tag}: training {model.arch} on {model.dataset} ({clock.left()})")
    step = time.perf_counter()
    try:
        checkpoint, was_cached = ensure_checkpoint(model, cache, device=device,
                                                   progress=progress)
    except Exception as exc:  # one model that cannot train must not stop the others
        clock.skip(key)
        clock.skip(f"run {model.run}")
        result.failed.append(f"{model.run}: training failed: {_one_line(exc)}")
        echo(f"{tag}: training failed: {_one_line(exc)}")
        return None
    seconds = time.perf_counter() - step
    clock.done(key, seconds)
    result.seconds[key] = round(seconds, 1)
    echo(f"{tag}: {'cached checkpoint' if was_cached else 'trained'} "
         f"{checkpoint.name}{metrics_line(checkpoint)} ({seconds:.1f} s)")
    analyses, skipped = applicable_analyses(model)
    result.notes.extend(f"{model.run}: {note}" for note in skipped)
    return run_request(model, checkpoint, root / "runs", analyses, device, fast)


def run_step(request: RunRequest, tag: str, clock: DemoClock, result: DemoResult, *,
             progress: bool, echo: Callable[[str], None]) -> bool:
    """Run one model's analyses; whether anything new was written."""
    from probe.errors import ProbeError
    from probe.sweep import Outcome, run_one

    key = f"run {request.label}"
    if clock.pending.get(key):
        echo(f"{tag}: analysing {', '.join(request.analyses)} ({clock.left()})")
    step = time.perf_counter()
    try:
        outcome = run_one(request, progress)
    except ProbeError as exc:
        outcome = Outcome(request, "failed", str(exc))
    except Exception as exc:  # as in a sweep: one broken run must not end the demo
        outcome = Outcome(request, "failed", _one_line(exc))
    seconds = time.perf_counter() - step
    clock.done(key, seconds)
    result.seconds[key] = round(seconds, 1)
    echo(f"{tag}: {request.out}: "
         f"{outcome.detail if outcome.status != 'partial' else 'partial'}")
    if outcome.status in ("failed", "partial"):
        result.failed.append(f"{request.out.name}: {outcome.detail}")
    if outcome.status != "failed":
        result.runs.append(request.out)
    return outcome.status in ("complete", "partial")


def report_step(result: DemoResult, clock: DemoClock, key: str, *, pdf: bool) -> str | None:
    """Write the report of every run so far (and at the end the PDF).

    Returns:
        ``None``, or the one-line error of a report that failed (the runs are kept;
        the caller records it and the demo goes on).
    """
    from probe.report import build_report, find_chromium, print_pdf

    step = time.perf_counter()
    try:
        result.report = build_report(result.runs, result.out / "report.html",
                                     title=REPORT_TITLE)
    except Exception as exc:  # the runs are written: a report problem must not hide them
        clock.skip(key)
        result.report = None
        return f"report of {len(result.runs)} run(s) failed: {_one_line(exc)}"
    if result.first_report is None:
        result.first_report = round(clock.elapsed(), 1)
    if pdf and find_chromium() is not None:
        result.pdf = print_pdf(result.report, result.report.with_suffix(".pdf"))
    elif pdf:
        result.notes.append("no PDF: Chromium is not installed")
    seconds = time.perf_counter() - step
    clock.done(key, seconds)
    result.seconds[key] = round(seconds, 1)
    return None


def _one_line(exc: BaseException) -> str:
    from probe.errors import ProbeError, first_line

    return str(exc).strip().splitlines()[0] if isinstance(exc, ProbeError) and str(exc) \
        else first_line(exc)
