"""``dissection`` against NetDissect-Lite's own code, side by side in one run, same data.

The parts world is exported as a Broden directory (``export_broden``); both tools
read that directory, dissect the same layers of the same model with the same
thresholds (probe's; Lite's own are computed and timed too), and their counts
are compared entry by entry. Measured, alternating peer and probe in every
repeat (median and spread of ``--repeats``):

* **tally**: Lite's own ``FeatureOperator.tally_job`` loop over its float64
  feature memmaps, on batches its ``SegmentationPrefetcher`` loaded beforehand
  (so loading is not timed), against probe's tally step (``update`` of pass 2
  on stored batches: label side, IoU tallies, exemplars; the forward pass is
  not timed);
* **pipeline**: Lite's ``feature_extraction`` + ``quantile_threshold`` +
  ``tally`` (its own loading, forward pass and memmaps; not the HTML report)
  against ``probe.measure`` with ``dissection`` on the ``broden`` loader (both
  passes: loading, forward, thresholds, tallies, tables).

Lite's code is ``benchmarks/peers/netdissect_lite`` (CSAILVision/NetDissect-Lite
with the patches its README lists; never part of the package). Lite feeds the
model Caffe-style inputs (BGR mean subtracted, divided by 255·0.224); a wrapper
recovers the exact uint8 pixels and applies the model's own normalisation, so
both tools see bit-identical model inputs.

    python benchmarks/bench_dissection_lite.py --arch vgg11_bn --checkpoint vgg11_bn.safetensors
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import probe  # noqa: E402
from probe import Batch  # noqa: E402
from probe.capture import Capture  # noqa: E402
from probe.distributed import Shard  # noqa: E402
from probe.plan import plan_run  # noqa: E402
from probe.plugins.analyses.dissection import Dissection  # noqa: E402
from probe.plugins.analyses.dissection.labels import BatchLabels  # noqa: E402
from probe.plugins.analyses.dissection.tally import LayerTally  # noqa: E402
from probe.plugins.datasets.broden_export import export_broden  # noqa: E402
from probe.runner import build_context  # noqa: E402

PEER = Path(__file__).resolve().parent / "peers" / "netdissect_lite"
CPU = torch.device("cpu")
LITE_OPTIONS = {"rule": "lite", "detector_inclusive": True, "unlabelled": "lite",
                "hierarchy": False}


class LiteInputs(nn.Module):
    """The model behind Lite's Caffe-style inputs: recovers the uint8 RGB pixels exactly
    (``x·255·0.224 + mean``, rounded) and applies the model's own normalisation."""

    def __init__(self, model: nn.Module, normalize, mean_bgr) -> None:
        super().__init__()
        self.model, self.normalize = model, normalize
        self.register_buffer("mean", torch.tensor(mean_bgr[::-1], dtype=torch.float32)
                             .view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = torch.round(x * (255.0 * 0.224) + self.mean) / 255.0
        return self.model(self.normalize(pixels))


def median_spread(values: list[float]) -> str:
    mid = statistics.median(values)
    return f"{mid:.3f} s (min {min(values):.3f}, max {max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vgg11_bn")
    parser.add_argument("--checkpoint", default=None, help="trained weights (else untrained)")
    parser.add_argument("--width", type=float, default=0.25, help="width (untrained only)")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--mask-size", type=int, default=0, help="0 = the image size")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tally-batch-size", type=int, default=16, help="Lite's TALLY_BATCH_SIZE")
    parser.add_argument("--quantile", type=float, default=0.005)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0,
                        help="probe's data-loader worker processes in the pipeline (Lite "
                             "always loads with cpu_count() processes)")
    parser.add_argument("--workdir", default=None, help="where the export and memmaps go")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-lite-"))
    work.mkdir(parents=True, exist_ok=True)

    parts = probe.load_dataset("parts", size=args.images, image_size=args.image_size,
                               mask_size=args.mask_size)
    root = export_broden(parts, work / "broden", overwrite=True)
    broden = probe.load_dataset("broden", path=str(root))
    options = {} if args.checkpoint else {"width": args.width}
    model = probe.load_model(args.arch, args.checkpoint, dataset=parts, **options)
    model.eval()
    analysis = Dissection(quantile=args.quantile, **LITE_OPTIONS)
    plan = plan_run(model, broden, [analysis], batch_size=args.batch_size)
    context = build_context(plan, torch.device("cpu"), Shard(0, 1))
    handle, layer_paths = context.handle, context.layers
    chosen = [name for name in analysis.select_layers(context)
              if len(context.layer_shapes[name]) == 3]
    n = len(broden)

    # -- NetDissect-Lite, configured for this export ---------------------------------------
    sys.path.insert(0, str(PEER))
    import settings

    categories = list(dict.fromkeys(parts.concepts["category"]))
    settings.GPU = False
    settings.QUANTILE = args.quantile
    settings.SCORE_THRESHOLD = settings.SEG_THRESHOLD = 0.04
    settings.CATAGORIES = categories
    settings.DATA_DIRECTORY = str(root)
    settings.IMG_SIZE = args.image_size
    settings.FEATURE_NAMES = chosen
    settings.BATCH_SIZE = args.batch_size
    settings.TALLY_BATCH_SIZE = args.tally_batch_size
    settings.TALLY_AHEAD = 4
    settings.INDEX_FILE = "index.csv"
    settings.PARALLEL = 1
    import feature_operation as lite
    from loader.data_loader import SegmentationPrefetcher

    quiet = contextlib.redirect_stdout(io.StringIO())

    def lite_operator(tag: str):
        settings.OUTPUT_FOLDER = str(work / f"lite-{tag}")
        shutil.rmtree(settings.OUTPUT_FOLDER, ignore_errors=True)  # no stale caches
        with quiet:
            return lite.FeatureOperator()

    operator = lite_operator("setup")
    wrapped = LiteInputs(model, handle.normalize, operator.mean).eval()
    operator.loader.pool.terminate()
    data = operator.data

    def lite_pipeline(tag: str, thresholds: dict[str, np.ndarray]):
        """Lite's main.py without the HTML report; its tally uses ``thresholds``."""
        op = lite_operator(tag)
        hooks = [model.get_submodule(layer_paths[name]).register_forward_hook(lite.hook_feature)
                 for name in chosen]  # what Lite's loadmodel does, for probe's layer names
        start = time.perf_counter()
        with quiet:
            features, _ = op.feature_extraction(model=wrapped)
            for h in hooks:
                h.remove()
            op.loader.pool.terminate()  # its image loader is done
            extracted = time.perf_counter()
            own, results, spent = {}, {}, [0.0, 0.0]
            for i, name in enumerate(chosen):
                t0 = time.perf_counter()
                own[name] = op.quantile_threshold(features[i])
                t1 = time.perf_counter()
                results[name] = op.tally(features[i], thresholds[name])
                spent[0] += t1 - t0
                spent[1] += time.perf_counter() - t1
        total = time.perf_counter() - start
        phases["lite_extract"].append(extracted - start)
        phases["lite_quantile"].append(spent[0])
        phases["lite_tally+load"].append(spent[1])
        return total, features, own, results

    def lite_tally(features, thresholds, preloaded):
        """Lite's own tally loop (``tally_job``) on preloaded batches, per layer."""
        counts = {}
        cpu = time.process_time()
        start = time.perf_counter()
        with quiet:
            for i, name in enumerate(chosen):
                feats = features[i]
                units, labels = feats.shape[1], len(data.label)
                both = np.zeros((units, labels))
                unit_px = np.zeros(units)
                unit_cat = np.zeros((units, len(data.category_names())))
                truth = np.zeros(labels)
                lite.FeatureOperator.tally_job((feats, data, thresholds[name], truth, unit_px,
                                                unit_cat, both, 0, data.size(), preloaded))
                counts[name] = (both, unit_px, unit_cat, truth)
        wall = time.perf_counter() - start
        cpu_times["lite_tally"].append(time.process_time() - cpu)
        return wall, counts

    # -- probe: stored batches for the tally step, measure() for the pipeline --------------
    loader = torch.utils.data.DataLoader(broden, batch_size=args.batch_size)
    samples = list(loader)
    capture_map = {name: layer_paths[name] for name in chosen}

    def probe_batches(pass_index: int) -> list[Batch]:
        out = []
        with torch.no_grad(), Capture(model, capture_map) as capture:
            for s in samples:
                images = s["image"].float()
                inputs = handle.normalize(images)
                outputs = model(inputs)
                out.append(Batch(images=images, inputs=inputs, indices=s["index"],
                                 labels=s["label"], outputs=outputs,
                                 activations=capture.take(), masks=s["masks"],
                                 image_concepts=s["scalars"], pass_index=pass_index))
        return out

    first = probe_batches(0)
    acc = analysis.accumulator(context)
    for batch in first:
        acc.update(batch)
    acc.end_pass(0, context)
    thresholded = copy.deepcopy(acc)
    stored = probe_batches(1)
    del first
    thresholds = {name: acc.thresholds[name].double().numpy() for name in chosen}

    def probe_tally():
        fresh = copy.deepcopy(thresholded)
        cpu = time.process_time()
        start = time.perf_counter()
        for batch in stored:
            fresh.update(batch)
        wall = time.perf_counter() - start
        cpu_times["probe_tally"].append(time.process_time() - cpu)
        return wall, fresh

    phases: dict[str, list[float]] = {k: [] for k in (
        "lite_extract", "lite_quantile", "lite_tally+load")}
    cpu_times: dict[str, list[float]] = {"lite_tally": [], "probe_tally": [],
                                         "probe_counts": []}

    def probe_counts():
        """Only what Lite's loop computes: the label side and the I / A / T counts (pass 2
        without the exemplars), from the same stored batches."""
        tallies = {name: LayerTally(context.layer_shapes[name][0], acc.space, CPU)
                   for name in chosen}
        cpu = time.process_time()
        start = time.perf_counter()
        for batch in stored:
            labels = BatchLabels.build(acc.space, batch.masks, batch.image_concepts,
                                       acc.mask_size, len(batch.images), CPU, plan=acc.plan)
            for name, tally in tallies.items():
                act = batch.activations[name]
                tally.update(act, acc.thresholds[name], labels, act.flatten(2).amax(2),
                             analysis.settings["downsample"])
        wall = time.perf_counter() - start
        cpu_times["probe_counts"].append(time.process_time() - cpu)
        return wall

    def probe_pipeline():
        start = time.perf_counter()
        tables = probe.measure(model, broden, [analysis], device="cpu",
                               batch_size=args.batch_size, layers=chosen,
                               workers=args.workers)["dissection"]
        return time.perf_counter() - start, tables

    def loading_only():
        start = time.perf_counter()
        for _ in torch.utils.data.DataLoader(broden, batch_size=args.batch_size):
            pass
        return time.perf_counter() - start

    def forward_only():
        start = time.perf_counter()
        probe_batches(1)
        return time.perf_counter() - start

    with quiet:
        prefetch = SegmentationPrefetcher(data, categories=data.category_names(), once=True,
                                          batch_size=args.tally_batch_size, ahead=4)
        preloaded = list(prefetch.batches())
        prefetch.pool.terminate()

    times: dict[str, list[float]] = {k: [] for k in (
        "lite_pipeline", "probe_pipeline", "lite_tally", "probe_tally", "probe_counts",
        "loading", "forward")}
    lite_results = lite_counts = lite_own = probe_tables = probe_acc = None
    for repeat in range(args.repeats):
        if repeat:  # the previous repeat's float64 memmaps
            shutil.rmtree(work / f"lite-r{repeat - 1}", ignore_errors=True)
        t, features, lite_own, lite_results = lite_pipeline(f"r{repeat}", thresholds)
        times["lite_pipeline"].append(t)
        t, probe_tables = probe_pipeline()
        times["probe_pipeline"].append(t)
        t, lite_counts = lite_tally(features, thresholds, preloaded)
        times["lite_tally"].append(t)
        t, probe_acc = probe_tally()
        times["probe_tally"].append(t)
        times["probe_counts"].append(probe_counts())
        times["loading"].append(loading_only())
        times["forward"].append(forward_only())
        print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s"
                                                    for k, v in times.items()), flush=True)

    # -- agreement -------------------------------------------------------------------------
    assert lite_counts is not None and probe_acc is not None and probe_tables is not None
    cat_index = {c: i for i, c in enumerate(probe_acc.space.categories)}
    lite_cats = [cat_index[c] for c in data.category_names()]
    print(f"\nparts world exported as Broden: {n} images {args.image_size}px, masks "
          f"{broden.mask_size}px; {args.arch} "
          f"({args.checkpoint or f'untrained, width {args.width}'}); layers {len(chosen)}, "
          f"units {sum(context.layer_shapes[k][0] for k in chosen)}; {args.threads} thread(s), "
          f"Lite TALLY_BATCH_SIZE {args.tally_batch_size}, batch {args.batch_size}, "
          f"probe workers {args.workers}")
    total_diff = total_inter = 0
    print("counts, probe rule=lite vs Lite (same thresholds): layer: I / A / A-by-category / T "
          "entries that differ")
    for name in chosen:
        both, unit_px, unit_cat, truth = lite_counts[name]
        tally = probe_acc.tallies[name]
        inter = tally.intersection.numpy()
        d_i = int(np.abs(inter - both[:, :inter.shape[1]]).sum())
        d_a = int(np.abs(tally.active.numpy() - unit_px).sum())
        d_c = int(np.abs(tally.active_lite.numpy()[:, lite_cats] - unit_cat).sum())
        d_t = int(np.abs(probe_acc.truth.numpy() - truth[:inter.shape[1]]).sum())
        total_diff += d_i + d_a + d_c + d_t
        total_inter += int(both.sum())
        own = lite_own[name]
        rel = np.abs(own - thresholds[name]) / np.maximum(np.abs(thresholds[name]), 1e-12)
        print(f"  {name:10s} I {d_i} of {int(both.sum())}, A {d_a}, A/cat {d_c}, T {d_t}; "
              f"Lite's own thresholds vs exact: median rel. diff {np.median(rel):.2e}, "
              f"max {rel.max():.2e}")
    units = probe_tables["units"]
    lite_det = probe_det = same_label = 0
    total_units = 0
    for name in chosen:
        mine = units[units["layer"] == name].set_index("unit")
        for rec in lite_results[name]:
            unit = int(rec["unit"]) - 1
            total_units += 1
            lite_det += float(rec["score"]) >= settings.SCORE_THRESHOLD
            probe_det += bool(mine.loc[unit, "is_detector"])
            same_label += (rec["label"] == mine.loc[unit, "name"]
                           and rec["category"] == mine.loc[unit, "category"]
                           and abs(float(rec["score"]) - float(mine.loc[unit, "iou"])) < 1e-9)
    print(f"pipeline tables: detectors (IoU >= 0.04) Lite {lite_det}, probe {probe_det}; "
          f"units with the same best label, category and IoU: {same_label} of {total_units}")
    print(f"all count entries identical: {total_diff == 0} ({total_diff} differ; "
          f"{total_inter} intersection pixels)")

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\ntimes over {args.repeats} repeats, median (min, max):")
    for key, values in times.items():
        print(f"  {key:15s} {median_spread(values)}  = {n / statistics.median(values):8.1f} img/s")
    print("Lite's pipeline by step, median: " + ", ".join(
        f"{k[5:]} {statistics.median(v):.3f} s" for k, v in phases.items()))
    ratios_t = [a / b for a, b in zip(times["lite_tally"], times["probe_tally"], strict=True)]
    ratios_p = [a / b for a, b in zip(times["lite_pipeline"], times["probe_pipeline"],
                                      strict=True)]
    print(f"tally step: probe is {med['lite_tally'] / med['probe_tally']:.1f}x Lite's own loop "
          f"(per repeat {', '.join(f'{r:.1f}' for r in ratios_t)}; median of the per-repeat "
          f"ratios {statistics.median(ratios_t):.1f}x)")
    ratios_c = [a / b for a, b in zip(cpu_times["lite_tally"], cpu_times["probe_tally"],
                                      strict=True)]
    ratios_n = [a / b for a, b in zip(cpu_times["lite_tally"], cpu_times["probe_counts"],
                                      strict=True)]
    ratios_w = [a / b for a, b in zip(times["lite_tally"], times["probe_counts"], strict=True)]
    print(f"tally step in process CPU time (both single-process, 1 thread; robust to a shared "
          f"machine): Lite {statistics.median(cpu_times['lite_tally']) / n * 1e3:.2f} ms/img, "
          f"probe {statistics.median(cpu_times['probe_tally']) / n * 1e3:.2f} ms/img: "
          f"{statistics.median(ratios_c):.1f}x (per repeat "
          f"{', '.join(f'{r:.1f}' for r in ratios_c)})")
    print(f"counts only (what Lite's loop computes: label side + I/A/T, no exemplars): "
          f"probe {statistics.median(cpu_times['probe_counts']) / n * 1e3:.2f} ms/img CPU, "
          f"{statistics.median(ratios_n):.1f}x Lite in CPU time (per repeat "
          f"{', '.join(f'{r:.1f}' for r in ratios_n)}), {statistics.median(ratios_w):.1f}x "
          f"in wall time")
    print(f"whole pipeline: probe is {med['lite_pipeline'] / med['probe_pipeline']:.1f}x Lite's "
          f"(per repeat {', '.join(f'{r:.1f}' for r in ratios_p)}; median of the per-repeat "
          f"ratios {statistics.median(ratios_p):.1f}x)")
    from probe.pass_cache import budget_bytes

    # With the pass cache the second pass reads the first pass's kept batches and forward
    # outputs: one load and one forward in all. Without it, both happen twice.
    cached = budget_bytes() > 0
    floor = (1 if cached else 2) * (med["loading"] + med["forward"])
    how = "load and forward every image once (pass cache)" if cached else \
        "load and forward every image twice (pass cache off)"
    print(f"probe's two passes {how}: {floor:.3f} s of its "
          f"{med['probe_pipeline']:.3f} s; with that floor the pipeline ratio is at most "
          f"{med['lite_pipeline'] / floor:.1f}x")
    if total_diff:
        raise SystemExit(f"bench_dissection_lite: {total_diff} count entries differ from Lite's")

if __name__ == "__main__":
    main()
