"""The command line: listings, one-line errors, run files, summaries, start-up imports."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import probe
from probe.cli import main
from probe.commands._run_summary import format_summary
from probe.commands.train import summary_line


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
                           "--set", "arch.activation=relu", "--quiet", "--json")
    assert code == 0
    summary = json.loads(out)
    sidecar = json.loads((tmp_path / "m.json").read_text())
    assert sidecar["options"]["activation"] == "relu" and sidecar["recipe"]["lr"] == 0.003
    assert summary["metrics"] == sidecar["metrics"] and 0.1 < summary["metrics"]["accuracy"] <= 1
    # The checkpoint remembers its options: loading needs no --set.
    model = probe.load_model("lenet5", checkpoint=tmp_path / "m.safetensors")
    assert type(model.act1).__name__ == "ReLU"


def test_train_ends_with_one_readable_line():
    record = {"arch": "lenet5", "dataset": {"name": "digits"}, "recipe": {"epochs": 5},
              "metrics": {"accuracy": 0.9712}, "train_seconds": 42.2}
    assert summary_line(record, Path("ckpt/lenet5.safetensors"), Path("ckpt/lenet5.json")) == (
        "trained lenet5 on digits: 5 epochs, test accuracy 97.1 %, 42 s → "
        "ckpt/lenet5.safetensors (+ lenet5.json sidecar)")
    segmentation = {"arch": "deconvnet", "dataset": {"name": "parts"}, "recipe": {"epochs": 1},
                    "metrics": {"mean_iou": 0.7271, "pixel_accuracy": 0.943},
                    "train_seconds": 131.0, "init": {"checkpoint": "vgg.safetensors"}}
    assert summary_line(segmentation, Path("d.safetensors"), Path("d.json")) == (
        "trained deconvnet on parts: 1 epoch, from vgg.safetensors, test mean IoU 0.727, "
        "pixel accuracy 94.3 %, 2 min 11 s → d.safetensors (+ d.json sidecar)")


# -- one item in full: probe analyses NAME (and datasets, architectures) ------------------
def test_analysis_in_full(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")  # the text wraps to the terminal
    code, out, _ = run_cli(capsys, "analyses", "dissection")
    assert code == 0
    assert out.startswith("dissection: Network Dissection")
    for needle in ("passes     2 over the data", "requires   masks", "gradients  no",
                   "tables (RUN/dissection/TABLE.parquet; columns)", "options (--set dissection.",
                   "NAME", "TYPE", "DEFAULT"):
        assert needle in out, needle
    units = next(line for line in out.splitlines() if line.strip().startswith("units "))
    assert "layer, unit, label" in units
    rule = next(line for line in out.splitlines() if line.strip().startswith("rule "))
    assert rule.split()[:3] == ["rule", "str", "paper"] and "one of paper, lite" in rule
    quantile = next(line for line in out.splitlines() if line.strip().startswith("quantile "))
    assert quantile.split()[:3] == ["quantile", "float", "0.005"] and "[1e-06 to" in quantile
    code, out, _ = run_cli(capsys, "analyses", "unit-stats", "--json")
    item = json.loads(out)
    assert item["name"] == "unit-stats" and item["tables"]["units"][:2] == ["layer", "unit"]


@pytest.mark.parametrize(("kind", "name", "needles"), [
    ("datasets", "digits", ["digits: scikit-learn", "masks   no",
                            "options (--set dataset.OPTION=VALUE)", "one of train, test, all"]),
    ("architectures", "lenet5", ["lenet5: ", "task", "classification", "c1, s2, c3",
                                 "options (--set arch.OPTION=VALUE)", "training recipe"]),
])
def test_dataset_and_architecture_in_full(capsys, kind, name, needles):
    code, out, _ = run_cli(capsys, kind, name)
    assert code == 0
    for needle in needles:
        assert needle in out, needle


@pytest.mark.parametrize(("args", "message"), [
    (["analyses", "unit-stat"],
     "unknown analysis 'unit-stat'; known analyses: attribution, compositional, concept-vectors, "
     "dissection, "),
    (["datasets", "digit"], "unknown dataset 'digit'; known datasets: "),
    (["architectures", "lenet"], "unknown architecture 'lenet'; known architectures: "),
    (["run", "--batch-size", "x"], "argument --batch-size: invalid int value: 'x' (see `probe "
                                   "run --help`)"),
    (["bogus"], "invalid choice: 'bogus'"),
    ([], "the following arguments are required: COMMAND (see `probe --help`)"),
    (["train"], "the following arguments are required: arch, --out"),
])
def test_unknown_names_and_bad_arguments_are_one_line(capsys, args, message):
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and not out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("probe: error: ") and message in lines[0], err


# -- probe run: the summary -----------------------------------------------------------------
def test_run_ends_with_a_summary_and_the_next_commands(capsys, tmp_path):
    out = tmp_path / "run"
    args = ("run", "--arch", "lenet5", "--dataset", "digits", "--set", "dataset.size=20",
            "--analysis", "unit-stats", "--out", str(out), "--quiet")
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0
    assert stdout == f"{out}: complete\n"  # the machine-readable line stays as it was
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"{out}: complete in ") and "(lenet5 on digits, 20 images" in \
        lines[0]
    assert lines[1].split()[:2] == ["unit-stats", "complete"]
    assert "top_images 2,064 rows" in lines[1] and "units 258 rows" in lines[1]
    assert lines[-3:] == ["next:", f"  probe dash {out}", f"  probe report {out} -o report.html"]
    code, stdout, err = run_cli(capsys, *args, "--json")
    record = json.loads(stdout)
    assert record["status"] == "skipped" and record["run_status"] == "complete"
    assert record["analyses"]["unit-stats"]["tables"] == {"top_images": 2064, "units": 258}


def test_a_failed_analysis_shows_its_error_line():
    record = {"run": "runs/x", "status": "partial", "seconds": 3.25, "arch": "lenet5",
              "dataset": "digits", "images": 10, "device": "cpu",
              "analyses": {"unit-stats": {"status": "complete", "seconds": 1.0,
                                          "tables": {"units": 1}, "error": None},
                           "broken": {"status": "failed", "seconds": 0.1, "tables": {},
                                      "error": "RuntimeError: deliberate failure"}}}
    lines = format_summary(record).splitlines()
    assert lines[0] == "runs/x: partial in 3.2 s (lenet5 on digits, 10 images, cpu)"
    assert lines[1].split() == ["unit-stats", "complete", "1.0", "s", "units", "1", "row"]
    assert lines[2].split()[:4] == ["broken", "failed", "0.1", "s"]
    assert lines[2].endswith("RuntimeError: deliberate failure")


# -- start-up: the command line loads no heavy library it does not need -------------------
def test_help_and_argument_errors_import_no_torch_pandas_or_dashboard():
    code = """
import contextlib, io, sys
from probe.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    codes = [main(["--help"]), main(["run", "--help"]), main(["run", "--batch-size", "x"]),
             main(["run"]), main(["bogus"])]
heavy = sorted(m for m in ("torch", "pandas", "pyarrow", "numpy", "plotly", "dash", "flask")
               if m in sys.modules)
print(codes, heavy)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "[0, 0, 2, 2, 2] []", done.stdout + done.stderr


def test_listing_plugins_analyses_and_datasets_imports_no_torchvision():
    # torchvision (seconds to import) is needed only once a VGG or deformable model is
    # built (`probe architectures` builds each model to list its layers)
    code = """
import contextlib, io, sys
from probe.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
    codes = [main(["plugins"]), main(["analyses"]), main(["datasets"])]
print(codes, "deformable" in out.getvalue(), "torchvision" in sys.modules)
from probe.models import get_architecture
get_architecture("deform_vgg11").instantiate({"num_classes": 3, "input_size": 32})
print("torchvision" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=True)
    assert done.stdout.split() == ["[0,", "0,", "0]", "True", "False", "True"], \
        done.stdout + done.stderr
