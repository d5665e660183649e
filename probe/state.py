"""Declared tensor state and how it reduces across shards (the torchmetrics shape).

An object that streams statistics (an :class:`~probe.analysis.Accumulator`, or
a building block such as :class:`probe.stats.TopK`) declares each piece of its
state with :meth:`State.add_state`::

    self.add_state("count", torch.zeros(units, dtype=torch.int64, device=device), "sum")
    self.add_state("peak", torch.full((units,), -torch.inf, device=device), "max")
    self.add_state("top", TopK(units, 8, device), "merge")

A state value is a tensor, a nested :class:`State`, or a ``dict`` of either
(one entry per layer, say). Its reduction says how shards combine:

``"sum"``, ``"max"``, ``"min"``
    Element-wise; reduced with one ``all_reduce`` per tensor, on its device.
``"cat"``
    Concatenated along dim 0 in rank order (``all_gather``; sizes may differ).
a callable ``fn(shards: list[Tensor]) -> Tensor``
    Gathered in rank order, then folded by ``fn``.
``"merge"`` (nested :class:`State` only)
    Every tensor of the nested state is gathered in rank order and the
    per-rank copies are folded with its :meth:`State.merge` — for buffers whose
    tensors only make sense together (top-k values with their indices).
``None`` (default)
    ``"sum"`` for a tensor; for a nested state, each of its own declarations.

So an accumulator whose state is sums writes no merge code: :meth:`State.merge`
(two shards in one process) and :func:`sync_states` (all ranks of a
``torch.distributed`` run) both follow the declarations. Nothing is pickled:
ranks exchange tensors on their own device (gloo on the CPU, nccl on GPUs).

``pass_index`` on :meth:`State.add_state` says after which pass the state is
reduced (default: the analysis's last pass); state of an earlier pass (say
dissection's threshold buffers) is global on every rank from then on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist

Reduction = Literal["sum", "max", "min", "cat", "merge"] | \
    Callable[[list[torch.Tensor]], torch.Tensor]
ELEMENTWISE = ("sum", "max", "min")
NAMED_REDUCTIONS = ("sum", "max", "min", "cat", "merge")


@dataclass(frozen=True)
class StateSpec:
    """One declared state: its name, reduction and the pass after which it reduces."""

    name: str
    reduce: Reduction | None
    pass_index: int | None = None

    @property
    def label(self) -> str:
        """The reduction's name (a callable's ``__name__``) for listings and errors."""
        if callable(self.reduce):
            return getattr(self.reduce, "__name__", "custom")
        return self.reduce or "default"


class State:
    """Base of every object whose state is declared tensors (see the module docstring).

    Attributes:
        merge_only: Set on a class whose tensors only make sense together (a
            top-k buffer's values and indices): nested in another state it
            always reduces with ``"merge"`` (its :meth:`merge`), never field by field.
    """

    merge_only: bool = False

    def add_state(self, name: str, default: Any, reduce: Reduction | None = None, *,
                  pass_index: int | None = None) -> None:
        """Declare ``name`` as state, set it to ``default``, and say how shards reduce it.

        Args:
            name: Attribute name; the value is then ``self.<name>``.
            default: A tensor, a nested :class:`State`, or a ``dict`` of either.
            reduce: ``"sum"``, ``"max"``, ``"min"``, ``"cat"``, ``"merge"`` (nested
                state), a callable over the rank-ordered shards, or ``None``.
            pass_index: Reduce after this pass (0-based); default the last one.

        Raises:
            TypeError: ``default`` is not a tensor, a State or a dict of them.
            ValueError: ``reduce`` is unknown, or does not fit the value.
        """
        if not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"state names must be public identifiers, got {name!r}")
        _check_value(name, default, reduce)
        specs = self.__dict__.setdefault("_state_specs", {})
        specs[name] = StateSpec(name, reduce, pass_index)
        setattr(self, name, default)

    def state_specs(self) -> dict[str, StateSpec]:
        """Every declared state, by name, in declaration order."""
        return dict(self.__dict__.get("_state_specs", {}))

    def settle(self) -> None:
        """Fold any pending, undeclared work into the declared tensors (before a reduction)."""

    def merge(self, other: State) -> None:
        """Fold ``other`` (another shard of the same kind) into this one, as declared."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        self.settle()
        other.settle()
        for spec in self.state_specs().values():
            setattr(self, spec.name, combine([getattr(self, spec.name),
                                              getattr(other, spec.name)], spec.reduce))


def _check_value(name: str, value: Any, reduce: Reduction | None) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _check_value(f"{name}[{key!r}]", item, reduce)
        return
    if not isinstance(value, torch.Tensor | State):
        raise TypeError(f"state {name!r} must be a tensor, a probe.State or a dict of them, "
                        f"got {type(value).__name__}")
    if reduce is None or callable(reduce):
        if callable(reduce) and isinstance(value, State):
            raise ValueError(f"state {name!r}: a nested State reduces with 'merge' or its own "
                             f"declarations (reduce=None), not a callable")
        return
    if reduce not in NAMED_REDUCTIONS:
        raise ValueError(f"state {name!r}: reduce must be one of {', '.join(NAMED_REDUCTIONS)} "
                         f"or a callable, got {reduce!r}")
    if reduce == "merge" and not isinstance(value, State):
        raise ValueError(f"state {name!r}: reduce='merge' is for nested probe.State values; "
                         f"a tensor takes sum, max, min, cat or a callable")
    if isinstance(value, State) and reduce != "merge":
        raise ValueError(f"state {name!r}: a nested State reduces with 'merge' or None, "
                         f"got {reduce!r}")


def _effective(value: Any, reduce: Reduction | None) -> Reduction | None:
    """A ``merge_only`` nested state reduces with ``"merge"`` whatever was declared."""
    if isinstance(value, State) and value.merge_only:
        return "merge"
    return reduce


# -- reducing a list of shards in one process -----------------------------------------------
def combine(shards: Sequence[Any], reduce: Reduction | None) -> Any:
    """Reduce rank-ordered shard values of one state to one value (the local rule).

    The collective path (:func:`sync_states`) gives the same result.
    """
    first = shards[0]
    if isinstance(first, dict):
        keys = list(dict.fromkeys(k for shard in shards for k in shard))
        return {k: combine([s[k] for s in shards if k in s], reduce) for k in keys}
    if isinstance(first, State):
        # a joint buffer folds with its own merge; any other nested state field by field
        fold = type(first).merge if _effective(first, reduce) == "merge" else State.merge
        merged = copy.deepcopy(first)
        for other in shards[1:]:
            fold(merged, copy.deepcopy(other))
        return merged
    device = first.device
    tensors = [t.to(device) for t in shards]
    if reduce is None or reduce == "sum":
        return _fold(torch.add, tensors)
    if reduce == "max":
        return _fold(torch.maximum, tensors)
    if reduce == "min":
        return _fold(torch.minimum, tensors)
    if reduce == "cat":
        return torch.cat(tensors, dim=0)
    assert callable(reduce)
    return reduce(tensors)


def _fold(op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
          tensors: list[torch.Tensor]) -> torch.Tensor:
    out = tensors[0].clone()
    for t in tensors[1:]:
        out = op(out, t)
    return out


def due(spec: StateSpec, pass_index: int, last_pass: int) -> bool:
    """Whether ``spec`` reduces at the end of ``pass_index``."""
    return (spec.pass_index if spec.pass_index is not None else last_pass) == pass_index


def reduce_in_process(states: Sequence[State], pass_index: int, last_pass: int) -> None:
    """Reduce the states due after ``pass_index`` over in-process shards, as ranks would.

    Every shard ends with the reduced value (a copy of its own), exactly what
    :func:`sync_states` leaves on every rank. Used by :mod:`probe.testing`.
    """
    for state in states:
        state.settle()
    for spec in states[0].state_specs().values():
        if not due(spec, pass_index, last_pass):
            continue
        merged = combine([getattr(s, spec.name) for s in states], spec.reduce)
        for state in states:
            setattr(state, spec.name, copy.deepcopy(merged))


# -- reducing across torch.distributed ranks ------------------------------------------------
def sync_states(state: State, pass_index: int, last_pass: int) -> None:
    """Reduce the states of ``state`` due after ``pass_index`` across every rank, in place.

    Element-wise reductions use ``all_reduce``; ``cat``, callables and ``merge``
    use ``all_gather`` of each tensor (shapes exchanged first, so shards may
    differ in size). Every rank must call this with states declared in the same
    order (an accumulator built by the same analysis with the same options).
    """
    state.settle()
    for spec in state.state_specs().values():
        if due(spec, pass_index, last_pass):
            setattr(state, spec.name, _sync_value(getattr(state, spec.name), spec.reduce))


def _sync_value(value: Any, reduce: Reduction | None) -> Any:
    if isinstance(value, dict):
        # reduced in one sorted order on every rank; handed back in the order they were added
        synced = {k: _sync_value(value[k], reduce) for k in sorted(value, key=repr)}
        return {k: synced[k] for k in value}
    if isinstance(value, State):
        value.settle()
        if _effective(value, reduce) == "merge":
            copies = _gather_state(value)
            merged = copies[0]
            for other in copies[1:]:
                merged.merge(other)
            return merged
        for spec in value.state_specs().values():
            setattr(value, spec.name, _sync_value(getattr(value, spec.name), spec.reduce))
        return value
    if reduce is None or reduce in ELEMENTWISE:
        op = {None: dist.ReduceOp.SUM, "sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX,
              "min": dist.ReduceOp.MIN}[reduce]
        wire = _to_wire(value)
        dist.all_reduce(wire, op=op)
        return _from_wire(wire, value.dtype)
    shards = gather_tensor(value)
    if reduce == "cat":
        return torch.cat(shards, dim=0)
    assert callable(reduce)
    return reduce(shards)


def _leaves(value: Any) -> Iterator[tuple[Any, str | None, Any]]:
    """``(owner, key, tensor)`` of every tensor inside a state value, in a fixed order."""
    if isinstance(value, State):
        for spec in value.state_specs().values():
            item = getattr(value, spec.name)
            if isinstance(item, torch.Tensor):
                yield value, spec.name, item
            else:
                yield from _leaves(item)
    elif isinstance(value, dict):
        for key in sorted(value, key=repr):
            item = value[key]
            if isinstance(item, torch.Tensor):
                yield value, key, item
            else:
                yield from _leaves(item)


def _gather_state(value: State) -> list[State]:
    """Every rank's copy of a nested state, rebuilt from gathered tensors."""
    world = dist.get_world_size()
    rank = dist.get_rank()
    copies = [value if r == rank else copy.deepcopy(value) for r in range(world)]
    per_rank_leaves = [list(_leaves(c)) for c in copies]
    for position, (_, _, tensor) in enumerate(per_rank_leaves[rank]):
        shards = gather_tensor(tensor)
        for r in range(world):
            owner, key, _ = per_rank_leaves[r][position]
            if isinstance(owner, dict):
                owner[key] = shards[r]
            else:
                setattr(owner, key, shards[r])
    return copies


def gather_tensor(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``tensor`` in rank order (shapes may differ; dims may not).

    Shapes are exchanged first, every shard is padded to the largest, gathered
    with one ``all_gather`` on the tensor's device and cut back.
    """
    world = dist.get_world_size()
    device = tensor.device
    shape = torch.tensor(list(tensor.shape), dtype=torch.int64, device=device)
    shapes = [torch.empty_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape)
    sizes = [tuple(int(v) for v in s.tolist()) for s in shapes]
    largest = tuple(max(dims) for dims in zip(*sizes, strict=True)) if tensor.dim() else ()
    wire = _to_wire(tensor)
    padded = torch.zeros(largest, dtype=wire.dtype, device=device)
    padded[tuple(slice(0, n) for n in tensor.shape)] = wire
    received = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(received, padded)
    return [_from_wire(r[tuple(slice(0, n) for n in size)].clone(), tensor.dtype)
            for r, size in zip(received, sizes, strict=True)]


def _to_wire(tensor: torch.Tensor) -> torch.Tensor:
    """Collectives do not take every dtype (gloo has no bool): send bools as uint8."""
    return tensor.to(torch.uint8) if tensor.dtype == torch.bool else tensor.contiguous()


def _from_wire(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return tensor.to(dtype) if tensor.dtype != dtype else tensor


def state_tensors(state: State) -> list[tuple[str, torch.Tensor]]:
    """``(dotted path, tensor)`` of every declared tensor, for checks and listings."""
    out: list[tuple[str, torch.Tensor]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            out.append((prefix, value))
        elif isinstance(value, dict):
            for key in sorted(value, key=repr):
                walk(f"{prefix}[{key!r}]", value[key])
        elif isinstance(value, State):
            for spec in value.state_specs().values():
                walk(f"{prefix}.{spec.name}" if prefix else spec.name, getattr(value, spec.name))

    walk("", state)
    return out
