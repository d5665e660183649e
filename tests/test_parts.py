"""The ``parts`` data set: layout, determinism and masks checked against the drawing geometry."""

from __future__ import annotations

import torch

from probe.plugins.datasets.parts import PartsDataset, chunk_seed, generate
from probe.plugins.datasets.parts_render import COLOR_JITTER
from probe.plugins.datasets.parts_world import COLORS, RECIPES, concept_ids


def _small(**kw):
    args = {"split": "test", "image_size": 32, "size": 40, "seed": 0}
    return PartsDataset(**{**args, **kw})


def test_sample_layout_and_class_table():
    ds = _small()
    sample = ds[0]
    assert sample["image"].shape == (3, 32, 32) and sample["image"].dtype == torch.float32
    assert sample["masks"].shape == (5, 32, 32) and sample["masks"].dtype == torch.int64
    assert sample["scalars"].shape == (1,) and sample["target"].shape == (32, 32)
    assert ds.mask_categories == ("object", "part", "part", "color", "texture")
    assert ds.num_classes == len(RECIPES) + 1 == 9 and ds.class_names[0] == "background"
    ids = ds.concepts["id"]
    assert ids.is_unique and ids.min() == 1
    # every label of the main object is its class; the target map holds the class too
    labels = ds.labels
    assert labels.min() >= 1 and labels.max() <= 8
    objects = ds.masks[:, 0].long()
    for i in range(len(ds)):
        present = set(objects[i].unique().tolist()) - {0}
        assert present == {int(labels[i])}
    assert torch.equal(ds.targets.long(), objects)  # mask_size == image_size


def test_determinism_and_disjoint_splits():
    a, b = _small(), _small()
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    c = _small(seed=1)
    assert not torch.equal(a.images, c.images)
    v = _small(split="val")
    assert not torch.equal(a.images, v.images)
    # a prefix of a larger data set is the smaller one (chunked generators)
    d = _small(size=20)
    assert torch.equal(d.images, a.images[:20])
    assert chunk_seed(0, "train", 0) != chunk_seed(0, "test", 0)


def test_masks_follow_the_drawing_geometry():
    ds = _small(size=60)
    table = ds.concepts
    parts = concept_ids(table, "part")
    names = {v: k for k, v in parts.items()}
    parents = {(int(p), int(o)) for p, o in ds.part_parents.itertuples(index=False)}
    obj, part1, part2 = ds.masks[:, 0].long(), ds.masks[:, 1].long(), ds.masks[:, 2].long()
    # every object pixel carries a part of that object; sub-parts lie inside parts
    on = obj > 0
    assert bool((part1[on] > 0).all())
    pairs = set(zip(part1[on].tolist(), obj[on].tolist(), strict=True))
    assert pairs <= parents
    sub = part2 > 0
    assert bool((part1[sub] > 0).all())
    holders = {(names[s], names[p]) for s, p in
               set(zip(part2[sub].tolist(), part1[sub].tolist(), strict=True))}
    assert holders <= {("pupil", "eye"), ("hub", "wheel"), ("knob", "door"),
                       ("knob", "drawer")}
    # some part pixels lie outside every object: lone distractor parts
    assert bool(((part1 > 0) & (obj == 0)).any())


def test_colour_map_matches_the_pixels():
    ds = _small(size=30)
    colour_ids = concept_ids(ds.concepts, "color")
    proto = torch.zeros(max(colour_ids.values()) + 1, 3)
    for name, rgb in COLORS:
        proto[colour_ids[name]] = torch.tensor(rgb)
    colour = ds.masks[:, 3].long()
    assert bool((colour > 0).all())  # every pixel has exactly one colour
    expected = proto[colour].permute(0, 3, 1, 2)
    err = (ds.images.float() / 255.0 - expected).abs()
    assert float(err.max()) <= COLOR_JITTER + 0.5 / 255 + 1e-6


def test_half_resolution_masks_sample_the_same_geometry():
    full = generate(16, 64, 64, 0, "train", 3, 2)
    half = generate(16, 64, 32, 0, "train", 3, 2)
    assert torch.equal(full["image"], half["image"])
    assert half["masks"].shape == (16, 5, 32, 32)
    # most half-resolution label pixels agree with the full-resolution pixel nearby
    agree = (half["masks"] == full["masks"][:, :, ::2, ::2]).float().mean()
    assert float(agree) > 0.8


def test_cache_is_keyed_by_options_and_written_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBE_CACHE_DIR", str(tmp_path))
    a = _small(size=8, cache=True)
    files = list((tmp_path / "parts").glob("*.pt"))
    assert len(files) == 1 and not list((tmp_path / "parts").glob(".*tmp"))
    again = _small(size=8, cache=True)  # read back from the file
    assert torch.equal(a.images, again.images) and torch.equal(a.masks, again.masks)
    _small(size=8, seed=5, cache=True)
    assert len(list((tmp_path / "parts").glob("*.pt"))) == 2
    files[0].write_bytes(b"damaged")  # a broken cache file is regenerated
    assert torch.equal(_small(size=8, cache=True).images, a.images)


def test_listed_with_options_and_runs_with_lenet(tmp_path):
    import json
    import subprocess
    import sys

    listing = subprocess.run([sys.executable, "-m", "probe", "datasets", "--json"],
                             capture_output=True, text=True, check=True)
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert {"parts", "broden", "folder", "digits"} <= set(rows)
    options = {o["name"] for o in rows["parts"]["options"]}
    assert {"size", "image_size", "seed", "split", "mask_size", "clutter"} <= options
    assert rows["parts"]["has_masks"] and "segmentation" in rows["parts"]["tasks"]
    assert {o["name"] for o in rows["broden"]["options"]} >= {"path", "split", "size"}

    from probe import analyze, load_dataset, load_model

    data = load_dataset("parts", image_size=32, size=16, seed=2)
    model = load_model("lenet5", dataset=data)
    run = analyze(model, data, ["unit-stats"], out=tmp_path / "run", progress=False)
    units = run.table("unit-stats", "units")
    assert len(units) > 0 and set(units["layer"]) >= {"c1"}
