"""The ``broden`` data set: a loader for Broden-format directories (see :mod:`broden_format`).

Broden gives each image a variable number of label maps per category; probe's
sample layout is fixed, so the loader scans the whole ``index.csv`` once (every
split gets the same layout) and gives each category as many mask layers as its
most-annotated image has (``part, part``
for two part layers), in index column order, padding with zero (unlabelled)
layers; integer entries become image-level ``scalars`` the same way. Layer
order is the index's column order: ``color, object, part…, material, texture``.

Each label's category in the concept table is its *primary* category: the one
with the largest count in ``label.csv``'s ``category`` cell (ties: the order of
``category.csv``, else Broden's column order); with ``primary=coverage``, the
one with the largest ``coverage`` in the ``c_<category>.csv`` files (ties: the
later category of ``category.csv``), as NetDissect-Lite decides it. Broden has no part→object
relation, so ``part_parents`` is ``None`` unless ``derive_parents`` is set: then
it is derived by pixel containment (:func:`derive_part_parents`, a ``derived``
column says so).

Images load lazily (``images/`` under the directory) at their own size, or
resized bilinearly to ``image_size``; masks stay at the segmentation size
``sh × sw`` (or are resized nearest-neighbour to ``mask_size``). Bad data raises
:class:`probe.errors.DataError` naming the file and the ``index.csv`` row.
Samples have no class label (``label`` = -1).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.nn import functional as F

from probe import DatasetSpec, Option, ProbeDataset, hookimpl
from probe.errors import DataError
from probe.plugins.datasets.broden_format import (
    CATEGORIES,
    INDEX_COLUMNS,
    LABEL_COLUMNS,
    decode_ids,
    parse_category_cell,
    primary_category,
    split_cell,
)
from probe.plugins.datasets.png_pixels import read_rgb


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def read_table(path: Path) -> pd.DataFrame:
    """A CSV file as strings; an empty or malformed file is one :class:`DataError` naming it."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (not even a header row)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise DataError(f"{path}: not a readable CSV file "
                        f"({lines[0].strip() if lines else type(exc).__name__})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _coverage_by_category(root: Path, order: tuple[str, ...]) -> dict[int, list[tuple[float, int]]]:
    """``{label: [(coverage, category rank), ...]}`` from the ``c_<category>.csv`` files."""
    found: dict[int, list[tuple[float, int]]] = {}
    for rank, cat in enumerate(order):
        path = root / f"c_{cat}.csv"
        if not path.is_file():
            continue
        table = read_table(path)
        if not {"number", "coverage"} <= set(table.columns):
            raise DataError(f"{path}: missing column(s) number/coverage")
        for number, coverage in zip(table["number"], table["coverage"], strict=True):
            try:
                found.setdefault(int(number), []).append((float(coverage), rank))
            except ValueError:
                raise DataError(f"{path}: number {number!r} / coverage {coverage!r} must be "
                                f"numbers") from None
    return found


def read_labels(root: Path, primary: str = "count") -> pd.DataFrame:
    """The concept table from ``label.csv``: ``id, name, category`` (primary category).

    ``primary``: ``count`` — the largest count of the ``category`` cell;
    ``coverage`` — the largest ``c_<category>.csv`` coverage, ties to the later
    category (NetDissect-Lite's ``primary_categories_per_index``); labels in no
    ``c_`` file fall back to ``count``.

    Raises:
        DataError: missing file or columns, a bad category cell, duplicate ids.
    """
    path = root / "label.csv"
    if not path.is_file():
        raise DataError(f"{path}: no such file (a Broden directory needs label.csv)")
    labels = read_table(path)
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; label.csv needs "
                        f"{list(LABEL_COLUMNS)}")
    order = CATEGORIES
    category_file = root / "category.csv"
    if category_file.is_file():
        names = read_table(category_file)
        if "name" not in names.columns:
            raise DataError(f"{category_file}: missing column(s) ['name']")
        order = tuple(names["name"])
    by_coverage = _coverage_by_category(root, order) if primary == "coverage" else {}
    rows = []
    for i, rec in enumerate(labels.itertuples(index=False)):
        row = i + 2
        if not _is_int(rec.number):
            raise DataError(f"{path}, row {row}: number must be an integer, got {rec.number!r}")
        number = int(rec.number)
        if number == 0:  # 0 = unlabelled, never a concept
            continue
        try:
            entries = parse_category_cell(rec.category)
        except ValueError as exc:
            raise DataError(f"{path}, row {row}: {exc}") from None
        if not entries:
            raise DataError(f"{path}, row {row}: label {number} has no category")
        if by_coverage.get(number):
            rows.append((number, rec.name, order[max(by_coverage[number])[1]]))
        else:
            rows.append((number, rec.name, primary_category(entries, order)))
    table = pd.DataFrame(rows, columns=["id", "name", "category"])
    dupes = table["id"][table["id"].duplicated()]
    if len(dupes):
        raise DataError(f"{path}: label number {int(dupes.iloc[0])} appears twice")
    return table.sort_values("id", ignore_index=True)


