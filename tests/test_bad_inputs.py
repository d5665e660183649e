"""Bad input, met the way a user meets it: one ``probe: error: ...`` line, exit 2, no traceback.

Issue 14: damaged and non-finite checkpoints, an unwritable ``probe train --out``,
an empty Broden index, a model/data size mismatch with a checkpoint, ``probe
report -o`` naming a directory, wrong-type run-file values, a data error read
by a ``--workers`` process. (Plugins that call ``sys.exit`` are in
``test_bad_inputs_plugins.py``.)
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from probe.checkpoint import (
    check_writable,
    load_state_dict,
    load_weights,
    save_checkpoint,
    write_atomically,
)
from probe.cli import main
from probe.errors import CheckpointError, DataError, ProbeError


def run_cli(capsys, *args: str) -> tuple[int, str]:
    """Exit code and the stderr of ``probe ARGS`` run in this process."""
    code = main(list(args))
    _, err = capsys.readouterr()
    return code, err


def one_error_line(code: int, err: str) -> str:
    """The single ``probe: error:`` line of a failed command (asserting there is one)."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("probe: error: "), err
    return lines[0]


def lenet_checkpoint_file(path: Path, poison: float | None = None) -> Path:
    """An untrained LeNet-5 checkpoint (as ``probe train`` writes it, with preprocessing),
    optionally with ``poison`` (NaN or inf) in three values of ``c1.weight``."""
    from probe.models import build_model, get_architecture

    spec = get_architecture("lenet5")
    options = spec.resolve({})
    model = build_model(spec, options)
    if poison is not None:
        with torch.no_grad():
            model.c1.weight.view(-1)[:3] = poison
    preprocessing = {"mean": [0.5], "std": [0.25], "input_size": 32, "channels": 1}
    return save_checkpoint(model, path, "lenet5", options,
                           extra={"preprocessing": preprocessing})


# -- 1. damaged checkpoint files ------------------------------------------------------------

DAMAGED = {
    "empty": b"",
    "text": b"this is not a checkpoint\n",
    "one-byte": b"x",
    "one-byte-pickle-opcode": b"\x80",
    "truncated-zip": b"PK\x03\x04" + b"\x00" * 20,
}


@pytest.mark.parametrize("content", DAMAGED.values(), ids=DAMAGED.keys())
def test_damaged_pt_file_is_one_error_naming_it(tmp_path, content):
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"weights\.pt") as info:
        load_state_dict(path)
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match=r"weights\.pt"):
        load_weights(nn.Linear(2, 2), path)


@pytest.mark.parametrize("content", [b"", b"x", b"\x08\x00\x00\x00\x00\x00\x00\x00{"])
def test_damaged_safetensors_file_is_one_error_naming_it(tmp_path, content):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"weights\.safetensors") as info:
        load_state_dict(path)
    assert "\n" not in str(info.value)


def test_empty_file_says_it_is_empty(tmp_path):
    (tmp_path / "e.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"e\.pt is empty \(0 bytes\)"):
        load_state_dict(tmp_path / "e.pt")


def test_safe_loading_still_loads_both_torch_formats_and_refuses_objects(tmp_path):
    state = {"weight": torch.ones(2, 2), "bias": torch.zeros(2)}
    torch.save(state, tmp_path / "zip.pt")
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save({"state_dict": state, "epoch": torch.tensor(3)}, tmp_path / "wrapped.pt")
    for name in ("zip.pt", "legacy.pt", "wrapped.pt"):
        assert set(load_state_dict(tmp_path / name)) == {"weight", "bias"}

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"weight": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="holds Python objects other than tensors"):
        load_state_dict(tmp_path / "evil.pt")
    torch.save({"model": state, "step": 3}, tmp_path / "nested.pt")
    with pytest.raises(CheckpointError, match=r"entry 'model' is not a tensor"):
        load_state_dict(tmp_path / "nested.pt")


