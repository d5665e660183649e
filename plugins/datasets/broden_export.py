"""Write any probe data set with concept masks as a Broden-format directory.

``export_broden(dataset, out)`` writes ``images/<prefix>/<n>.png`` (uint8 RGB),
one label-map PNG per mask layer (``<n>_<category>.png``, or
``<n>_<category>_<k>.png`` for a category with several layers such as
``part_1``/``part_2``), ``index.csv``, ``label.csv``, ``category.csv`` and
``c_<category>.csv`` (see :mod:`broden_format`). Label ids are the data set's
concept ids. A category cell lists layers up to the image's last non-empty
one and scalar slots up to the last non-zero one, so the ``broden`` loader
puts every value back in its layer and slot.

Images are stored as uint8: the round trip is bit for bit for images whose
values are k/255 (the ``parts`` world's are); others come back quantised.

``python -m probe.plugins.datasets.broden_export OUT --dataset parts --set size=100``
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from probe.dataset import ProbeDataset
from probe.errors import ProbeError
from probe.plugins.datasets.broden_format import CATEGORIES, INDEX_COLUMNS, encode_ids


def _save_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, compress_level=1)


def export_broden(dataset: ProbeDataset, out: str | Path, *, prefix: str | None = None,
                  split: str | None = None, overwrite: bool = False) -> Path:
    """Write ``dataset`` (with masks) as a Broden directory at ``out``.

    Args:
        dataset: A probe data set whose samples carry ``masks`` and/or ``scalars``.
        out: Directory to create.
        prefix: Sub-folder of ``images/`` (default: the data set's name).
        split: Value of the ``split`` column (default: the data set's ``split``
            option, else ``train``).
        overwrite: Replace an existing ``out``.

    Returns:
        The directory written.

    Raises:
        ProbeError: the data set has no masks, uses a category Broden has no
            column for, or ``out`` exists and ``overwrite`` is false.
    """
    if not dataset.has_masks or dataset.concepts is None:
        raise ProbeError(f"dataset {dataset.name} has no concept masks to export")
    unknown = sorted(set(dataset.mask_categories + dataset.scalar_categories) - set(CATEGORIES))
    if unknown:
        raise ProbeError(f"Broden has no column for categories {unknown}; it has {CATEGORIES}")
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise ProbeError(f"{out} exists; pass overwrite=True to replace it")
        shutil.rmtree(out)
    prefix = prefix or dataset.name
    split = split or str(dataset.options.get("split", "train"))
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images" / prefix).mkdir(parents=True)

    layers_of = defaultdict(list)
    for layer, cat in enumerate(dataset.mask_categories):
        layers_of[cat].append(layer)
    slots_of = defaultdict(list)
    for slot, cat in enumerate(dataset.scalar_categories):
        slots_of[cat].append(slot)
    images_with = defaultdict(lambda: defaultdict(int))   # label → category → images
    pixel_share = defaultdict(float)                      # label → Σ coverage
    annotated = defaultdict(int)                          # category → images
    rows = []
    for n in range(len(dataset)):
        sample = dataset[n]
        stem = f"{prefix}/{n:06d}"
        image = (sample["image"].clamp(0, 1) * 255.0).round().to(torch.uint8)
        _save_png(image.permute(1, 2, 0).numpy(), tmp / "images" / f"{stem}.png")
        row = {"image": f"{stem}.png", "split": split, "ih": image.shape[1],
               "iw": image.shape[2]}
        masks = sample.get("masks")
        scalars = sample.get("scalars")
        sh, sw = (masks.shape[1], masks.shape[2]) if masks is not None else (row["ih"], row["iw"])
        row.update(sh=sh, sw=sw)
        labels_here: set[int] = set()
        for cat in CATEGORIES:
            entries: list[str] = []
            layers = layers_of.get(cat, [])
            maps = [masks[layer].numpy() for layer in layers] if masks is not None else []
            last = max((k for k, m in enumerate(maps) if m.any()), default=-1)
            for k in range(last + 1):
                suffix = cat if len(layers) == 1 else f"{cat}_{k + 1}"
                name = f"{stem}_{suffix}.png"
                _save_png(encode_ids(maps[k]), tmp / "images" / name)
                entries.append(name)
            if last >= 0:
                present = np.unique(np.concatenate([m.ravel() for m in maps[:last + 1]]))
                union = np.zeros(maps[0].shape, dtype=bool)
                for label in present[present > 0]:
                    union[:] = False
                    for m in maps[:last + 1]:
                        union |= m == label
                    images_with[int(label)][cat] += 1
                    pixel_share[int(label)] += float(union.mean())
                    labels_here.add(int(label))
            values = [int(scalars[s]) for s in slots_of.get(cat, [])] if scalars is not None else []
            last_value = max((k for k, v in enumerate(values) if v), default=-1)
            entries += [str(v) for v in values[:last_value + 1]]
            for v in values[:last_value + 1]:
                if v:
                    images_with[v][cat] += 1
                    pixel_share[v] += 1.0
                    labels_here.add(v)
            if entries:
                annotated[cat] += 1
            row[cat] = ";".join(entries)
        rows.append(row)
    pd.DataFrame(rows, columns=[*INDEX_COLUMNS, *CATEGORIES]).to_csv(tmp / "index.csv",
                                                                     index=False)
    _write_tables(tmp, dataset.concepts, images_with, pixel_share, annotated)
    os.replace(tmp, out)
    return out


def _write_tables(root: Path, concepts: pd.DataFrame, images_with: dict, pixel_share: dict,
                  annotated: dict) -> None:
    """``label.csv``, ``category.csv`` and one ``c_<category>.csv`` per category."""
    labels = []
    for rec in concepts.sort_values("id").itertuples(index=False):
        counts = images_with.get(int(rec.id), {})
        cells = [f"{rec.category}({counts.get(rec.category, 0)})"]
        cells += [f"{cat}({c})" for cat, c in counts.items() if cat != rec.category]
        frequency = sum(counts.values())
        coverage = pixel_share.get(int(rec.id), 0.0) / frequency if frequency else 0.0
        labels.append({"number": int(rec.id), "name": rec.name, "category": ";".join(cells),
                       "frequency": frequency, "coverage": round(coverage, 6), "syns": ""})
    table = pd.DataFrame(labels, columns=["number", "name", "category", "frequency",
                                          "coverage", "syns"])
    # fixed-point coverage: NetDissect-Lite's reader takes "1e-05" for a string
    table.to_csv(root / "label.csv", index=False, float_format="%.6f")
    categories = []
    for cat in dict.fromkeys(concepts["category"]):
        own = concepts[concepts["category"] == cat].sort_values("id")
        categories.append({"name": cat, "first": int(own["id"].min()),
                           "last": int(own["id"].max()), "count": len(own),
                           "frequency": annotated.get(cat, 0)})
        sub = table.set_index("number").loc[own["id"].astype(int)]
        pd.DataFrame({"code": range(1, len(own) + 1), "number": own["id"].astype(int).to_numpy(),
                      "name": own["name"].to_numpy(), "frequency": sub["frequency"].to_numpy(),
                      "coverage": sub["coverage"].to_numpy()}).to_csv(root / f"c_{cat}.csv",
                                                                      index=False,
                                                                      float_format="%.6f")
    pd.DataFrame(categories, columns=["name", "first", "last", "count", "frequency"]).to_csv(
        root / "category.csv", index=False)


def main(argv: list[str] | None = None) -> None:
    """Export a registered data set as a Broden directory."""
    from probe.api import load_dataset
    from probe.options import parse_assignments

    parser = argparse.ArgumentParser(description="Write a probe data set in Broden format.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--dataset", default="parts")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                        help="data set option, e.g. size=100")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    options = parse_assignments([f"dataset.{s}" for s in args.set]).get("dataset", {})
    dataset = load_dataset(args.dataset, **options)
    print(export_broden(dataset, args.out, overwrite=args.overwrite))


if __name__ == "__main__":
    main()