def derive_part_parents(dataset: ProbeDataset, min_share: float = 0.1) -> pd.DataFrame:
    """Derive the part→object relation by pixel containment (Broden has none).

    For every pair (part label p, object label o), counts the pixels labelled p
    in any part layer and o in an object layer at the same place; p's parents
    are the objects holding at least ``min_share`` of p's object-covered pixels
    (a part shared by several objects gets several parents), and always the
    object holding most of them. One pass over the data set; a bincount per
    image, no loop over labels.

    Returns:
        ``part_id, object_id, share, derived`` rows (``derived`` is always
        ``True``, marking the relation as inferred rather than annotated).
    """
    part_layers = [k for k, c in enumerate(dataset.mask_categories) if c == "part"]
    object_layers = [k for k, c in enumerate(dataset.mask_categories) if c == "object"]
    columns = ["part_id", "object_id", "share", "derived"]
    if not part_layers or not object_layers or dataset.concepts is None:
        return pd.DataFrame(columns=columns)
    size = int(dataset.concepts["id"].max()) + 1
    counts = torch.zeros(size * size, dtype=torch.int64)
    for i in range(len(dataset)):
        masks = dataset[i]["masks"]
        obj = masks[object_layers].amax(0).flatten()
        for layer in part_layers:
            part = masks[layer].flatten()
            on = (part > 0) & (obj > 0)
            counts += torch.bincount(part[on] * size + obj[on], minlength=size * size)
    table = counts.view(size, size).double()
    totals = table.sum(1, keepdim=True)
    share = torch.where(totals > 0, table / totals.clamp(min=1), torch.zeros_like(table))
    keep = (share >= min_share) | ((share == share.amax(1, keepdim=True)) & (share > 0))
    parts, objects = keep.nonzero(as_tuple=True)
    return pd.DataFrame({"part_id": parts.numpy(), "object_id": objects.numpy(),
                         "share": share[parts, objects].numpy(),
                         "derived": True}, columns=columns)