def test_damaged_checkpoint_through_run_and_train_init(capsys, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("hello world\n")
    line = one_error_line(*run_cli(capsys, "run", "--arch", "lenet5", "--dataset", "digits",
                                   "--analysis", "unit-stats", "--checkpoint", str(bad),
                                   "--set", "dataset.size=8", "--out", str(tmp_path / "r"),
                                   "--quiet"))
    assert str(bad) in line and "not a PyTorch file" in line
    (tmp_path / "empty.pt").write_bytes(b"")
    line = one_error_line(*run_cli(capsys, "train", "lenet5", "--init",
                                   str(tmp_path / "empty.pt"), "--epochs", "1",
                                   "--set", "dataset.size=16",
                                   "--out", str(tmp_path / "m.safetensors"), "--quiet"))
    assert "empty.pt is empty" in line
    assert not (tmp_path / "m.safetensors").exists()


# -- 2. non-finite weights --------------------------------------------------------------------

@pytest.mark.parametrize("poison", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_at_load(tmp_path, poison):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 1))
    with torch.no_grad():
        model[2].weight.view(-1)[:3] = poison
    path = save_checkpoint(model, tmp_path / "m.safetensors", "toy", {})
    with pytest.raises(CheckpointError, match=r"m\.safetensors: tensor 2\.weight has 3 "
                                              r"non-finite values \(NaN or inf\)"):
        load_weights(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 1)), path)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"m\.pt: tensor 2\.weight has 3 non-finite"):
        load_state_dict(tmp_path / "m.pt")


def test_integer_buffers_are_not_checked_and_finite_models_load(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    path = save_checkpoint(model, tmp_path / "m.safetensors", "toy", {})
    load_weights(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)), path)


def test_non_finite_checkpoint_fails_the_run_before_any_table(capsys, tmp_path):
    path = lenet_checkpoint_file(tmp_path / "nan.safetensors", poison=float("nan"))
    out = tmp_path / "run"
    line = one_error_line(*run_cli(capsys, "run", "--arch", "lenet5", "--dataset", "digits",
                                   "--analysis", "unit-stats", "--checkpoint", str(path),
                                   "--set", "dataset.size=8", "--out", str(out), "--quiet"))
    assert f"checkpoint {path}: tensor c1.weight has 3 non-finite values" in line
    assert not list(out.rglob("*.parquet"))


# -- 3. probe train checks its destination before it learns -----------------------------------

