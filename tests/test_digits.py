"""The ``digits`` data set: scikit-learn's digits, read without importing scikit-learn."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from probe.plugins.datasets.digits import TRAIN_SIZE, DigitsDataset, load_digits


def test_the_file_read_is_scikit_learns_digits() -> None:
    from sklearn.datasets import load_digits as sklearn_digits

    images, target = load_digits()
    truth = sklearn_digits()
    assert images.shape == (1797, 8, 8) and target.shape == (1797,)
    np.testing.assert_array_equal(images, truth.images)
    np.testing.assert_array_equal(target, truth.target)


def test_loading_the_data_set_does_not_import_scikit_learn() -> None:
    code = ("import sys; from probe.plugins.datasets.digits import DigitsDataset; "
            "d = DigitsDataset('test', 32, 0, 0); "
            "print(len(d), 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["450", "False"]


def test_split_and_resize_follow_the_documented_rule() -> None:
    from sklearn.datasets import load_digits as sklearn_digits

    truth = sklearn_digits()
    order = np.random.default_rng(0).permutation(1797)
    test = DigitsDataset("test", 32, 0, 0)
    assert len(DigitsDataset("train", 32, 0, 0)) == TRAIN_SIZE and len(test) == 1797 - TRAIN_SIZE
    np.testing.assert_array_equal(test.labels.numpy(), truth.target[order[TRAIN_SIZE:]])
    first = torch.from_numpy(truth.images[order[TRAIN_SIZE]].astype(np.float32) / 16)
    inner = torch.nn.functional.interpolate(first[None, None], size=(28, 28), mode="bilinear",
                                            align_corners=False)[0, 0].clamp(0, 1)
    torch.testing.assert_close(test.images[0, 0, 2:30, 2:30], inner)  # 7/8 of 32, centred
    assert float(test.images[0, 0, :2].abs().sum()) == 0.0  # the blank border