class BrodenDataset(ProbeDataset):
    """A Broden-format directory (see the module docstring)."""

    name = "broden"
    channels = 3
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)

    def __init__(self, path: str = "", split: str = "all", size: int = 0, image_size: int = 0,
                 mask_size: int = 0, seed: int = 0, derive_parents: bool = False,
                 primary: str = "count") -> None:
        if not path:
            raise DataError("dataset broden needs a directory: --set dataset.path=DIR")
        self.root = Path(path).expanduser()
        self.index_file = self.root / "index.csv"
        if not self.index_file.is_file():
            raise DataError(f"{self.index_file}: no such file (a Broden directory holds "
                            f"index.csv, label.csv and images/)")
        index = read_table(self.index_file)
        missing = [c for c in (*INDEX_COLUMNS, *CATEGORIES) if c not in index.columns]
        if missing:
            raise DataError(f"{self.index_file}: missing column(s) {missing}; a Broden index "
                            f"has columns {','.join((*INDEX_COLUMNS, *CATEGORIES))}")
        if not len(index):
            # the mask layout comes from the rows: without one there is none to give
            raise DataError(f"{self.index_file}: the data set is empty (a header row and no "
                            f"image rows); a Broden index needs one row per image")
        self.concepts = read_labels(self.root, primary)
        self._valid = np.zeros(int(self.concepts["id"].max()) + 1 if len(self.concepts) else 1,
                               dtype=bool)
        self._valid[self.concepts["id"].to_numpy()] = True
        self._valid[0] = True
        self.seed = seed

        # the layout comes from the whole index, so every split has the same one
        self.rows = index.assign(_row=np.arange(len(index)) + 2)
        self._parse_numbers()
        self._layout()
        keep = np.arange(len(index))
        if split != "all":
            keep = keep[(index["split"] == split).to_numpy()]
            if not len(keep):
                known = sorted(set(index["split"]))
                raise DataError(f"{self.index_file}: no row has split {split!r}; splits: {known}")
        if size:
            keep = keep[:size]
        self.rows = self.rows.iloc[keep].reset_index(drop=True)
        self._maps = [self._maps[i] for i in keep]
        self.scalars = self.scalars[torch.from_numpy(keep)]
        self.image_size = image_size or self._uniform("ih", "iw", "image_size")
        self.mask_size = mask_size or self._uniform("sh", "sw", "mask_size")
        # per-row fields as plain lists: a sample reads them without pandas indexing
        self._names = self.rows["image"].tolist()
        self._sizes = list(zip(*(self.rows[c].tolist() for c in ("ih", "iw", "sh", "sw")),
                               strict=True))
        self._row_numbers = self.rows["_row"].tolist()
        # label id -> known, for every 16-bit id a PNG can hold (one lookup per map)
        self._known = np.zeros(65536, dtype=bool)
        self._known[:len(self._valid)] = self._valid
        self._images_dir = str(self.root / "images")
        if derive_parents:
            self.part_parents = derive_part_parents(self)

    # -- index parsing ---------------------------------------------------------
    def _where(self, i: int) -> str:
        rows = getattr(self, "_row_numbers", None)
        number = rows[i] if rows is not None else int(self.rows["_row"][i])
        return f"{self.index_file}, row {number}"

    def _parse_numbers(self) -> None:
        for col in ("ih", "iw", "sh", "sw"):
            for i, value in enumerate(self.rows[col]):
                if not value.strip().isdigit() or int(value) <= 0:
                    raise DataError(f"{self._where(i)}: column {col} must be a positive "
                                    f"integer, got {value!r}")
            self.rows[col] = self.rows[col].astype(int)

    def _layout(self) -> None:
        """Fixed mask-layer and scalar-slot layout; parses every category cell once."""
        self._maps: list[dict[str, list[str]]] = []
        scalars: list[dict[str, list[int]]] = []
        layers = dict.fromkeys(CATEGORIES, 0)
        slots = dict.fromkeys(CATEGORIES, 0)
        for i in range(len(self.rows)):
            maps_i: dict[str, list[str]] = {}
            scalars_i: dict[str, list[int]] = {}
            for cat in CATEGORIES:
                entries = split_cell(self.rows[cat][i])
                numbers = [int(e) for e in entries if _is_int(e)]
                files = [e for e in entries if not _is_int(e)]
                for n in numbers:
                    if n < 0 or n >= len(self._valid) or not self._valid[n]:
                        raise DataError(f"{self._where(i)}: {cat} label {n} is not in "
                                        f"{self.root / 'label.csv'}")
                maps_i[cat], scalars_i[cat] = files, numbers
                layers[cat] = max(layers[cat], len(files))
                slots[cat] = max(slots[cat], len(numbers))
            self._maps.append(maps_i)
            scalars.append(scalars_i)
        self.mask_categories = tuple(c for c in CATEGORIES for _ in range(layers[c]))
        self.scalar_categories = tuple(c for c in CATEGORIES for _ in range(slots[c]))
        self._offsets = {c: self.mask_categories.index(c) for c in CATEGORIES if layers[c]}
        table = torch.zeros((len(self.rows), len(self.scalar_categories)), dtype=torch.int64)
        for i, per_cat in enumerate(scalars):
            for cat, numbers in per_cat.items():
                if numbers:
                    start = self.scalar_categories.index(cat)
                    table[i, start:start + len(numbers)] = torch.tensor(numbers)
        self.scalars = table

    def _uniform(self, height: str, width: str, option: str) -> int:
        sides = set(self.rows[height]) | set(self.rows[width])
        if len(sides) > 1:
            raise DataError(f"{self.index_file}: {height}/{width} are not one square size "
                            f"(sides {sorted(sides)[:4]}); set dataset.{option} to resize")
        return int(next(iter(sides))) if sides else 0

    # -- samples ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    def _open(self, name: str, i: int, formats: tuple[str, ...] | None = None) -> Image.Image:
        # a plain string path: pathlib's joins cost as much as decoding a small map
        path = os.path.join(self._images_dir, name)
        try:
            img = Image.open(path, formats=formats)
            img.load()
        except (OSError, ValueError) as exc:
            raise DataError(f"{path} ({self._where(i)}): cannot read image: {exc}") from None
        return img

    def _image(self, i: int) -> torch.Tensor:
        name = self._names[i]
        rgb = read_rgb(os.path.join(self._images_dir, name))  # None: not an 8-bit RGB(A) PNG
        if rgb is None:
            rgb = np.asarray(self._open(name, i).convert("RGB"))
        ih, iw = self._sizes[i][:2]
        if rgb.shape[:2] != (ih, iw):
            raise DataError(f"{self.root / 'images' / name} ({self._where(i)}): image is "
                            f"{rgb.shape[1]}×{rgb.shape[0]}, index.csv says {iw}×{ih}")
        pixels = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0
        if (ih, iw) != (self.image_size, self.image_size):
            pixels = F.interpolate(pixels[None], size=(self.image_size, self.image_size),
                                   mode="bilinear", align_corners=False, antialias=True)[0]
            pixels = pixels.clamp(0.0, 1.0)
        return pixels

    def _label_map(self, name: str, i: int) -> np.ndarray:
        pixels = read_rgb(os.path.join(self._images_dir, name))  # None: not 8-bit RGB(A)
        if pixels is None:
            img = self._open(name, i, ("PNG",))  # label maps are PNGs: no format probing
            if img.mode not in ("RGB", "RGBA"):
                raise DataError(f"{self.root / 'images' / name} ({self._where(i)}): label "
                                f"maps must be RGB PNGs (id = R + 256·G), got mode {img.mode}")
            pixels = np.asarray(img)
        sh, sw = self._sizes[i][2:]
        if pixels.shape[:2] != (sh, sw):
            raise DataError(f"{self.root / 'images' / name} ({self._where(i)}): label map is "
                            f"{pixels.shape[1]}×{pixels.shape[0]}, index.csv says sw×sh = "
                            f"{sw}×{sh}")
        ids = decode_ids(pixels)
        bad = ~self._known[ids]
        if bad.any():
            unknown = sorted(set(ids[bad].tolist()))[:5]
            raise DataError(f"{self.root / 'images' / name} ({self._where(i)}): label id(s) "
                            f"{unknown} are not in {self.root / 'label.csv'}")
        return ids

    def _masks(self, i: int) -> torch.Tensor:
        sh, sw = self._sizes[i][2:]
        masks = torch.zeros((len(self.mask_categories), sh, sw), dtype=torch.int64)
        for cat, files in self._maps[i].items():
            for j, name in enumerate(files):
                masks[self._offsets[cat] + j] = torch.from_numpy(self._label_map(name, i))
        if (sh, sw) != (self.mask_size, self.mask_size):
            masks = F.interpolate(masks[None].float(), size=(self.mask_size, self.mask_size),
                                  mode="nearest")[0].long()
        return masks

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self._image(index), "label": torch.tensor(-1), "index": index,
                "masks": self._masks(index), "scalars": self.scalars[index]}


@hookimpl
def probe_register_datasets(register):
    register(DatasetSpec(
        name="broden",
        load=BrodenDataset,
        options=(
            Option("path", str, "", "Broden directory (index.csv, label.csv, images/)"),
            Option("split", str, "all", "rows whose split column equals this ('all' = every row)"),
            Option("size", int, 0, "number of images, first rows of the split (0 = all)",
                   minimum=0),
            Option("image_size", int, 0, "resize images to this side (0 = as in index.csv)",
                   minimum=0, maximum=1024),
            Option("mask_size", int, 0, "resize label maps to this side (0 = sh×sw of index.csv)",
                   minimum=0, maximum=1024),
            Option("seed", int, 0, "unused: rows keep index.csv order (common option)"),
            Option("derive_parents", bool, False,
                   "derive part_parents by pixel containment (one pass; marked derived)"),
            Option("primary", str, "count", "concept-table category of a label: largest count "
                   "in label.csv, or largest c_<category>.csv coverage (NetDissect-Lite)",
                   choices=("count", "coverage")),
        ),
        description="Broden-format directory: index.csv, R+256·G PNG label maps, label tables",
        has_masks=True,
        tasks=(),
    ))
