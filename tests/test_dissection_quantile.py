"""Dissection thresholds: exact top quantile == torch.quantile; the sketch within its bound."""

from __future__ import annotations

import pytest
import torch

from probe.plugins.analyses.dissection import top_values
from probe.plugins.analyses.dissection.quantile import (
    TopQuantile,
    float_keys,
    key_to_float,
    needed_top,
    quantile_from_top,
)

CPU = torch.device("cpu")


@pytest.fixture(params=["compiled", "vectorised"])
def buffer_path(request, monkeypatch):
    """Each test that takes it runs with the compiled heap and with the vectorised path."""
    monkeypatch.setattr(top_values, "ENABLED", request.param == "compiled")
    if request.param == "compiled":
        assert top_values.available()  # numba is a dependency: the compiled path must run
    return request.param


def sample(units: int, count: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    values = torch.randn((units, count), generator=gen).relu() * 3  # many exact ties at 0
    values[0, : count // 3] = 1.5  # a run of ties
    return values


@pytest.mark.parametrize("q", [0.005, 0.05, 0.37, 0.0001])
@pytest.mark.parametrize("count", [777, 3001])
def test_exact_threshold_equals_torch_quantile(q, count, buffer_path):
    values = sample(4, count, seed=count)
    state = TopQuantile(4, q, planned=count, cap=10_000, bits=7, device=CPU)
    for chunk in values.split(256, dim=1):
        state.update(chunk)
    thresholds, bound = state.result()
    assert state.method == "exact"
    assert torch.equal(thresholds, torch.quantile(values, 1 - q, dim=1))
    assert torch.equal(bound, torch.zeros(4))
    assert state.top.shape[1] == needed_top(count, q)


def test_quantile_from_top_matches_definition_by_hand():
    # N = 11, q = 0.25: rank = 0.75·10 = 7.5 → halfway between sorted[7] and sorted[8]
    values = torch.arange(11.0).view(1, -1)
    top = values.flip(1)
    assert float(quantile_from_top(top, 11, 0.25)) == pytest.approx(7.5)


def test_two_shards_merge_to_the_single_pass_result(buffer_path):
    values = sample(3, 2000, seed=1)
    whole = TopQuantile(3, 0.01, 2000, 10_000, 7, CPU)
    whole.update(values)
    left, right = (TopQuantile(3, 0.01, 2000, 10_000, 7, CPU) for _ in range(2))
    left.update(values[:, ::2])
    right.update(values[:, 1::2])
    left.merge(right)
    assert torch.equal(left.result()[0], whole.result()[0])


@pytest.mark.parametrize("bits", [4, 7])
def test_sketch_within_stated_bound(bits, buffer_path):
    values = sample(5, 20_000, seed=bits) + 0.01
    state = TopQuantile(5, 0.005, planned=20_000, cap=8, bits=bits, device=CPU)
    for chunk in values.split(3000, dim=1):
        state.update(chunk)
    assert state.method == "sketch"
    estimate, bound = state.result()
    exact = torch.quantile(values, 0.995, dim=1)
    assert ((estimate - exact).abs() <= bound).all()
    assert (bound <= 2.0**-bits * exact.abs() * 1.0001).all()
    assert (bound > 0).all()


def test_sketch_memory_does_not_grow_with_data():
    small = TopQuantile(64, 0.005, planned=10**6, cap=1000, bits=7, device=CPU)
    huge = TopQuantile(64, 0.005, planned=10**12, cap=1000, bits=7, device=CPU)
    assert small.memory_bytes() == huge.memory_bytes() == 64 * 8 * 2**16
    exact = TopQuantile(64, 0.005, planned=10**5, cap=1000, bits=7, device=CPU)
    assert exact.memory_bytes() == 64 * (4 + 12) * needed_top(10**5, 0.005)  # + pending


def test_unknown_size_keeps_buffer_and_sketch_and_picks_exact_when_it_fits(buffer_path):
    values = sample(2, 500, seed=9)
    state = TopQuantile(2, 0.01, planned=None, cap=100, bits=7, device=CPU)
    state.update(values)
    assert state.method == "exact"
    assert torch.equal(state.result()[0], torch.quantile(values, 0.99, dim=1))


def test_float_keys_preserve_order_and_invert():
    values = torch.tensor([-3.5, -1e-30, -0.0, 0.0, 1e-38, 2.0, 7.25])
    keys = float_keys(values)
    assert (keys[1:] >= keys[:-1]).all()
    assert torch.equal(key_to_float(keys.long()), values)


def test_bad_quantile_is_an_error():
    with pytest.raises(ValueError, match="quantile must be in"):
        TopQuantile(1, 1.5, 10, 10, 7, CPU)


@pytest.mark.parametrize("q", [0.005, 0.05, 0.3])
def test_streamed_maps_equal_torch_quantile_and_merge(q, buffer_path):
    """update_maps (floor filter + pending candidates + ragged merge) stays exact."""
    gen = torch.Generator().manual_seed(7)
    act = torch.randn((40, 3, 9, 9), generator=gen).relu()
    act[:, 2] = act[:, 2].round()  # many ties
    count = 40 * 81
    whole = TopQuantile(3, q, count, 10_000, 7, CPU)
    for batch in act.split(6):
        whole.update_maps(batch)
    expected = torch.quantile(act.transpose(0, 1).reshape(3, -1), 1 - q, dim=1)
    assert torch.equal(whole.result()[0], expected)
    left, right = (TopQuantile(3, q, count, 10_000, 7, CPU) for _ in range(2))
    for i, batch in enumerate(act.split(4)):
        (left if i % 2 else right).update_maps(batch)
    left.merge(right)
    assert torch.equal(left.result()[0], expected)
    strided = TopQuantile(3, q, count, 10_000, 7, CPU)  # channels_last maps: same thresholds
    for batch in act.split(6):
        strided.update_maps(batch.to(memory_format=torch.channels_last))
    assert torch.equal(strided.result()[0], expected)


def test_declared_state_reduces_through_probe_state_with_pending_candidates_settled(
        monkeypatch):
    """Buffer, sketch and count are declared tensors; ``settle`` flushes pending candidates
    (the vectorised path's: the compiled heap leaves none)."""
    from probe.state import combine, state_tensors

    monkeypatch.setattr(top_values, "ENABLED", False)

    gen = torch.Generator().manual_seed(3)
    act = torch.randn((40, 3, 9, 9), generator=gen).relu()
    count, q = 40 * 81, 0.3
    whole = TopQuantile(3, q, count, 10_000, 7, CPU)
    shards = [TopQuantile(3, q, count, 10_000, 7, CPU) for _ in range(2)]
    for i, batch in enumerate(act.split(4)):
        whole.update_maps(batch)
        shards[i % 2].update_maps(batch)
    assert [name for name, _ in state_tensors(shards[0])] == ["count", "top", "hist"]
    assert shards[0]._pending_count > 0  # not yet in the declared buffer
    merged = combine(shards, "merge")
    assert int(merged.count) == count and merged.count.dtype == torch.int64
    expected = torch.quantile(act.transpose(0, 1).reshape(3, -1), 1 - q, dim=1)
    assert torch.equal(merged.result()[0], expected)
    assert torch.equal(whole.result()[0], expected)
    shards[1].settle()
    assert shards[1]._pending_count == 0 and shards[1].top.shape == (3, needed_top(count, q))
    merged.release()
    assert merged.top.numel() == 0 and int(merged.count) == count


def test_sketch_state_is_summed_histogram_and_count():
    values = sample(2, 5000, seed=4) + 0.01
    parts = [TopQuantile(2, 0.005, 5000, 8, 7, CPU) for _ in range(2)]
    parts[0].update(values[:, :2000])
    parts[1].update(values[:, 2000:])
    assert parts[0].top.numel() == 0 and parts[0].hist.numel() == 2 * parts[0].buckets
    from probe.state import combine

    merged = combine(parts, "merge")
    whole = TopQuantile(2, 0.005, 5000, 8, 7, CPU)
    whole.update(values)
    assert torch.equal(merged.hist, whole.hist) and int(merged.count) == 5000
    assert torch.equal(merged.result()[0], whole.result()[0])


@pytest.mark.parametrize("order", ["ascending", "descending", "equal", "signed_zeros", "random"])
def test_compiled_buffer_keeps_the_vectorised_paths_top_values(order, monkeypatch):
    """The heap's buffer holds the same multiset as the vectorised path's, and the same
    thresholds as ``torch.quantile``, whatever order the values arrive in; batches
    smaller than the buffer fill it across calls."""
    gen = torch.Generator().manual_seed(11)
    units, batch, side = 3, 1, 6
    act = torch.randn((20, units, side, side), generator=gen).relu()
    if order == "ascending":
        act = torch.arange(act.numel(), dtype=torch.float32).view(act.shape) % 97
    elif order == "descending":
        act = -torch.arange(act.numel(), dtype=torch.float32).view(act.shape)
    elif order == "equal":
        act = torch.full(act.shape, 2.5)
    elif order == "signed_zeros":
        act = act.round() * torch.where(torch.rand(act.shape, generator=gen) < 0.5, -1.0, 1.0)
    count = act.shape[0] * side * side
    expected = torch.quantile(act.transpose(0, 1).reshape(units, -1), 0.9, dim=1)
    tops = {}
    for path in ("compiled", "vectorised"):
        monkeypatch.setattr(top_values, "ENABLED", path == "compiled")
        state = TopQuantile(units, 0.1, count, 10_000, 7, CPU)
        assert state.size > batch * side * side  # the first batches only fill the buffer
        for chunk in act.split(batch):
            state.update_maps(chunk)
        assert torch.equal(state.result()[0], expected)
        tops[path] = state.top.sort(dim=1).values
    assert torch.equal(tops["compiled"], tops["vectorised"])


@pytest.mark.parametrize("q", [0.05, 0.003])
def test_compiled_buffer_is_exact_on_dense_values_near_the_threshold(q, monkeypatch):
    """Distinct values in random order, spaced about 1e-5 apart: a buffer that dropped one
    value just above its floor, or raised the floor one place too far, changes the top."""
    gen = torch.Generator().manual_seed(5)
    units, count = 3, 40 * 256
    values = torch.stack([torch.randperm(count, generator=gen) for _ in range(units)]).float()
    act = (values / count).view(units, 40, 16, 16).transpose(0, 1).contiguous()
    expected = torch.quantile(act.transpose(0, 1).reshape(units, -1), 1 - q, dim=1)
    tops = {}
    for path in ("compiled", "vectorised"):
        monkeypatch.setattr(top_values, "ENABLED", path == "compiled")
        state = TopQuantile(units, q, count, 10_000, 7, CPU)
        for chunk in act.split(3):
            state.update_maps(chunk)
        assert torch.equal(state.result()[0], expected)
        tops[path] = state.top.sort(dim=1).values
    assert torch.equal(tops["compiled"], tops["vectorised"])
    ranks = torch.arange(count - state.size, count, dtype=torch.float32) / count
    assert torch.equal(tops["compiled"], ranks.expand(units, -1))  # the exact top values


def test_compiled_buffer_by_hand_across_blocks_and_calls():
    """Hand-made cases at the kernel's seams: the floor set by a partition at the end of
    a block, a value just above it in the next block, a buffer passed back in full."""
    block = top_values.BLOCK
    first = torch.arange(1.0, block + 1)  # fills and overflows 2·size: partition → {63, 64}
    second = torch.zeros(block)
    second[5] = block - 0.5  # just above the floor the partition left (63)
    act = torch.cat([first, second, torch.tensor([2.0, 1.0])]).view(1, 1, -1)  # + a tail
    top = top_values.push_top(act, torch.empty((1, 0)), 2)
    assert sorted(top[0].tolist()) == [block - 0.5, block]
    again = top_values.push_top(torch.tensor([5.0, 7.0, 7.0, 6.0]).view(1, 1, 4),
                                torch.tensor([[3.0, 7.0]]), 2)  # full on entry: floor 3
    assert sorted(again[0].tolist()) == [7.0, 7.0]
    partial = top_values.push_top(torch.tensor([4.0]).view(1, 1, 1), torch.tensor([[3.0]]), 3)
    assert sorted(partial[0].tolist()) == [3.0, 4.0]  # room left: both kept, fill 2