@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if ``probe train`` loads data or takes a step."""
    import probe.training

    def forbidden(*args, **kwargs):
        raise AssertionError("train loaded data or trained before checking --out")

    monkeypatch.setattr(probe.training, "load_dataset", forbidden)
    monkeypatch.setattr(probe.training, "_train", forbidden)


def test_train_out_naming_a_directory_fails_before_training(capsys, tmp_path, no_training):
    out = tmp_path / "model.safetensors"
    out.mkdir()
    line = one_error_line(*run_cli(capsys, "train", "lenet5", "--out", str(out), "--quiet"))
    assert f"cannot write checkpoint {out}: it is a directory" in line


def test_train_out_under_a_file_fails_before_training(capsys, tmp_path, no_training):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "sub" / "model.safetensors"
    line = one_error_line(*run_cli(capsys, "train", "lenet5", "--out", str(out), "--quiet"))
    assert f"cannot write checkpoint {out}: {tmp_path / 'file'} is not a folder" in line


def test_train_sidecar_in_the_way_fails_before_training(capsys, tmp_path, no_training):
    (tmp_path / "model.json").mkdir()
    line = one_error_line(*run_cli(capsys, "train", "lenet5", "--out",
                                   str(tmp_path / "model.safetensors"), "--quiet"))
    assert f"cannot write checkpoint sidecar {tmp_path / 'model.json'}: it is a directory" in line


def test_train_out_in_a_read_only_folder_fails_before_training(capsys, tmp_path, no_training,
                                                               monkeypatch):
    """A read-only file system, as root in CI cannot be given one: creating a file there
    fails with EROFS."""
    import errno
    import tempfile

    folder = tmp_path / "ro"
    folder.mkdir()

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == folder:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*args, dir=dir, **kwargs)

    real = tempfile.mkstemp
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    line = one_error_line(*run_cli(capsys, "train", "lenet5", "--out",
                                   str(folder / "new" / "m.safetensors"), "--quiet"))
    assert f"folder {folder} is not writable (Read-only file system)" in line


def test_train_api_checks_too(tmp_path, no_training):
    from probe.training import train

    with pytest.raises(ProbeError, match=r"must end in \.safetensors"):
        train("lenet5", tmp_path / "m.pt")
    (tmp_path / "d.safetensors").mkdir()
    with pytest.raises(ProbeError, match="is a directory"):
        train("lenet5", tmp_path / "d.safetensors")
    with pytest.raises(ProbeError, match="--init checkpoint file not found"):
        train("lenet5", tmp_path / "m.safetensors", init=tmp_path / "missing.pt")


def test_check_writable_leaves_nothing_and_accepts_new_folders(tmp_path):
    check_writable(tmp_path / "a" / "b" / "m.safetensors")
    check_writable(tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    import probe.checkpoint

    target = tmp_path / "m.safetensors"
    save_checkpoint(nn.Linear(2, 2), target, "toy", {})
    before = target.read_bytes()

    def broken_save(state, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(probe.checkpoint, "save_file", broken_save)
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*m\.safetensors: "
                                              r"No space left on device"):
        save_checkpoint(nn.Linear(2, 2), target, "toy", {})
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_checkpoint_onto_a_directory_is_one_error_and_leaves_no_temp(tmp_path):
    (tmp_path / "m.safetensors").mkdir()
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*m\.safetensors"):
        save_checkpoint(nn.Linear(2, 2), tmp_path / "m.safetensors", "toy", {})
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_sidecar_writes_are_atomic(tmp_path):
    target = tmp_path / "m.json"
    target.write_text('{"old": true}')

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text('{"new": ')
        raise OSError(5, "Input/output error")

    with pytest.raises(CheckpointError, match=r"cannot write checkpoint sidecar .*m\.json"):
        write_atomically(target, half_then_fail, what="checkpoint sidecar")
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_training_writes_checkpoint_and_sidecar_without_temp_files(tmp_path):
    from probe.training import train

    out = tmp_path / "ck" / "m.safetensors"
    train("lenet5", out, epochs=1, dataset_options={"size": 32}, progress=False)
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.json", "m.safetensors"]
    assert json.loads((out.parent / "m.json").read_text())["arch"] == "lenet5"
    assert (out.stat().st_mode & 0o777) == (0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- 4. an empty Broden index -------------------------------------------------------------------

BRODEN_LABELS = "number,name,category,frequency,coverage,syns\n1,car,object(1),1,0.5,\n"
BRODEN_HEADER = "image,split,ih,iw,sh,sw,color,object,part,material,scene,texture\n"


def _broden(root: Path, index: str) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "label.csv").write_text(BRODEN_LABELS)
    (root / "index.csv").write_text(index)
    return root


def test_header_only_broden_index_is_reported_empty(tmp_path):
    from probe.plugins.datasets.broden import BrodenDataset

    root = _broden(tmp_path / "b", BRODEN_HEADER)
    with pytest.raises(DataError, match=r"index\.csv: the data set is empty \(a header row "
                                        r"and no image rows\)"):
        BrodenDataset(str(root))


def test_header_only_broden_index_through_dissection(capsys, tmp_path):
    root = _broden(tmp_path / "b", BRODEN_HEADER)
    line = one_error_line(*run_cli(capsys, "run", "--arch", "lenet5", "--dataset", "broden",
                                   "--set", f"dataset.path={root}", "--analysis", "dissection",
                                   "--out", str(tmp_path / "r"), "--quiet"))
    assert "the data set is empty" in line and "masks" not in line


def test_empty_broden_csv_files_name_the_file(tmp_path):
    from probe.plugins.datasets.broden import BrodenDataset

    root = _broden(tmp_path / "b", "")
    with pytest.raises(DataError, match=r"index\.csv: the file is empty"):
        BrodenDataset(str(root))
    (root / "index.csv").write_text(BRODEN_HEADER + "a.png,train,6,6,3,3,,,,,,\n")
    (root / "label.csv").write_text("")
    with pytest.raises(DataError, match=r"label\.csv: the file is empty"):
        BrodenDataset(str(root))


# -- 5. model/data size mismatch with a checkpoint ----------------------------------------------

@pytest.mark.parametrize("size", [8, 16])
def test_checkpoint_and_data_of_other_sizes_is_one_line(capsys, tmp_path, size):
    path = lenet_checkpoint_file(tmp_path / "lenet.safetensors")
    line = one_error_line(*run_cli(capsys, "run", "--arch", "lenet5", "--dataset", "digits",
                                   "--analysis", "unit-stats", "--checkpoint", str(path),
                                   "--set", f"dataset.image_size={size}",
                                   "--set", "dataset.size=8",
                                   "--out", str(tmp_path / "r"), "--quiet"))
    assert "lenet5 takes 32×32 inputs" in line and f"1×{size}×{size}" in line
    assert "dataset.image_size=32" in line

def test_training_on_data_the_model_does_not_take_is_one_line(capsys, tmp_path):
    line = one_error_line(*run_cli(capsys, "train", "lenet5", "--set", "dataset.image_size=16",
                                   "--set", "arch.input_size=32", "--set", "dataset.size=16",
                                   "--epochs", "1", "--out", str(tmp_path / "m.safetensors"),
                                   "--quiet"))
    assert "arch lenet5 does not fit dataset digits (one 1×16×16 training image" in line
    assert not (tmp_path / "m.safetensors").exists()

# -- 6. probe report -o naming a directory ------------------------------------------------------

def test_report_out_naming_a_directory_is_one_line(capsys, tmp_path):
    (tmp_path / "run").mkdir()
    line = one_error_line(*run_cli(capsys, "report", str(tmp_path / "run"),
                                   "-o", str(tmp_path)))
    assert f"cannot write report {tmp_path}: it is a directory" in line


def test_build_report_checks_its_destination_before_rendering(tmp_path, monkeypatch):
    import probe.report.html

    def forbidden(*args, **kwargs):
        raise AssertionError("rendered before checking the destination")

    monkeypatch.setattr(probe.report.html, "render_report", forbidden)
    with pytest.raises(ProbeError, match=r"cannot write report .*: it is a directory"):
        probe.report.html.build_report([], tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ProbeError, match="is not a folder"):
        probe.report.html.build_report([], tmp_path / "file" / "report.html")


# -- 8. wrong-type values in a run file ----------------------------------------------------------

@pytest.mark.parametrize(("line", "key", "expected"), [
    ('batch_size = "big"', "batch_size", "must be an integer, got 'big' (a string)"),
    ("seed = [1]", "seed", "must be an integer, got [1] (a list); a list of values belongs "
                           "in a [[sweep]] table"),
    ("layers = 3", "layers", "must be a string or a list of strings, got 3 (an integer)"),
    ("workers = 1.5", "workers", "must be an integer, got 1.5 (a number)"),
    ("batch_size = true", "batch_size", "must be an integer, got True (a boolean)"),
    ('overwrite = "no"', "overwrite", "must be true or false, got 'no' (a string)"),
    ("analysis = 3", "analysis", "must be a string or a list of strings, got 3"),
    ("device = 0", "device", "must be a string such as"),
    ("set = 3", "set", "must be a table or a list"),
])
def test_wrong_type_run_file_value_names_key_and_file(capsys, tmp_path, line, key, expected):
    from probe.runfile import load_runfile

    base = {"arch": '"lenet5"', "dataset": '"digits"', "analysis": '["unit-stats"]',
            "out": '"r"'}
    base[key] = line.split(" = ", 1)[1]
    path = tmp_path / "runs.toml"
    path.write_text("".join(f"{k} = {v}\n" for k, v in base.items()))
    with pytest.raises(ProbeError) as info:
        load_runfile(path)
    assert str(info.value).startswith(f"{path}: key {key!r} {expected}"), str(info.value)
    cli = one_error_line(*run_cli(capsys, "run", str(path), "--quiet"))
    assert str(path) in cli and repr(key) in cli


def test_wrong_type_in_a_run_table_and_a_sweep_names_which(tmp_path):
    from probe.runfile import load_runfile

    path = tmp_path / "runs.toml"
    path.write_text('[defaults]\ndataset = "digits"\nanalysis = "unit-stats"\n\n'
                    '[[run]]\narch = "lenet5"\nout = "a"\n\n'
                    '[[run]]\narch = "lenet5"\nout = "b"\nbatch_size = "big"\n')
    where = re.escape(str(path))
    with pytest.raises(ProbeError, match=rf"^{where} run 2: key 'batch_size' must be an integer"):
        load_runfile(path)
    path.write_text('[[sweep]]\narch = "lenet5"\ndataset = "digits"\nanalysis = "unit-stats"\n'
                    'seed = [0, "one"]\nout = "r/{seed}"\n')
    with pytest.raises(ProbeError, match=rf"^{where} sweep 1 run 2: key 'seed' must be an "
                                         rf"integer, got 'one'"):
        load_runfile(path)


@pytest.mark.parametrize(("text", "message"), [
    ("defaults = 3\n", "'defaults' must be a table"),
    ("run = 3\n", "'run' must be an array of tables"),
    ('sweep = ["x"]\n', "'sweep' must be an array of tables"),
])
def test_run_file_sections_of_the_wrong_type(tmp_path, text, message):
    from probe.runfile import load_runfile

    path = tmp_path / "runs.toml"
    path.write_text(text)
    with pytest.raises(ProbeError, match=message):
        load_runfile(path)


def test_run_file_that_is_not_text(tmp_path):
    from probe.runfile import load_runfile

    path = tmp_path / "runs.toml"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ProbeError, match="not valid TOML: it is not UTF-8 text"):
        load_runfile(path)


@pytest.mark.parametrize(("value", "message"), [
    ("[1]", "key 'set' must be a table or a list of \"KEY=VALUE\" strings, got [1]"),
    ('["top_k"]', "key 'set': --set expects OWNER.OPTION=VALUE"),
])
def test_run_file_set_lists_name_the_file(tmp_path, value, message):
    from probe.runfile import load_runfile

    path = tmp_path / "runs.toml"
    path.write_text(f'arch = "lenet5"\nanalysis = "unit-stats"\nout = "r"\nset = {value}\n')
    with pytest.raises(ProbeError) as info:
        load_runfile(path)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)


# -- a data error read by a --workers process ------------------------------------------------

def test_corrupt_image_read_by_a_worker_is_one_line(capsys, tmp_path):
    root = tmp_path / "folder"
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                root / cls / f"{i}.png")
    # index 1: not among the images the plan reads in the main process for its fingerprint
    (root / "a" / "1.png").write_text("not an image")
    line = one_error_line(*run_cli(capsys, "run", "--arch", "lenet5", "--dataset", "folder",
                                   "--set", f"dataset.path={root}", "--set",
                                   "dataset.image_size=32", "--set", "arch.in_channels=3",
                                   "--analysis", "unit-stats", "--workers", "1",
                                   "--out", str(tmp_path / "r"), "--quiet"))
    assert "1.png: cannot read image" in line

