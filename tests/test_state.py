"""Declared state: every reduction by hand, in one process and across real gloo processes."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from probe.state import State, combine, reduce_in_process, state_tensors, sync_states
from probe.stats import RunningMoments, TopK


def _largest_two(shards):
    """A custom reduction: the two largest values over every shard, descending."""
    return torch.cat(shards).sort(descending=True).values[:2]


class Everything(State):
    """One state of every kind, filled from a rank-specific seed."""

    def __init__(self, rank: int) -> None:
        g = torch.Generator().manual_seed(rank)
        self.add_state("total", torch.randint(0, 9, (3,), generator=g), "sum")
        self.add_state("peak", torch.rand(3, generator=g, dtype=torch.float64), "max")
        self.add_state("low", torch.rand(3, generator=g, dtype=torch.float64), "min")
        self.add_state("rows", torch.full((rank + 1, 2), float(rank)), "cat")
        self.add_state("flags", torch.rand(4, generator=g) > 0.5, "max")
        self.add_state("best", torch.rand(5, generator=g), _largest_two)
        self.add_state("per_layer", {"b": torch.tensor([rank + 1]), "a": torch.tensor([10])})
        self.add_state("moments", RunningMoments(2, torch.device("cpu")))
        self.moments.update(torch.rand(2, 3 + rank, generator=g))
        self.add_state("top", TopK(2, 3, torch.device("cpu")))
        self.top.update(torch.rand(2, 2 + rank, generator=g),
                        torch.arange(2 + rank) * 2 + rank)
        self.add_state("early", torch.tensor([rank + 1.0]), "sum", pass_index=0)


def _expected(world: int) -> Everything:
    shards = [Everything(r) for r in range(world)]
    merged = Everything(0)
    for spec in merged.state_specs().values():
        setattr(merged, spec.name, combine([getattr(s, spec.name) for s in shards],
                                               spec.reduce))
    return merged


def test_each_reduction_by_hand():
    shards = [Everything(r) for r in range(3)]
    merged = _expected(3)
    assert merged.total.tolist() == sum(s.total for s in shards).tolist()
    assert merged.peak.tolist() == torch.stack([s.peak for s in shards]).amax(0).tolist()
    assert merged.low.tolist() == torch.stack([s.low for s in shards]).amin(0).tolist()
    assert merged.rows[:, 0].tolist() == [0, 1, 1, 2, 2, 2]  # rank order, sizes differ
    assert merged.flags.dtype == torch.bool
    assert merged.flags.tolist() == torch.stack([s.flags for s in shards]).any(0).tolist()
    every = torch.cat([s.best for s in shards]).sort(descending=True).values
    assert merged.best.tolist() == every[:2].tolist()
    assert merged.per_layer["a"].item() == 30 and merged.per_layer["b"].item() == 6
    assert merged.moments.count.tolist() == [3 + 4 + 5] * 2  # nested sums, no merge code
    values = torch.cat([s.top.values for s in shards], 1)
    assert merged.top.values.tolist() == values.sort(1, descending=True).values[:, :3].tolist()
    assert merged.early.item() == 6.0


def test_merge_follows_the_declarations():
    a, b = Everything(0), Everything(1)
    expected = _expected(2)
    a.merge(b)
    for (path, mine), (_, theirs) in zip(state_tensors(a), state_tensors(expected), strict=True):
        assert torch.equal(mine, theirs), path


def test_reduce_in_process_leaves_every_shard_with_the_result():
    shards = [Everything(r) for r in range(2)]
    before = [s.total.clone() for s in shards]
    reduce_in_process(shards, pass_index=0, last_pass=1)
    assert [s.early.item() for s in shards] == [3.0, 3.0]  # declared for pass 0
    assert [s.total.tolist() for s in shards] == [b.tolist() for b in before]  # not yet
    reduce_in_process(shards, pass_index=1, last_pass=1)
    assert shards[0].total.tolist() == shards[1].total.tolist() == (before[0] + before[1]).tolist()
    assert shards[0].total is not shards[1].total  # copies, not one shared tensor


def test_bad_declarations_are_refused():
    state = State()
    with pytest.raises(TypeError, match="must be a tensor"):
        state.add_state("count", 3, "sum")
    with pytest.raises(ValueError, match="reduce must be one of"):
        state.add_state("count", torch.zeros(1), "mean")
    with pytest.raises(ValueError, match="'merge' is for nested"):
        state.add_state("count", torch.zeros(1), "merge")
    with pytest.raises(ValueError, match="public identifiers"):
        state.add_state("_hidden", torch.zeros(1))


def _rank_main(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        state = Everything(rank)
        sync_states(state, pass_index=0, last_pass=1)
        early = state.early.item()
        total = state.total.clone()
        sync_states(state, pass_index=1, last_pass=1)
        assert early == 6.0 and torch.equal(total, Everything(rank).total)
        # plain numpy copies: a tensor sent through the queue is shared by file descriptor,
        # which dies with this process
        queue.put((rank, [(p, str(t.dtype), t.numpy().copy()) for p, t in state_tensors(state)]))
    finally:
        dist.destroy_process_group()


def test_collectives_across_real_processes_equal_the_local_rule():
    """Three gloo processes reduce with all_reduce / all_gather exactly as `combine` does."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    world = 3
    context = mp.get_context("spawn")
    queue = context.Queue()
    procs = [context.Process(target=_rank_main, args=(r, world, port, queue))
             for r in range(world)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in range(world))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    expected = state_tensors(_expected(world))
    for rank in range(world):
        for (path, dtype, got), (_, want) in zip(results[rank], expected, strict=True):
            assert dtype == str(want.dtype), path
            assert torch.equal(torch.from_numpy(got), want), f"rank {rank}: {path}"
