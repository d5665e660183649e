"""Reading one batch ahead in a thread: same batches in the same order, errors where they
happened, the thread stopped and joined when the consumer stops early."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from probe.prefetch import Prefetched


class Recording(Dataset):
    """Items 0..n-1; records which thread read each, fails at ``bad``."""

    def __init__(self, n: int, bad: int | None = None, delay: float = 0.0) -> None:
        self.n, self.bad, self.delay = n, bad, delay
        self.readers: list[str] = []
        self.active = 0
        self.most_active = 0
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            self.readers.append(threading.current_thread().name)
            time.sleep(self.delay)
            if i == self.bad:
                raise ValueError(f"item {i} is damaged")
            return {"index": i, "image": torch.full((2,), float(i))}
        finally:
            with self.lock:
                self.active -= 1


def test_the_same_batches_in_order_read_by_another_thread():
    data = Recording(10)
    loader = DataLoader(data, batch_size=3)
    fetched = Prefetched(loader)
    assert len(fetched) == len(loader) == 4
    got = [batch["index"].tolist() for batch in fetched]
    assert got == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert set(data.readers) == {"probe-prefetch"}
    assert not any(t.name == "probe-prefetch" for t in threading.enumerate())


def test_an_error_reading_arrives_at_the_batch_it_replaced():
    fetched = Prefetched(DataLoader(Recording(10, bad=7), batch_size=3))
    seen = []
    with pytest.raises(ValueError, match="item 7 is damaged"):
        for batch in fetched:
            seen.append(batch["index"].tolist())
    assert seen == [[0, 1, 2], [3, 4, 5]]  # the third batch holds item 7
    assert not any(t.name == "probe-prefetch" for t in threading.enumerate())


def test_stopping_early_stops_and_joins_the_reader_one_batch_ahead_at_most():
    data = Recording(40, delay=0.002)
    batches = iter(Prefetched(DataLoader(data, batch_size=2), ahead=1))
    first = next(batches)
    assert first["index"].tolist() == [0, 1]
    time.sleep(0.1)  # the reader fills its one slot and waits
    read_while_waiting = len(data.readers)
    assert read_while_waiting <= 2 + 2 * 2  # the batch in use, one queued, one being read
    batches.close()  # the consumer gives up: the reader is stopped and joined
    assert not any(t.name == "probe-prefetch" for t in threading.enumerate())
    assert len(data.readers) == read_while_waiting
    assert data.most_active == 1  # never two reads at once


def test_ahead_must_be_positive():
    with pytest.raises(ValueError, match="ahead must be at least 1"):
        Prefetched([], ahead=0)
