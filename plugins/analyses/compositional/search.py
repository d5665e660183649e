"""Beam search for compositional explanations (Mu & Andreas, NeurIPS 2020), batched.

A formula is a concept followed by ``(operator, concept)`` terms, read left to
right: ``((A OR B) AND NOT C)``. Its score for a unit is the plain IoU of its
mask with the unit's mask, ``|F ∧ U| / |F ∨ U|``, summed over the image sample.

The search follows jayelm/compexp (``NeuronOperator.compute_best_iou``): the beam
starts as the ``beam`` single concepts of highest non-zero IoU; each step
extends beam formulas by every allowed concept with each operator (``OR``,
``AND``, ``AND NOT``), and the new beam is the best ``beam`` formulas among the
old beam and the new candidates (ties: the old, shorter formula first, then
the lower candidate index). The result is the beam's best, plus the best
formula of each exact length.

Every candidate of a step, for every unit at once, is scored in one batched
pass: the three operators need only two counts per (formula, concept) pair,
``I = |F ∧ C|`` and ``J = |F ∧ U ∧ C|`` (:func:`.bits.and_counts`), since

* ``F OR C``: ``|X| = |F| + |C| − I``, ``|X ∧ U| = |F ∧ U| + |C ∧ U| − J``;
* ``F AND C``: ``|X| = I``, ``|X ∧ U| = J``;
* ``F AND NOT C``: ``|X| = |F| − I``, ``|X ∧ U| = |F ∧ U| − J``.

Departures from compexp, by choice: a concept already in a formula is not
added to it again (``A OR A`` is ``A``; ``A AND NOT A`` is empty), and only
formulas new to the beam are extended (the others were extended before; the
beam's lowest score never falls, so their extensions cannot enter it now —
compexp re-creates them and its dict drops the duplicates).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .bits import and_counts, count

#: Operator codes (index) and their names in formulas.
OPERATORS = ("OR", "AND", "AND NOT")


@dataclass
class SearchResult:
    """The best formulas per unit.

    Attributes:
        labels: ``Tensor[K, L, L]`` int64 concept rows of the best formula of each
            length ``1..L`` (row ``length - 1``; ``-1`` pads).
        operators: ``Tensor[K, L, L - 1]`` int64 operator codes (``-1`` pads).
        iou: ``Tensor[K, L]`` float64 IoU of those formulas (NaN: none found).
        best_length: ``Tensor[K]`` int64 length of the beam's best formula (0: none).
        scored: Formulas scored, all units and steps: the single concepts, then per
            step 3 per (new beam formula, allowed concept not in it).
    """

    labels: torch.Tensor
    operators: torch.Tensor
    iou: torch.Tensor
    best_length: torch.Tensor
    scored: int


def _iou(inter: torch.Tensor, size: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    union = size + unit - inter
    return torch.where(union > 0, inter.double() / union.clamp(min=1).double(),
                       torch.zeros((), dtype=torch.float64, device=inter.device))


def extend(masks: torch.Tensor, concepts: torch.Tensor, labels: torch.Tensor,
           operators: torch.Tensor) -> torch.Tensor:
    """In place: ``masks[i] = masks[i] OP concepts[labels[i]]`` where ``operators[i] >= 0``.

    Args:
        masks: ``Tensor[..., N]`` packed formula masks (a copy the caller owns).
        concepts: ``Tensor[C, N]`` packed concept masks.
        labels, operators: ``Tensor[...]`` the concept and operator code of each row
            (``-1``: leave the row as it is).
    """
    flat, ops, ids = masks.view(-1, masks.shape[-1]), operators.reshape(-1), labels.reshape(-1)
    for code in range(len(OPERATORS)):  # three operators, each on its rows at once
        rows = (ops == code).nonzero().flatten()
        if not rows.numel():
            continue
        right = concepts[ids[rows]]
        if code == 0:
            flat[rows] = flat[rows] | right
        elif code == 1:
            flat[rows] = flat[rows] & right
        else:
            flat[rows] = flat[rows] & ~right
    return masks


def beam_search(units: torch.Tensor, concepts: torch.Tensor, allowed: torch.Tensor,
                beam: int = 5, length: int = 3,
                chunk_values: int | None = None) -> SearchResult:
    """Best formulas for every unit at once.

    Args:
        units: ``Tensor[K, N]`` int64 packed unit masks (over the whole sample).
        concepts: ``Tensor[C, N]`` int64 packed concept masks.
        allowed: ``Tensor[K, C]`` or ``Tensor[C]`` bool, concepts a unit's formulas may use.
        beam: Beam width.
        length: Longest formula (number of concepts).
        chunk_values: Budget of the batched counting temporaries (int64 values;
            default: :func:`.bits.chunk_for` the device).
    """
    if beam < 1 or length < 1:
        raise ValueError(f"beam and length must be >= 1, got {beam} and {length}")
    n_units, n_words = units.shape
    n_concepts = concepts.shape[0]
    device = units.device
    allowed = allowed.to(device=device, dtype=torch.bool).expand(n_units, n_concepts)
    labels_out = torch.full((n_units, length, length), -1, dtype=torch.int64, device=device)
    ops_out = torch.full((n_units, length, max(0, length - 1)), -1, dtype=torch.int64,
                         device=device)
    iou_out = torch.full((n_units, length), float("nan"), dtype=torch.float64, device=device)
    if not n_units or not n_concepts:
        return SearchResult(labels_out, ops_out, iou_out,
                            torch.zeros(n_units, dtype=torch.int64, device=device), 0)
    u_count = count(units)                          # [K]
    c_count = count(concepts)                       # [C]
    cu = and_counts(units, concepts, chunk_values)  # [K, C] |C ∧ U|
    single = torch.where(allowed, _iou(cu, c_count.view(1, -1), u_count.view(-1, 1)), -1.0)
    scored = int(allowed.sum())

    width = min(beam, n_concepts)
    score, order = torch.sort(single, dim=1, descending=True, stable=True)
    score, order = score[:, :width], order[:, :width]             # [K, b]
    valid = score > 0
    rows = torch.arange(n_units, device=device).view(-1, 1)
    beam_labels = torch.full((n_units, width, length), -1, dtype=torch.int64, device=device)
    beam_labels[:, :, 0] = order
    beam_ops = torch.full((n_units, width, max(0, length - 1)), -1, dtype=torch.int64,
                          device=device)
    beam_len = torch.ones((n_units, width), dtype=torch.int64, device=device)
    masks = concepts[order]                                        # [K, b, N]
    f_count, fu_count = c_count[order], cu[rows, order]            # [K, b]
    fresh = valid.clone()
    found = valid[:, 0]
    labels_out[:, 0, 0] = torch.where(found, order[:, 0], -1)
    iou_out[:, 0] = torch.where(found, score[:, 0], float("nan"))
    concept_ids = torch.arange(n_concepts, device=device)

    for step in range(1, length):
        # only formulas new to the beam are extended: count their rows alone
        grow = fresh.view(-1).nonzero().flatten()
        flat_masks = masks.view(-1, n_words)[grow]
        fu_masks = flat_masks & units.repeat_interleave(width, 0)[grow]
        inter = torch.zeros((n_units * width, n_concepts), dtype=torch.int64, device=device)
        joint = torch.zeros_like(inter)
        inter[grow] = and_counts(flat_masks, concepts, chunk_values)
        joint[grow] = and_counts(fu_masks, concepts, chunk_values)
        del flat_masks, fu_masks
        inter, joint = inter.view(n_units, width, -1), joint.view(n_units, width, -1)
        fc, fuc = f_count.unsqueeze(-1), fu_count.unsqueeze(-1)
        size = torch.stack([fc + c_count - inter, inter, fc - inter], -1)        # [K, b, C, 3]
        hits = torch.stack([fuc + cu.unsqueeze(1) - joint, joint, fuc - joint], -1)
        cand = _iou(hits, size, u_count.view(-1, 1, 1, 1))
        used = (beam_labels.unsqueeze(-1) == concept_ids).any(2)                 # [K, b, C]
        ok = fresh.unsqueeze(-1) & allowed.unsqueeze(1) & ~used
        cand = torch.where(ok.unsqueeze(-1) & (cand > 0), cand, -1.0).view(n_units, -1)
        scored += 3 * int(ok.sum())

        best = cand.argmax(1)
        best_score = cand[torch.arange(n_units, device=device), best]
        hit = best_score > 0
        b_idx, c_idx, o_idx = best // (n_concepts * 3), (best // 3) % n_concepts, best % 3
        labels_out[:, step, :step] = torch.where(hit.view(-1, 1),
                                                 beam_labels[rows[:, 0], b_idx, :step], -1)
        labels_out[:, step, step] = torch.where(hit, c_idx, -1)
        if step > 1:
            ops_out[:, step, :step - 1] = torch.where(hit.view(-1, 1),
                                                      beam_ops[rows[:, 0], b_idx, :step - 1], -1)
        ops_out[:, step, step - 1] = torch.where(hit, o_idx, -1)
        iou_out[:, step] = torch.where(hit, best_score, float("nan"))

        # the new beam: best of old beam + candidates (old first: ties keep the shorter)
        pool = torch.cat([torch.where(valid, score, -1.0), cand], 1)
        score, pick = torch.sort(pool, dim=1, descending=True, stable=True)
        score, pick = score[:, :width], pick[:, :width]
        old = pick < width
        q = (pick - width).clamp(min=0)
        src = torch.where(old, pick, q // (n_concepts * 3))
        c_new, o_new = (q // 3) % n_concepts, q % 3
        new_labels = beam_labels[rows, src].clone()
        new_ops = beam_ops[rows, src].clone()
        src_len = beam_len[rows, src]
        new_labels.scatter_(2, src_len.unsqueeze(-1).clamp(max=length - 1),
                            torch.where(old, new_labels.gather(
                                2, src_len.unsqueeze(-1).clamp(max=length - 1)).squeeze(-1),
                                c_new).unsqueeze(-1))
        new_ops.scatter_(2, (src_len - 1).unsqueeze(-1).clamp(max=length - 2),
                         torch.where(old, new_ops.gather(
                             2, (src_len - 1).unsqueeze(-1).clamp(max=length - 2)).squeeze(-1),
                             o_new).unsqueeze(-1))
        masks = extend(masks[rows, src], concepts, c_new, torch.where(old, -1, o_new))
        flat = torch.where(old, pick, 0)
        qsize = size.view(n_units, -1)[rows, q]
        qhits = hits.view(n_units, -1)[rows, q]
        f_count = torch.where(old, f_count[rows, flat], qsize)
        fu_count = torch.where(old, fu_count[rows, flat], qhits)
        beam_len = torch.where(old, src_len, src_len + 1)
        beam_labels, beam_ops = new_labels, new_ops
        valid = score > 0
        fresh = valid & ~old

    best_length = torch.where(valid[:, 0], beam_len[:, 0], 0)
    return SearchResult(labels_out, ops_out, iou_out, best_length, scored)


def formula_text(labels: list[int], operators: list[int], names: list[str]) -> str:
    """``A``, ``A OR B``, ``(A OR B) AND NOT C``: left to right, inner terms bracketed."""
    text = names[labels[0]]
    for i, (op, label) in enumerate(zip(operators, labels[1:], strict=True)):
        inner = f"({text})" if i else text
        text = f"{inner} {OPERATORS[op]} {names[label]}"
    return text
