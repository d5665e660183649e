import pytest
import torch
from torch import nn

from probe.checkpoint import load_state_dict, load_weights, read_metadata, save_checkpoint
from probe.errors import CheckpointError


def test_safetensors_round_trip_with_metadata(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    path = save_checkpoint(model, tmp_path / "m.safetensors", "toy", {"width": 0.5})
    assert read_metadata(path) == {"arch": "toy", "options": {"width": 0.5}}
    other = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    load_weights(other, path)
    x = torch.randn(1, 1, 5, 5)
    assert torch.equal(model(x), other(x))


def test_torch_files_load_weights_only(tmp_path):
    model = nn.Linear(2, 2)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    assert set(load_state_dict(tmp_path / "sd.pt")) == {"weight", "bias"}

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"weight": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"cannot load checkpoint .* safely"):
        load_state_dict(tmp_path / "evil.pt")


def test_mismatch_is_one_clear_error(tmp_path):
    path = save_checkpoint(nn.Linear(3, 2), tmp_path / "a.safetensors", "toy", {})
    with pytest.raises(CheckpointError, match=r"weight has shape \(2, 3\), the model expects"):
        load_weights(nn.Linear(4, 2), path)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_weights(nn.Sequential(nn.Linear(3, 2)), path)
    with pytest.raises(CheckpointError, match="not found"):
        load_state_dict(tmp_path / "nope.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_state_dict(tmp_path / "junk.safetensors")
