"""``probe demo``: the main job end to end on the embedded data.

Trains (or reuses cached checkpoints of) LeNet-5 on the digits and a small
VGG, its deformable variant and a DeconvNet on the parts world, runs every
built-in analysis that applies to each model, writes the runs and a report
(PDF too where Chromium is present), and says how to open the dashboard.

What the demo trains and runs is data: :data:`DEMO_MODELS` and
:data:`DEMO_ANALYSES` below are the one place to change it. A model whose
architecture or data set is not installed, and an analysis that is not
registered or does not apply (e.g. concept detection on a data set without
masks), is left out with a note instead of failing.

Checkpoints are cached under ``CACHE/<arch>-<key>.safetensors`` where the key
hashes the architecture, its options, the training data options, the recipe
and the seed; a finished run in ``OUT/runs`` is not redone.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from probe.runfile import RunRequest

#: Built-in analyses the demo runs on every model they apply to, in run order.
DEMO_ANALYSES: tuple[str, ...] = ("unit-stats", "dissection", "filters", "equivariance")

#: Analysis options that keep the demo small (measured on 2 CPU cores; see docs/report.md).
DEMO_ANALYSIS_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "unit-stats": {"top_k": 6},
    "dissection": {"exemplars": 6, "ablation_images": 16, "max_ablations": 16},
    "filters": {"patches": 2000, "random_filters": 32, "iterations": 15, "orientations": 2,
                "phases": 2},
    "equivariance": {"transforms": ("shift-x", "hflip"),
                     "magnitudes": ("shift-x=4px", "hflip=1"), "lie": False,
                     "consistency_steps": 4},
}

#: Lighter options still for ``--quick`` (merged over the above).
QUICK_ANALYSIS_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "filters": {"patches": 1000, "random_filters": 16, "iterations": 10, "orientations": 2,
                "phases": 1, "rotations": 4},
    "dissection": {"ablation_images": 8, "max_ablations": 4},
    "equivariance": {"magnitudes": ("shift-x=2px",), "learned_maps": "none"},
}


@dataclass(frozen=True)
class DemoModel:
    """One model of the demo: how to train it and what to run on it.

    Args:
        run: Run folder name under ``OUT/runs``.
        arch: Registered architecture.
        dataset: Registered data set (training and analysis).
        train_size: Training images (0 = the recipe's training split).
        epochs: Training epochs (``None`` = the architecture's recipe).
        run_size: Images analysed (from the test split).
        arch_options: Options on top of the architecture's recipe.
        analyses: Analyses to run where they apply.
        max_layers: Analyse at most this many layers, evenly spread from first to
            last (0 = every layer); keeps deep encoder-decoders affordable.
        in_quick: Whether ``--quick`` includes this model.
    """

    run: str
    arch: str
    dataset: str
    train_size: int
    epochs: int | None
    run_size: int
    arch_options: Mapping[str, Any] = field(default_factory=dict)
    analyses: tuple[str, ...] = DEMO_ANALYSES
    max_layers: int = 0
    in_quick: bool = False


#: The demo's models, trained with the architectures' own recipes (measured on an idle
#: 2-core machine: VGG-11-BN 12 epochs 30 s, 0.985 accuracy; deformable VGG-11 107 s, 0.97;
#: DeconvNet 131 s, mean IoU 0.73; see docs/architectures.md). The recipes give the
#: small widths (VGG: eighth width, batch norm, which trains from scratch where plain
#: VGG-11 does not).
DEMO_MODELS: tuple[DemoModel, ...] = (
    DemoModel("lenet5-digits", "lenet5", "digits", train_size=0, epochs=10, run_size=200,
              in_quick=True),
    DemoModel("vgg11_bn-parts", "vgg11_bn", "parts", train_size=0, epochs=None, run_size=100,
              in_quick=True),
    DemoModel("deform_vgg11-parts", "deform_vgg11", "parts", train_size=0, epochs=None,
              run_size=100),
    # equivariance is left out here: on ten 64-px decoder maps it would cost more than
    # the rest of the demo's analyses together (VGG vs. deformable VGG shows it instead)
    DemoModel("deconvnet-parts", "deconvnet", "parts", train_size=0, epochs=None,
              run_size=80, max_layers=10, analyses=("unit-stats", "dissection", "filters")),
)


def quick(model: DemoModel) -> DemoModel:
    """A much smaller version of ``model`` (``--quick``: tests and a first look)."""
    return replace(model, train_size=64, epochs=1, run_size=24)


def checkpoint_key(model: DemoModel, seed: int = 0) -> str:
    """The cache key of a model's checkpoint: everything its trained weights depend on."""
    from probe.api import get_architecture

    spec = get_architecture(model.arch)
    recipe = asdict(spec.train) if spec.train is not None else None
    payload = {"arch": spec.name, "arch_options": dict(model.arch_options),
               "dataset": model.dataset, "dataset_options": {"size": model.train_size},
               "epochs": model.epochs, "recipe": recipe, "seed": seed}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_checkpoint(model: DemoModel, cache: Path, seed: int = 0) -> Path:
    """Where the checkpoint of ``model`` lives in ``cache``."""
    return cache / f"{model.arch}-{checkpoint_key(model, seed)}.safetensors"


def ensure_checkpoint(model: DemoModel, cache: Path, *, device: str | None = None,
                      progress: bool = True, seed: int = 0) -> tuple[Path, bool]:
    """The model's checkpoint, trained now unless cached; returns ``(path, was_cached)``."""
    from probe.training import sidecar_path, train

    path = cached_checkpoint(model, cache, seed)
    if path.is_file() and sidecar_path(path).is_file():
        return path, True
    options = {"size": model.train_size} if model.train_size else {}
    train(model.arch, path, dataset=model.dataset, dataset_options=options,
          arch_options=dict(model.arch_options) or None, epochs=model.epochs, device=device,
          seed=seed, progress=progress)
    return path, False


def applicable_analyses(model: DemoModel) -> tuple[list[str], list[str]]:
    """``(analyses to run, notes on those left out)`` for one model."""
    from probe.host import get_host

    host = get_host()
    dataset = host.datasets.get(model.dataset)
    chosen, notes = [], []
    for name in model.analyses:
        if name not in host.analyses:
            notes.append(f"{name}: not installed")
            continue
        requires = set(host.analyses.get(name).requires)
        if "masks" in requires and not dataset.has_masks:
            notes.append(f"{name}: needs concept masks, {model.dataset} has none")
            continue
        if "target" in requires and "segmentation" not in dataset.tasks:
            notes.append(f"{name}: needs segmentation targets")
            continue
        chosen.append(name)
    return chosen, notes


def available_models(models: tuple[DemoModel, ...] = DEMO_MODELS) -> tuple[list[DemoModel],
                                                                             list[str]]:
    """The models whose architecture and data set are installed, and notes on the rest."""
    from probe.host import get_host

    host = get_host()
    keep, notes = [], []
    for model in models:
        if model.arch not in host.architectures:
            notes.append(f"{model.run}: architecture {model.arch} is not installed")
        elif model.dataset not in host.datasets:
            notes.append(f"{model.run}: data set {model.dataset} is not installed")
        else:
            keep.append(model)
    return keep, notes


def spread_layers(names: list[str], count: int) -> list[str]:
    """``count`` names evenly spread over ``names``, first and last included (all if fewer)."""
    if count <= 0 or len(names) <= count:
        return list(names)
    if count == 1:
        return [names[-1]]
    step = (len(names) - 1) / (count - 1)
    return [names[round(i * step)] for i in range(count)]


def model_layers(model: DemoModel, checkpoint: Path) -> list[str]:
    """The layers a demo run analyses (``[]`` = all)."""
    if not model.max_layers:
        return []
    import torch

    from probe.models import checkpoint_metadata, get_architecture

    spec = get_architecture(model.arch)
    options = spec.resolve(checkpoint_metadata(spec, checkpoint).get("options", {}))
    with torch.device("meta"):
        built = spec.build(**options)
    names = list(spec.layer_map(built))
    convs = [n for n in names if not n.startswith(("pool", "unpool"))]  # pools repeat convs
    return spread_layers(convs if len(convs) >= model.max_layers else names, model.max_layers)


def run_request(model: DemoModel, checkpoint: Path, runs: Path, analyses: list[str],
                device: str | None, fast: bool = False) -> RunRequest:
    """The run of one demo model."""
    settings: dict[str, dict[str, Any]] = {"dataset": {"split": "test", "size": model.run_size}}
    for name in analyses:
        options = {**DEMO_ANALYSIS_OPTIONS.get(name, {}),
                   **(QUICK_ANALYSIS_OPTIONS.get(name, {}) if fast else {})}
        if options:
            settings[name] = options
    return RunRequest(arch=model.arch, analyses=analyses, out=runs / model.run,
                      dataset=model.dataset, checkpoint=checkpoint,
                      layers=model_layers(model, checkpoint), device=device,
                      batch_size=50, settings=settings, label=model.run)


@dataclass
class DemoResult:
    """What the demo wrote and how long each step took."""

    out: Path
    runs: list[Path] = field(default_factory=list)
    report: Path | None = None
    pdf: Path | None = None
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(out: str | Path, *, cache: str | Path | None = None, fast: bool = False,
             pdf: bool = True, device: str | None = None, progress: bool = True,
             echo: Callable[[str], None] = print) -> DemoResult:
    """Train or reuse the demo models, run the analyses, write the report.

    Args:
        out: Demo folder: ``runs/``, ``report.html`` (and ``.pdf``), and
            ``checkpoints/`` unless ``cache`` is given.
        cache: Checkpoint cache folder (default ``out/checkpoints``).
        fast: The ``--quick`` demo: the models marked ``in_quick``, tiny training
            and runs, lighter analysis options (for tests and a first look).
        pdf: Print the report to PDF where Chromium is present.
    """
    from probe.report import build_report, find_chromium, print_pdf
    from probe.sweep import run_sweep

    started = time.perf_counter()
    root = Path(out)
    cache_dir = Path(cache) if cache is not None else root / "checkpoints"
    result = DemoResult(root)
    models, notes = available_models()
    result.notes.extend(notes)
    if fast:
        models = [quick(m) for m in models if m.in_quick]
    requests = []
    for model in models:
        step = time.perf_counter()
        checkpoint, was_cached = ensure_checkpoint(model, cache_dir, device=device,
                                                   progress=progress)
        seconds = time.perf_counter() - step
        result.seconds[f"train {model.run}"] = round(seconds, 1)
        accuracy = _metrics_line(checkpoint)
        echo(f"{model.run}: {'cached checkpoint' if was_cached else 'trained'} "
             f"{checkpoint.name}{accuracy} ({seconds:.1f} s)")
        analyses, skipped = applicable_analyses(model)
        result.notes.extend(f"{model.run}: {note}" for note in skipped)
        requests.append(run_request(model, checkpoint, root / "runs", analyses, device, fast))
    step = time.perf_counter()
    sweep = run_sweep(requests, progress=progress, echo=echo)
    result.seconds["analyses"] = round(time.perf_counter() - step, 1)
    result.failed = [f"{o.request.out.name}: {o.detail}" for o in sweep.failed]
    result.runs = [o.request.out for o in sweep.outcomes if o.status != "failed"]
    if result.runs:
        step = time.perf_counter()
        result.report = build_report(result.runs, root / "report.html",
                                     title="probe demo: LeNet-5, VGG, deformable VGG, DeconvNet")
        if pdf and find_chromium() is not None:
            result.pdf = print_pdf(result.report, result.report.with_suffix(".pdf"))
        elif pdf:
            result.notes.append("no PDF: Chromium is not installed")
        result.seconds["report"] = round(time.perf_counter() - step, 1)
    result.seconds["total"] = round(time.perf_counter() - started, 1)
    return result


def _metrics_line(checkpoint: Path) -> str:
    from probe.training import sidecar_path

    try:
        metrics = json.loads(sidecar_path(checkpoint).read_text()).get("metrics", {})
    except (OSError, ValueError):
        return ""
    return "".join(f", {k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))


def print_summary(result: DemoResult, stream: Any = None) -> None:
    """The closing lines: where everything is, how to open the dashboard, what failed."""
    stream = stream or sys.stdout
    for note in result.notes:
        print(f"note: {note}", file=stream)
    for line in result.failed:
        print(f"failed: {line}", file=stream)
    if result.report is not None:
        print(f"report: {result.report}", file=stream)
    if result.pdf is not None:
        print(f"pdf: {result.pdf}", file=stream)
    print(f"runs: {result.out / 'runs'}", file=stream)
    print(f"open the dashboard: probe dash {result.out / 'runs'}", file=stream)
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    print(f"time: {timing}", file=stream)
