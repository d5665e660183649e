"""The command line: listings, one-line errors, run files."""

import json

import pytest

import probe
from probe.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("kind", ["plugins", "architectures", "datasets", "analyses"])
def test_listings_as_json(capsys, kind):
    code, out, _ = run_cli(capsys, kind, "--json")
    assert code == 0
    items = json.loads(out)
    names = {item["name"] for item in items}
    expected = {"plugins": "lenet", "architectures": "lenet5", "datasets": "digits",
                "analyses": "unit-stats"}[kind]
    assert expected in names


def test_architecture_listing_has_options_task_and_layers(capsys):
    _, out, _ = run_cli(capsys, "architectures", "--json")
    lenet = next(a for a in json.loads(out) if a["name"] == "lenet5")
    assert lenet["task"] == "classification"
    assert lenet["layers"] == ["c1", "s2", "c3", "s4", "c5", "f6", "output"]
    assert {o["name"] for o in lenet["options"]} >= {"num_classes", "activation", "c3_table"}


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--arch", "lenet6", "--dataset", "digits", "--analysis", "unit-stats", "--out", "X"],
     "unknown architecture 'lenet6'; known architectures: "),
    (["run", "--arch", "lenet5", "--dataset", "digits", "--analysis", "unit-stat", "--out", "X"],
     "unknown analysis 'unit-stat'; known analyses: "),
    (["run", "--arch", "lenet5", "--dataset", "digits", "--analysis", "unit-stats", "--out", "X",
      "--set", "unit-stats.top_k=many"], "analysis unit-stats.top_k must be int, got 'many'"),
    (["run", "--arch", "lenet5", "--dataset", "digits", "--analysis", "unit-stats", "--out", "X",
      "--set", "arch.depth=3"], "arch lenet5 has no option 'depth'; known options: "),
    (["run", "--arch", "lenet5", "--dataset", "digits", "--analysis", "unit-stats", "--out", "X",
      "--checkpoint", "missing.safetensors"], "checkpoint file not found: missing.safetensors"),
    (["run", "--arch", "lenet5", "--dataset", "digits", "--analysis", "unit-stats", "--out", "X",
      "--layers", "c9"], "architecture lenet5 has no layer 'c9'; its layers are: c1, s2"),
    (["run", "--arch", "lenet5", "--dataset", "digits", "--analysis", "unit-stats", "--out", "X",
      "--set", "other.x=1"], "'other' is neither 'arch', 'dataset' nor an analysis"),
    (["run", "--arch", "lenet5", "--out", "X"], "at least one --analysis"),
    (["run", "missing.toml"], "run file not found: missing.toml"),
    (["train", "lenet5", "--out", "model.pt"], "--out must end in .safetensors"),
    (["run", "--arch", "lenet5", "--dataset", "digits", "--analysis", "unit-stats", "--out", "X",
      "--device", "cuda:7"], "device 'cuda:7'"),
])
def test_user_mistakes_are_one_line_and_exit_2(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("probe: error: ")
    assert message in lines[0]
    assert not (tmp_path / "X").exists()


def test_run_file_with_several_runs(capsys, tmp_path, lenet_checkpoint):
    (tmp_path / "runs.toml").write_text(f"""
[defaults]
dataset = "digits"
checkpoint = "{lenet_checkpoint}"
analysis = ["unit-stats"]
set = {{ "dataset.size" = 50, "unit-stats.top_k" = 3 }}

[[run]]
arch = "lenet5"
out = "runs/a"
layers = "c1,c3"

[[run]]
arch = "lenet5"
out = "runs/b"
set = {{ "dataset.size" = 30, "unit-stats.top_k" = 2 }}
""")
    code, _, err = run_cli(capsys, "run", str(tmp_path / "runs.toml"), "--quiet")
    assert code == 0, err
    a, b = probe.load_run(tmp_path / "runs/a"), probe.load_run(tmp_path / "runs/b")
    assert a.manifest["layers"] == ["c1", "c3"] and a.manifest["dataset"]["size"] == 50
    assert set(a.table("unit-stats", "top_images")["rank"]) == {0, 1, 2}
    assert b.manifest["dataset"]["size"] == 30
    assert set(b.table("unit-stats", "top_images")["rank"]) == {0, 1}


def test_train_command_writes_checkpoint_and_sidecar(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "train", "lenet5", "--out", str(tmp_path / "m.safetensors"),
                           "--epochs", "1", "--set", "train.lr=0.003",
                           "--set", "arch.activation=relu", "--quiet")
    assert code == 0
    summary = json.loads(out)
    sidecar = json.loads((tmp_path / "m.json").read_text())
    assert sidecar["options"]["activation"] == "relu" and sidecar["recipe"]["lr"] == 0.003
    assert summary["metrics"] == sidecar["metrics"] and 0.1 < summary["metrics"]["accuracy"] <= 1
    # The checkpoint remembers its options: loading needs no --set.
    model = probe.load_model("lenet5", checkpoint=tmp_path / "m.safetensors")
    assert type(model.act1).__name__ == "ReLU"
