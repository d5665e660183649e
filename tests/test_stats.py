import torch

from probe.stats import RunningMoments, TopK, as_maps


def test_moments_match_torch_and_merge_exactly():
    torch.manual_seed(0)
    data = torch.randn(4, 1000)
    whole = RunningMoments.zeros(4, torch.device("cpu"))
    whole.update(data)
    cpu = torch.device("cpu")
    a, b = RunningMoments.zeros(4, cpu), RunningMoments.zeros(4, cpu)
    a.update(data[:, :300])
    b.update(data[:, 300:])
    a.merge(b)
    d64 = data.double()
    for m in (whole, a):
        assert torch.allclose(m.mean(), d64.mean(1), atol=1e-12)
        assert torch.allclose(m.std(), d64.std(1, unbiased=False), atol=1e-12)
        assert torch.equal(m.maximum, data.amax(1))
        assert torch.equal(m.positive, (data > 0).sum(1))


def test_topk_is_exact_deterministic_and_mergeable():
    torch.manual_seed(1)
    scores = torch.randint(0, 5, (3, 40)).float()  # many ties
    idx = torch.arange(40)
    # each entry's payload names it (unit · 1000 + index), so a slice taken from the
    # wrong place, even one with an equal score, shows
    units = torch.arange(3).view(-1, 1)
    payload = (units * 1000 + idx).float().unsqueeze(-1)
    one = TopK(3, 6, torch.device("cpu"), (1,))
    for start in range(0, 40, 7):
        one.update(scores[:, start:start + 7], idx[start:start + 7], payload[:, start:start + 7])
    left, right = TopK(3, 6, torch.device("cpu"), (1,)), TopK(3, 6, torch.device("cpu"), (1,))
    left.update(scores[:, :20], idx[:20], payload[:, :20])
    right.update(scores[:, 20:], idx[20:], payload[:, 20:])
    right.merge(left)
    for unit in range(3):
        order = sorted(range(40), key=lambda i: (-scores[unit, i].item(), i))[:6]
        assert one.indices[unit].tolist() == order
        assert right.indices[unit].tolist() == order
    for top in (one, right):
        assert torch.equal(top.payload[..., 0], (units * 1000 + top.indices).float())


def test_topk_entries_arriving_late_with_lower_indices_win_ties():
    """Once the buffer is full only scores >= a unit's k-th are offered: a tie with the
    k-th still enters when its data-set index is lower, whatever order batches come in."""
    torch.manual_seed(2)
    scores = torch.randint(0, 4, (5, 60)).float()
    idx = torch.arange(60)
    payload = (torch.arange(5).view(-1, 1) * 1000 + idx).float().unsqueeze(-1)
    top = TopK(5, 4, torch.device("cpu"), (1,))
    for start in range(50, -1, -10):  # highest indices first
        top.update(scores[:, start:start + 10], idx[start:start + 10],
                   payload[:, start:start + 10])
    for unit in range(5):
        order = sorted(range(60), key=lambda i: (-scores[unit, i].item(), i))[:4]
        assert top.indices[unit].tolist() == order
    assert torch.equal(top.payload[..., 0], (torch.arange(5).view(-1, 1) * 1000
                                             + top.indices).float())


def test_topk_payload_is_the_same_from_any_memory_layout():
    """A payload offered as the batch's ``[B, K, h, w]`` maps seen units first (a transposed
    view), contiguous, or strided otherwise (channels-last) keeps the same slices."""
    gen = torch.Generator().manual_seed(2)
    batch, units, side = 12, 5, 3
    maps = torch.randn((batch, units, side, side), generator=gen)
    scores = maps.flatten(2).amax(2).T  # [units, batch]
    offered = {
        "transposed view": lambda m: m.transpose(0, 1),
        "contiguous": lambda m: m.transpose(0, 1).contiguous(),
        "channels-last": lambda m: m.contiguous(memory_format=torch.channels_last)
        .transpose(0, 1),
    }
    kept = {}
    for name, view in offered.items():
        top = TopK(units, 4, torch.device("cpu"), (side, side))
        for start in range(0, batch, 5):  # kept entries and new ones mix in later batches
            chunk = maps[start:start + 5]
            top.update(scores[:, start:start + 5], torch.arange(start, start + len(chunk)),
                       view(chunk))
        kept[name] = top
    expected = maps.transpose(0, 1)[torch.arange(units).view(-1, 1), kept["contiguous"].indices]
    for name, top in kept.items():
        assert torch.equal(top.payload, expected), name


def test_as_maps_shapes():
    assert as_maps(torch.zeros(2, 5)).shape == (2, 5, 1, 1)
    assert as_maps(torch.zeros(2, 5, 3, 4)).shape == (2, 5, 3, 4)
