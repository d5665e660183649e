"""``probe demo``: the main job end to end on the embedded data.

Trains (or reuses cached checkpoints of) LeNet-5, the Neocognitron, HMAX, an
ICA first layer (``natural_v1``) and LeNet of 1989 on the digits and a small
VGG, a small AlexNet, a deformable VGG and a DeconvNet on the parts world,
cheapest first;
runs every built-in analysis that applies to each model as soon as it is
trained and rewrites the report with every run so far (the steps are in
:mod:`probe.demo_steps`, the time left in :mod:`probe.demo_clock`); at the end
prints the report to PDF where Chromium is present and says how to open the
dashboard.

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

#: Analyses the demo runs on some layers of one model (each costs more per unit).
LENSES: tuple[str, ...] = ("compositional", "concept-vectors", "receptive-field", "attribution",
                           "visualize")
#: The VGG-11-BN layers the lenses look at: early, middle, late.
VGG_LENS_LAYERS: tuple[str, ...] = ("conv2_1", "conv4_1", "conv5_2")

#: Analysis options that keep the demo small (measured on 2 CPU cores; see docs/report.md).
DEMO_ANALYSIS_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "unit-stats": {"top_k": 6},
    "dissection": {"exemplars": 6, "ablation_images": 16, "max_ablations": 16},
    "filters": {"patches": 2000, "random_filters": 32, "iterations": 15, "orientations": 2,
                "phases": 2},
    "equivariance": {"transforms": ("shift-x", "hflip"),
                     "magnitudes": ("shift-x=4px", "hflip=1"), "lie": False,
                     "consistency_steps": 4},
    "attribution": {"top_k": 3, "steps": 8},
    "visualize": {"steps": 48},
    # 2.9 s for the three lens layers on an idle 2-core machine (docs/concept_vectors.md)
    "concept-vectors": {"images": 64, "epochs": 10},
}

#: Lighter options still for ``--quick`` (merged over the above).
QUICK_ANALYSIS_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "filters": {"patches": 1000, "random_filters": 16, "iterations": 10, "orientations": 2,
                "phases": 1, "rotations": 4},
    "dissection": {"ablation_images": 8, "max_ablations": 4},
    "equivariance": {"magnitudes": ("shift-x=2px",), "learned_maps": "none"},
    "compositional": {"images": 16, "beam": 2, "length": 2},
    "receptive-field": {"images": 2, "per_unit": False},
    "attribution": {"top_k": 1, "steps": 2, "methods": ("guided-backprop",)},
    "visualize": {"steps": 4},
    "concept-vectors": {"images": 16, "epochs": 3},
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
        analysis_options: Options of this model's analyses, over
            :data:`DEMO_ANALYSIS_OPTIONS` (e.g. the layers an expensive lens runs on).
        max_layers: Analyse at most this many layers, evenly spread from first to
            last (0 = every layer); keeps deep encoder-decoders affordable.
        in_quick: Whether ``--quick`` includes this model.
        estimate: ``(training, analysis)`` seconds on an idle 2-core machine: what the
            demo's "about N min left" starts from (rescaled by the measured speed).
    """

    run: str
    arch: str
    dataset: str
    train_size: int
    epochs: int | None
    run_size: int
    arch_options: Mapping[str, Any] = field(default_factory=dict)
    analyses: tuple[str, ...] = DEMO_ANALYSES
    analysis_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    max_layers: int = 0
    in_quick: bool = False
    estimate: tuple[float, float] = (60.0, 60.0)


#: The demo's models, cheapest first (each is analysed and reported as soon as it is
#: trained), trained with the architectures' own recipes (measured on an idle 2-core
#: machine: VGG-11-BN 12 epochs 30 s, 0.985 accuracy; deformable VGG-11 107 s, 0.97;
#: DeconvNet 131 s, mean IoU 0.73; see docs/architectures.md). The recipes give the
#: small widths (VGG: eighth width, batch norm, which trains from scratch where plain
#: VGG-11 does not). ``estimate`` is (training, analysis) seconds measured in one whole
#: ``probe demo`` on an idle 2-core machine (10 min in all), the start of its "about N
#: min left".
DEMO_MODELS: tuple[DemoModel, ...] = (
    DemoModel("lenet5-digits", "lenet5", "digits", train_size=0, epochs=10, run_size=200,
              in_quick=True, estimate=(5.0, 2.0)),
    # learned vs engineered (the report's filters comparison puts their first layers side
    # by side with LeNet-5's and the VGGs'): the Neocognitron learns without labels, HMAX
    # is a fixed Gabor bank with imprinted prototypes, natural_v1's first layer is ICA of
    # natural patches, LeNet of 1989 is the first backprop CNN; digits have no masks, so
    # dissection is left out on them
    DemoModel("neocognitron-digits", "neocognitron", "digits", train_size=0, epochs=5,
              run_size=200, estimate=(6.0, 4.0)),
    DemoModel("natural_v1-digits", "natural_v1", "digits", train_size=0, epochs=None,
              run_size=200, estimate=(20.0, 9.0)),
    DemoModel("hmax-digits", "hmax", "digits", train_size=0, epochs=None, run_size=200,
              estimate=(25.0, 18.0)),
    DemoModel("lenet1989-digits", "lenet1989", "digits", train_size=0, epochs=10,
              run_size=200, estimate=(40.0, 5.0)),
    # the lenses (compositional explanations, receptive fields, attributions, feature
    # visualisations) on three layers from early to late, next to the dissection
    DemoModel("vgg11_bn-parts", "vgg11_bn", "parts", train_size=0, epochs=None, run_size=100,
              analyses=(*DEMO_ANALYSES, *LENSES),
              analysis_options={name: {"layers": VGG_LENS_LAYERS} for name in LENSES},
              in_quick=True, estimate=(75.0, 60.0)),
    # a supervised CNN's first layer on the parts world for the learned-vs-engineered
    # comparison (conv1, 32 filters of 11×11): half the recipe's 24 epochs
    DemoModel("alexnet_small-parts", "alexnet_small", "parts", train_size=0, epochs=12,
              run_size=100, analyses=("unit-stats", "dissection", "filters"),
              estimate=(125.0, 15.0)),
    DemoModel("deform_vgg11-parts", "deform_vgg11", "parts", train_size=0, epochs=None,
              run_size=100, estimate=(210.0, 3.0)),
    # equivariance is left out here: on ten 64-px decoder maps it would cost more than
    # the rest of the demo's analyses together (VGG vs. deformable VGG shows it instead)
    DemoModel("deconvnet-parts", "deconvnet", "parts", train_size=0, epochs=None,
              run_size=80, max_layers=10, analyses=("unit-stats", "dissection", "filters"),
              estimate=(275.0, 2.0)),
)


