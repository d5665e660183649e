"""A run directory never reads as more than it is: bad folders, damaged files, NaNs,
empty data, data errors — each one clear line, and the run marked for what it is."""

import pytest
import torch
from torch import nn

import probe
from probe.cli import main


def _run(out, *extra):
    return main(["run", "--arch", "lenet5", "--dataset", "digits", "--set", "dataset.size=8",
                 "--analysis", "unit-stats", "--out", str(out), "--quiet", *extra])


def _one_line(capsys, *needles):
    err = capsys.readouterr().err
    assert err.startswith("probe: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert _run(tmp_path / "f") == 2
    _one_line(capsys, "is a file")


@pytest.mark.parametrize(("text", "needle"), [("{broken", "not valid JSON"),
                                              ("[1, 2]", "not a probe manifest")])
def test_a_corrupt_manifest_is_one_line_for_run_report_and_load_run(tmp_path, capsys, text,
                                                                    needle):
    out = tmp_path / "r"
    out.mkdir()
    (out / "manifest.json").write_text(text)
    assert _run(out) == 2
    _one_line(capsys, needle)
    with pytest.raises(probe.ProbeError, match=needle):
        probe.load_run(out)
    assert main(["report", str(out), "-o", str(tmp_path / "report.html")]) == 2
    _one_line(capsys, needle)


def test_an_unwritable_location_is_one_line(tmp_path, capsys):
    """A folder that cannot be made (its parent is a file; the same path as a read-only
    file system, which root in CI cannot be given)."""
    (tmp_path / "f").write_text("x")
    assert _run(tmp_path / "f" / "r") == 2
    _one_line(capsys, "cannot write run directory")


def test_a_truncated_table_is_one_line(tmp_path, capsys):
    run = probe.analyze("lenet5", "digits", ["unit-stats"], out=tmp_path / "r",
                        dataset_options={"size": 8})
    table = run.path / "unit-stats" / "units.parquet"
    table.write_bytes(table.read_bytes()[:100])
    with pytest.raises(probe.ProbeError, match=r"unit-stats/units .* damaged or truncated"):
        probe.load_run(run.path).table("unit-stats", "units")
    assert main(["report", str(run.path), "-o", str(tmp_path / "report.html")]) in (1, 2)
    assert "Traceback" not in capsys.readouterr().err


class _Exploding(nn.Module):
    """A convolution whose output overflows to inf on every image."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        with torch.no_grad():
            self.conv.weight.fill_(3e38)

    def forward(self, x):
        return self.conv(x + 1.0)


def test_non_finite_activations_fail_the_run_instead_of_nan_tables(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(probe.ProbeError, match=r"non-finite activations .* conv \(\d+ values\)"):
        probe.analyze(_Exploding(), "digits", ["unit-stats"], out=out,
                      dataset_options={"size": 8})
    run = probe.load_run(out)
    assert run.status == "failed"
    assert run.analysis_status("unit-stats") == "failed"
    assert not (out / "unit-stats" / "units.parquet").exists()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_non_finite_count_is_exact(dtype):
    """NaN, +inf and -inf count; -0.0, the largest finite value and zeros do not."""
    from probe.fit_checks import count_non_finite

    values = torch.zeros((3, 4, 5), dtype=dtype)
    values[0, 0, 0], values[1, 2, 3], values[2, 3, 4] = float("nan"), float("inf"), -float("inf")
    values[0, 1, 1], values[0, 2, 2] = -0.0, torch.finfo(dtype).max
    values[1, 0, 0] = -torch.finfo(dtype).max
    assert int(count_non_finite(values)) == 3
    assert int(count_non_finite(values[1:2, :2])) == 0
    assert int(count_non_finite(torch.arange(6))) == 0  # integer maps are always finite
    # finite entries whose sum overflows to inf count 0; one NaN among them counts 1
    big = torch.full((2, 8), torch.finfo(dtype).max, dtype=dtype)
    assert not torch.isfinite(big.sum()) and int(count_non_finite(big)) == 0
    big[1] = -torch.finfo(dtype).max
    big[1, 0] = float("nan")
    assert int(count_non_finite(big)) == 1


def test_an_empty_data_set_is_one_line(tmp_path, capsys):
    folder = tmp_path / "images"
    (folder / "cat").mkdir(parents=True)
    code = main(["run", "--arch", "alexnet_small", "--dataset", "folder", "--set",
                 f"dataset.path={folder}", "--analysis", "unit-stats", "--out",
                 str(tmp_path / "r"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "probe: error: " in err and "Traceback" not in err
    assert "empty" in err or "no images" in err


def test_a_data_error_in_a_worker_is_one_line(tmp_path, capsys):
    """Image 1 is corrupt: the dry forward (image 0) and the manifest's fingerprint
    (evenly spaced images, not 1) pass, so the error comes from the data loop itself."""
    from PIL import Image

    folder = tmp_path / "images"
    (folder / "cat").mkdir(parents=True)
    for i in range(20):
        Image.new("RGB", (16, 16), (i * 10, 0, 0)).save(folder / "cat" / f"{i:02d}.png")
    (folder / "cat" / "01.png").write_bytes(b"not an image")
    for workers in ("0", "1"):
        code = main(["run", "--arch", "alexnet_small", "--dataset", "folder", "--set",
                     f"dataset.path={folder}", "--set", "dataset.image_size=64",
                     "--analysis", "unit-stats", "--out", str(tmp_path / f"r{workers}"),
                     "--workers", workers, "--batch-size", "4", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.count("\n") == 1 and "01.png" in err, err
        assert "Original Traceback" not in err and "Traceback" not in err
        assert probe.load_run(tmp_path / f"r{workers}").status == "failed"


def test_the_manifest_records_an_absolute_data_path_and_a_fingerprint(tmp_path, monkeypatch):
    from PIL import Image

    folder = tmp_path / "images" / "cat"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 60, 0, 0)).save(folder / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    run = probe.analyze("alexnet_small", "folder", ["unit-stats"], out="r",
                        dataset_options={"path": "images", "image_size": 64})
    recorded = run.manifest["dataset"]
    assert recorded["options"]["path"] == str((tmp_path / "images").resolve())
    assert len(recorded["fingerprint"]) == 64
    again = probe.analyze("alexnet_small", "folder", ["unit-stats"], out="r2",
                          dataset_options={"path": "images", "image_size": 64})
    assert again.manifest["dataset"]["fingerprint"] == recorded["fingerprint"]


def test_versions_list_only_plugins_that_loaded(tmp_path, monkeypatch):
    from probe.host import PluginInfo, get_host

    host = get_host()
    monkeypatch.setitem(host.plugins, "broken-one", PluginInfo(
        "broken-one", "9.9", "entry-point", "broken_one", error="ImportError: nope"))
    monkeypatch.setitem(host.plugins, "fine-one", PluginInfo(
        "fine-one", "1.0", "entry-point", "fine_one"))
    run = probe.analyze("lenet5", "digits", ["unit-stats"], out=tmp_path / "r",
                        dataset_options={"size": 8})
    versions = run.manifest["versions"]
    assert versions.get("plugin:fine-one") == "1.0"
    assert "plugin:broken-one" not in versions


def test_a_writer_killed_before_its_first_manifest_leaves_a_folder_that_runs_again(tmp_path,
                                                                                   capsys):
    """Killed between creating the folder and renaming its first manifest into place, a run
    leaves its lock and a temporary manifest: the next run there starts, other files stop it."""
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("")
    (out / ".manifest.json.k3j2.tmp").write_text('{"half": ')
    assert _run(out) == 0
    assert (out / "manifest.json").is_file()
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    capsys.readouterr()  # the run's own summary
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert _run(other) == 2
    _one_line(capsys, "is not a probe run")
    assert (other / "notes.txt").read_text() == "mine"
