"""The ``broden`` loader on a hand-made fixture, its errors, and the parts → Broden round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from probe.errors import DataError
from probe.plugins.datasets.broden import BrodenDataset, derive_part_parents
from probe.plugins.datasets.broden_export import export_broden
from probe.plugins.datasets.broden_format import decode_ids, encode_ids, parse_category_cell
from probe.plugins.datasets.parts import PartsDataset

LABELS = """number,name,category,frequency,coverage,syns
1,red,color(2),2,0.5,
2,car,object(2),2,0.5,
3,wheel,object(1);part(2),2,0.3,
4,window,part(1),1,0.2,
5,street,scene(1),1,1.0,
6,striped,texture(1),1,1.0,
7,hub,part(1),1,0.1,
300,sky,object(0),0,0.0,
"""
HEADER = "image,split,ih,iw,sh,sw,color,object,part,material,scene,texture\n"

# masks are 3 x 3 (sh = sw = 3); images 6 x 6
A_COLOR = [[1, 1, 0], [0, 1, 1], [0, 0, 0]]
A_OBJECT = [[2, 2, 2], [0, 2, 0], [0, 0, 0]]
A_PART1 = [[3, 3, 4], [0, 3, 0], [0, 0, 0]]
A_PART2 = [[7, 0, 0], [0, 0, 0], [0, 0, 0]]   # a hub inside a wheel: second part layer
B_OBJECT = [[0, 2, 2], [2, 2, 0], [0, 0, 0]]
B_PART1 = [[0, 3, 0], [3, 0, 0], [0, 0, 0]]


def _png(root: Path, name: str, ids: list[list[int]]) -> None:
    Image.fromarray(encode_ids(np.array(ids))).save(root / "images" / name)


def _fixture(root: Path, index_rows: list[str] | None = None, header: str = HEADER) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "label.csv").write_text(LABELS)
    rng = np.random.default_rng(0)
    for stem in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(
            root / "images" / f"{stem}.png")
    _png(root, "a_color.png", A_COLOR)
    _png(root, "a_object.png", A_OBJECT)
    _png(root, "a_part_1.png", A_PART1)
    _png(root, "a_part_2.png", A_PART2)
    _png(root, "b_object.png", B_OBJECT)
    _png(root, "b_part_1.png", B_PART1)
    rows = index_rows or [
        "a.png,train,6,6,3,3,a_color.png,a_object.png,a_part_1.png;a_part_2.png,,5,6",
        "b.png,val,6,6,3,3,,b_object.png,b_part_1.png,,0,",
    ]
    (root / "index.csv").write_text(header + "\n".join(rows) + "\n")
    return root


def test_hand_made_fixture_layout_and_label_counts(tmp_path):
    ds = BrodenDataset(str(_fixture(tmp_path / "broden")), mask_size=0, image_size=0)
    assert len(ds) == 2
    assert ds.mask_categories == ("color", "object", "part", "part")
    assert ds.scalar_categories == ("scene", "texture")
    # wheel is counted more often as a part than as an object: primary category part
    cats = dict(zip(ds.concepts["id"], ds.concepts["category"], strict=True))
    assert cats[3] == "part" and cats[2] == "object" and cats[300] == "object"
    assert 0 not in cats
    a, b = ds[0], ds[1]
    assert a["image"].shape == (3, 6, 6)
    raw = np.asarray(Image.open(tmp_path / "broden" / "images" / "a.png"))
    assert torch.equal(a["image"], torch.from_numpy(raw.copy()).permute(2, 0, 1).float() / 255)
    assert a["masks"].shape == (4, 3, 3)
    masks = torch.stack([a["masks"], b["masks"]])
    # label counts by layer, written out by hand from the arrays above
    counts = {lab: int((masks[:, 1] == lab).sum()) for lab in (2,)}
    assert counts == {2: 8}
    assert int((masks[:, 0] == 1).sum()) == 4 and int((masks[1, 0] != 0).sum()) == 0
    part = masks[:, 2:4]
    assert int((part == 3).sum()) == 5 and int((part == 4).sum()) == 1
    assert int((part == 7).sum()) == 1
    assert int(b["masks"][3].abs().sum()) == 0  # b has one part layer: padded with zeros
    assert a["scalars"].tolist() == [5, 6] and b["scalars"].tolist() == [0, 0]  # label 0 kept
    assert int(a["label"]) == -1
    # split filter and resizing
    val = BrodenDataset(str(tmp_path / "broden"), split="val", image_size=8, mask_size=4)
    assert len(val) == 1 and val[0]["image"].shape == (3, 8, 8)
    assert val[0]["masks"].shape == (4, 4, 4)


def test_category_cells_and_id_encoding():
    assert parse_category_cell("object(12);part(3)") == [("object", 12), ("part", 3)]
    assert parse_category_cell("scene") == [("scene", 0)]
    ids = np.array([[0, 1, 255], [256, 257, 65535]])
    rgb = encode_ids(ids)
    assert rgb[1, 1].tolist() == [1, 1, 0]
    assert np.array_equal(decode_ids(rgb), ids)


def test_missing_columns_name_the_file(tmp_path):
    header = HEADER.replace(",sw", "")
    rows = ["a.png,train,6,6,3,,a_object.png,,,5,"]
    root = _fixture(tmp_path / "b", rows, header)
    with pytest.raises(DataError, match=r"index\.csv: missing column\(s\) \['sw'\]"):
        BrodenDataset(str(root))


def test_wrongly_sized_mask_names_file_and_row(tmp_path):
    root = _fixture(tmp_path / "b")
    _png(root, "b_object.png", [[2, 2], [2, 2], [2, 2]])  # 2 wide, 3 high
    ds = BrodenDataset(str(root))
    ds[0]
    expected = r"b_object\.png \(.*index\.csv, row 3\): label map is 2×3, index.csv says sw×sh"
    with pytest.raises(DataError, match=expected):
        ds[1]


def test_unknown_label_ids_name_file_and_row(tmp_path):
    root = _fixture(tmp_path / "b")
    _png(root, "a_part_2.png", [[7, 8, 0], [0, 0, 0], [0, 0, 0]])
    with pytest.raises(DataError, match=r"a_part_2\.png \(.*row 2\): label id\(s\) \[8\]"):
        BrodenDataset(str(root))[0]
    rows = ["a.png,train,6,6,3,3,,a_object.png,,,9,"]
    with pytest.raises(DataError, match=r"index\.csv, row 2: scene label 9 is not in"):
        BrodenDataset(str(_fixture(tmp_path / "c", rows)))


def test_unreadable_mask_names_file_and_row(tmp_path):
    root = _fixture(tmp_path / "b")
    (root / "images" / "b_part_1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"b_part_1\.png \(.*row 3\): cannot read"):
        BrodenDataset(str(root))[1]
    rows = ["a.png,train,6,six,3,3,,a_object.png,,,5,"]
    with pytest.raises(DataError, match=r"row 2: column iw must be a positive integer"):
        BrodenDataset(str(_fixture(tmp_path / "c", rows)))


def test_parts_round_trip_is_bit_for_bit(tmp_path):
    parts = PartsDataset(split="val", image_size=32, mask_size=16, size=12, seed=3)
    out = export_broden(parts, tmp_path / "exported")
    back = BrodenDataset(str(out))
    assert len(back) == len(parts) and back.mask_size == 16 and back.image_size == 32
    assert back.concepts.equals(parts.concepts)  # same ids, names, primary categories
    order = {cat: [k for k, c in enumerate(back.mask_categories) if c == cat]
             for cat in set(parts.mask_categories)}
    for i in range(len(parts)):
        mine, theirs = parts[i], back[i]
        assert torch.equal(mine["image"], theirs["image"])
        for cat, layers in order.items():
            own = [k for k, c in enumerate(parts.mask_categories) if c == cat]
            assert torch.equal(mine["masks"][own], theirs["masks"][layers])
        assert torch.equal(mine["scalars"], theirs["scalars"])
    cat_table = (out / "category.csv").read_text().splitlines()
    assert cat_table[0] == "name,first,last,count,frequency"
    assert (out / "c_part.csv").exists() and (out / "c_scene.csv").exists()


def test_part_parents_derived_by_containment(tmp_path):
    root = _fixture(tmp_path / "b")
    plain = BrodenDataset(str(root))
    assert plain.part_parents is None  # Broden has no parent field
    ds = BrodenDataset(str(root), derive_parents=True)
    pairs = {(int(p), int(o)) for p, o in ds.part_parents[["part_id", "object_id"]].itertuples(
        index=False)}
    assert pairs == {(3, 2), (4, 2), (7, 2)}  # wheel, window, hub: all inside the car
    assert bool(ds.part_parents["derived"].all())
    # on the parts world the derived relation is contained in the true one
    parts = PartsDataset(split="val", image_size=32, size=40, seed=1)
    derived = derive_part_parents(parts)
    truth = {(int(p), int(o)) for p, o in parts.part_parents.itertuples(index=False)}
    found = {(int(p), int(o)) for p, o in derived[["part_id", "object_id"]].itertuples(
        index=False)}
    assert found and found <= truth


def test_broden_set_without_image_level_labels_dissects(tmp_path):
    """No scene/texture entries in any row: no scalar slots. Pass 2 used to fail with
    ``IndexError: index 0 is out of bounds`` in ``_zero_repeats_``."""
    from torch import nn

    import probe

    rows = ["a.png,train,6,6,3,3,a_color.png,a_object.png,a_part_1.png;a_part_2.png,,,",
            "b.png,val,6,6,3,3,,b_object.png,b_part_1.png,,,"]
    ds = BrodenDataset(str(_fixture(tmp_path / "b", rows)))
    assert ds.scalar_categories == () and ds[0]["scalars"].shape == (0,)
    conv = nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    tables = probe.measure(nn.Sequential(conv), ds, [("dissection", {"quantile": 0.2,
                                                                     "top_labels": 8})],
                           layers=["0"], batch_size=2, device="cpu")["dissection"]
    labels = tables["labels"]
    assert len(tables["units"]) == 2 and len(labels) > 0
    assert (labels["intersection"] <= labels["activation"]).all()
    assert labels["truth"].max() > 0


def test_primary_category_from_coverage_files_as_netdissect_lite(tmp_path):
    root = _fixture(tmp_path / "b")
    # wheel: label.csv counts say part (2 images against 1); c_*.csv coverage says object
    (root / "c_object.csv").write_text("code,number,name,frequency,coverage\n"
                                       "1,2,car,2,0.5\n2,3,wheel,1,0.5\n")
    (root / "c_part.csv").write_text("code,number,name,frequency,coverage\n"
                                     "1,3,wheel,2,0.2\n2,4,window,1,0.2\n3,7,hub,1,0.1\n")
    counted = dict(BrodenDataset(str(root)).concepts[["id", "category"]].values)
    covered = dict(BrodenDataset(str(root), primary="coverage").concepts[["id", "category"]]
                   .values)
    assert counted[3] == "part" and covered[3] == "object"
    assert covered[2] == "object" and covered[4] == "part" and covered[5] == "scene"
    # a tie in coverage goes to the later category of category.csv (Lite's max over (cov, i))
    (root / "c_part.csv").write_text("code,number,name,frequency,coverage\n1,3,wheel,2,0.5\n")
    tied = dict(BrodenDataset(str(root), primary="coverage").concepts[["id", "category"]]
                .values)
    assert tied[3] == "part"


def test_export_writes_fixed_point_coverage(tmp_path):
    parts = PartsDataset(split="val", image_size=32, mask_size=16, size=6, seed=3)
    out = export_broden(parts, tmp_path / "exported")
    for name in ("label.csv", "c_part.csv", "c_object.csv"):
        text = (out / name).read_text()
        assert "e-" not in text and "E-" not in text  # NetDissect-Lite reads 1e-05 as text
