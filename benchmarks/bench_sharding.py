"""Reducing shards: declared state over tensor collectives vs pickled accumulators.

Two (or more) gloo processes on this machine each hold the state of a
dissection-sized accumulator (per-layer sums of unit × label counts, a per-unit
maximum, an exact top-k buffer with payload). The same state is reduced two
ways, side by side in one run:

* ``collectives``: :func:`probe.state.sync_states` (``all_reduce`` for the sums
  and maxima, ``all_gather`` + the top-k merge for the buffers) — what the
  runner does now;
* ``pickled``: ``all_gather_object`` of the whole accumulator, then a merge in
  rank order on every rank — what it did before.

Both give identical tensors (checked); the ratio is printed.

    python benchmarks/bench_sharding.py --ranks 2 --units 512 --labels 1200 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import os
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from probe.state import State, state_tensors, sync_states
from probe.stats import TopK


class Dissection(State):
    """Per layer: unit × label intersections, activations (sums), a peak (max), exemplars."""

    def __init__(self, rank: int, layers: int, units: int, labels: int, k: int) -> None:
        g = torch.Generator().manual_seed(rank)
        self.add_state("intersection", {f"l{i}": torch.randint(0, 99, (units, labels),
                                                                 generator=g)
                                        for i in range(layers)}, "sum")
        self.add_state("activation", {f"l{i}": torch.randint(0, 99, (units, labels),
                                                               generator=g)
                                      for i in range(layers)}, "sum")
        self.add_state("peak", {f"l{i}": torch.rand(units, generator=g)
                                for i in range(layers)}, "max")
        tops = {}
        for i in range(layers):
            top = TopK(units, k, torch.device("cpu"), (7, 7))
            n = 4 * k
            top.update(torch.rand(units, n, generator=g), torch.arange(n) * 2 + rank,
                       torch.rand(units, n, 7, 7, generator=g))
            tops[f"l{i}"] = top
        self.add_state("exemplars", tops)


def _pickled(state: Dissection) -> Dissection:
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, state)
    merged = everyone[0]
    for other in everyone[1:]:
        merged.merge(other)
    return merged


def _rank(rank: int, world: int, port: int, args: argparse.Namespace, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        times: dict[str, list[float]] = {"collectives": [], "pickled": []}
        results = {}
        for _ in range(args.repeats):
            for how in ("collectives", "pickled"):
                state = Dissection(rank, args.layers, args.units, args.labels, args.k)
                dist.barrier()
                start = time.perf_counter()
                if how == "collectives":
                    sync_states(state, 0, 0)
                else:
                    state = _pickled(copy.copy(state))
                dist.barrier()
                times[how].append(time.perf_counter() - start)
                results[how] = state
        same = all(torch.equal(a, b) for (_, a), (_, b) in
                   zip(state_tensors(results["collectives"]), state_tensors(results["pickled"]),
                       strict=True))
        megabytes = sum(t.numel() * t.element_size() for _, t in
                        state_tensors(Dissection(rank, args.layers, args.units, args.labels,
                                                 args.k))) / 2**20
        if rank == 0:
            queue.put((times, same, megabytes))
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--units", type=int, default=512)
    parser.add_argument("--labels", type=int, default=1200)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.Queue()
    procs = [context.Process(target=_rank, args=(r, args.ranks, port, args, queue))
             for r in range(args.ranks)]
    for p in procs:
        p.start()
    times, same, megabytes = queue.get(timeout=600)
    for p in procs:
        p.join()
    best = {how: min(values) for how, values in times.items()}
    print(f"{args.ranks} gloo ranks, state {megabytes:.1f} MiB per rank "
          f"({args.layers} layers, {args.units} units, {args.labels} labels, top-{args.k})")
    for how, seconds in best.items():
        print(f"  {how:12s} best of {args.repeats}: {seconds * 1e3:8.1f} ms")
    print(f"  pickled / collectives: {best['pickled'] / best['collectives']:.2f}x; "
          f"identical results: {same}")


if __name__ == "__main__":
    main()
