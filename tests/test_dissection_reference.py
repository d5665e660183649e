"""The reference-style numpy loop gives the hand-computed counts of the Broden fixture."""

from __future__ import annotations

import numpy as np
import torch
from dissection_reference import ReferenceTally, pil_upsample
from test_dissection_tally import (
    ACTIVATION,
    INTERSECTION,
    SPACE,
    THRESHOLDS,
    TRUTH,
    fixture_batch,
)

from probe.plugins.analyses.dissection.upsample import upsample


def test_reference_loop_reproduces_hand_counts():
    acts, masks, scalars = fixture_batch()
    ref = ReferenceTally.zeros(2, SPACE)
    ref.add(acts.numpy(), THRESHOLDS.numpy(), masks.numpy(), scalars.numpy(), SPACE)
    assert ref.truth.tolist() == [0, *TRUTH.values()]
    for unit in (0, 1):
        assert ref.intersection[unit, 1:].tolist() == list(INTERSECTION[unit].values())
        assert ref.active[unit] == ACTIVATION["unconditioned"][unit][1]
        # categories object, part, texture = labels 1, 2, 4
        for rule, table in (("paper", ref.active_paper), ("lite", ref.active_lite)):
            assert table[unit].tolist() == [ACTIVATION[rule][unit][label] for label in (1, 2, 4)]


def test_pil_bilinear_matches_the_exact_formula():
    maps = torch.randn((5, 4, 4), generator=torch.Generator().manual_seed(0))
    ours = upsample(maps, (16, 16)).numpy()
    theirs = np.stack([pil_upsample(m.numpy(), (16, 16)) for m in maps])
    assert np.abs(ours - theirs).max() < 1e-5
