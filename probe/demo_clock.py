"""How far ``probe demo`` is and about how long it has left.

The demo's steps (train a model, analyse it, write the report) each carry a
fixed estimate of their seconds, measured on an idle 2-core machine
(:attr:`probe.demo.DemoModel.estimate`, :data:`REPORT_SECONDS`). As steps
finish, the measured seconds rescale the estimates of the steps left (a
machine twice as slow, or a GPU ten times as fast, is noticed after the first
step), so the time left reads ``about 4 min left`` and stays honest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

#: Estimated seconds of one intermediate report (HTML only) and of the final one (+ PDF),
#: as measured with the estimates of :data:`probe.demo.DEMO_MODELS`.
REPORT_SECONDS = 3.0
FINAL_REPORT_SECONDS = 15.0

#: The speed factor (measured / estimated) is kept within these bounds (a GPU can be 50×
#: faster than the estimates, a 2-core machine shared with other jobs 20× slower).
FACTOR_RANGE = (0.02, 50.0)


@dataclass
class DemoClock:
    """Steps with estimated seconds; :meth:`done` records one, :meth:`left` says the rest.

    Attributes:
        pending: ``{step: estimated seconds}`` of the steps not done yet, in order.
        estimated_done: Sum of the estimates of the steps done (that took any time).
        measured_done: Their measured seconds.
    """

    pending: dict[str, float] = field(default_factory=dict)
    estimated_done: float = 0.0
    measured_done: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def add(self, step: str, seconds: float) -> None:
        """Plan ``step``, estimated to take ``seconds`` (0 for a step that is cached)."""
        self.pending[step] = max(0.0, seconds)

    def done(self, step: str, seconds: float) -> None:
        """Record that ``step`` took ``seconds``; it no longer counts as left."""
        estimate = self.pending.pop(step, 0.0)
        if estimate > 0 and seconds > 0.5:  # a cache hit says nothing about the speed
            self.estimated_done += estimate
            self.measured_done += seconds

    def skip(self, step: str) -> None:
        """Drop ``step`` (it will not run, e.g. its model failed to train)."""
        self.pending.pop(step, None)

    @property
    def factor(self) -> float:
        """Measured over estimated seconds so far (1 before any step was measured)."""
        if self.estimated_done <= 0:
            return 1.0
        low, high = FACTOR_RANGE
        return min(high, max(low, self.measured_done / self.estimated_done))

    def seconds_left(self) -> float:
        """Estimated seconds of the steps left, rescaled by :attr:`factor`."""
        return sum(self.pending.values()) * self.factor

    def left(self) -> str:
        """``about 4 min left`` (or ``under a minute left``, ``almost done``)."""
        return describe_left(self.seconds_left())

    def elapsed(self) -> float:
        """Seconds since the clock started."""
        return time.perf_counter() - self.started


def describe_left(seconds: float) -> str:
    """Seconds left in words: ``almost done``, ``about 40 s left``, ``about 4 min left``."""
    if seconds < 5:
        return "almost done"
    if seconds < 55:
        return f"about {max(10, round(seconds / 10) * 10)} s left"
    if seconds < 90:
        return "about 1 min left"
    return f"about {round(seconds / 60)} min left"


def describe_duration(seconds: float) -> str:
    """``25 s`` or ``3 min 10 s``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"