#: ``(training, analysis)`` seconds of a ``--quick`` model on an idle 2-core machine.
QUICK_ESTIMATE = (2.0, 2.0)


def quick(model: DemoModel) -> DemoModel:
    """A much smaller version of ``model`` (``--quick``: tests and a first look)."""
    return replace(model, train_size=64, epochs=1, run_size=24, estimate=QUICK_ESTIMATE)


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
                   **model.analysis_options.get(name, {}),
                   **(QUICK_ANALYSIS_OPTIONS.get(name, {}) if fast else {})}
        if options:
            settings[name] = options
    return RunRequest(arch=model.arch, analyses=analyses, out=runs / model.run,
                      dataset=model.dataset, checkpoint=checkpoint,
                      layers=model_layers(model, checkpoint), device=device,
                      batch_size=50, settings=settings, label=model.run)


@dataclass
class DemoResult:
    """What the demo wrote and how long each step took.

    ``first_report`` is the seconds from the start until the first run and its
    report could be opened (``None`` when nothing new was written before the end).
    """

    out: Path
    runs: list[Path] = field(default_factory=list)
    report: Path | None = None
    pdf: Path | None = None
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    first_report: float | None = None


#: The title of the demo's report.
REPORT_TITLE = ("probe demo: LeNet-5, the Neocognitron, HMAX, an ICA first layer, LeNet "
                "of 1989, VGG, deformable VGG, DeconvNet")


def run_demo(out: str | Path, *, cache: str | Path | None = None, fast: bool = False,
             pdf: bool = True, device: str | None = None, progress: bool = True,
             echo: Callable[[str], None] = print) -> DemoResult:
    """Train or reuse each demo model, analyse it at once, and keep the report current.

    Models go cheapest first; each is trained (unless cached), analysed, and the
    report rewritten with every run so far, so the first run can be explored
    (``probe dash OUT/runs``, ``OUT/report.html``) while the next model trains.
    Each step is announced as ``[2/4] vgg11_bn-parts: training (about 4 min left)``
    (:mod:`probe.demo_clock`). A model that fails to train or to run is recorded in
    ``failed`` and the others go on.

    Args:
        out: Demo folder: ``runs/``, ``report.html`` (and ``.pdf``), and
            ``checkpoints/`` unless ``cache`` is given.
        cache: Checkpoint cache folder (default ``out/checkpoints``).
        fast: The ``--quick`` demo: the models marked ``in_quick``, tiny training
            and runs, lighter analysis options (for tests and a first look).
        pdf: Print the final report to PDF where Chromium is present.
        echo: Where the progress lines go.
    """
    from probe.demo_steps import plan_clock, report_step, run_step, train_step

    started = time.perf_counter()
    root = Path(out)
    cache_dir = Path(cache) if cache is not None else root / "checkpoints"
    result = DemoResult(root)
    models, notes = available_models()
    result.notes.extend(notes)
    if fast:
        models = [quick(m) for m in models if m.in_quick]
    clock = plan_clock(models, root, cache_dir, started=started)
    for index, model in enumerate(models, 1):
        tag = f"[{index}/{len(models)}] {model.run}"
        request = train_step(model, tag, cache_dir, root, clock, result, device=device,
                             progress=progress, fast=fast, echo=echo)
        fresh = request is not None and run_step(request, tag, clock, result,
                                                 progress=progress, echo=echo)
        if not (fresh and index < len(models)):  # nothing new, or the final report is next
            clock.skip(f"report {index}")
            continue
        error = report_step(result, clock, f"report {index}", pdf=False)
        if error:  # a note only: the final report is tried again below
            result.notes.append(error)
            echo(f"{tag}: {error}")
        else:
            echo(f"{tag}: report {result.report} with {len(result.runs)} of {len(models)} "
                 f"runs; explore them now: probe dash {root / 'runs'} ({clock.left()})")
    error = report_step(result, clock, "report", pdf=pdf) if result.runs else None
    if error:
        result.failed.append(error)
    result.seconds["total"] = round(clock.elapsed(), 1)
    return result


def metrics_line(checkpoint: Path) -> str:
    """``, accuracy 0.987`` from a checkpoint's sidecar (``""`` when it has none)."""
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
    if result.first_report is not None:
        print(f"first run and report ready after {result.first_report:.1f} s", file=stream)
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    print(f"time: {timing}", file=stream)
