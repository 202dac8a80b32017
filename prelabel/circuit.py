"""The bulk run's circuit for a suite that is down: while the router, a service or Triton
answers UNAVAILABLE (a restart, a rollout), the run holds its images instead of spending
their attempts, and sends one image at a time (a probe) to learn when the suite is back.

Closed (the normal state): images go out up to the window. The first UNAVAILABLE opens it:
nothing more is sent until the images in flight have answered, then one probe after
`probe_interval_s`, doubling after each probe that fails, up to `max_probe_interval_s`. The
first success closes it. The run gives up once the circuit has been open for `patience_s`
without a success in between.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Circuit:
    patience_s: float = 600.0
    probe_interval_s: float = 1.0
    max_probe_interval_s: float = 5.0
    clock: Callable[[], float] = time.monotonic

    #: When the suite was first seen down since the last success; None: closed.
    down_since: float | None = None
    #: The image sent as the probe and not yet answered.
    probe_id: str | None = None
    _interval: float = field(default=0.0, repr=False)
    _probe_at: float = field(default=0.0, repr=False)

    @property
    def open(self) -> bool:
        return self.down_since is not None

    def down_for_s(self) -> float:
        return 0.0 if self.down_since is None else self.clock() - self.down_since

    def down(self, probe_failed: bool) -> bool:
        """The suite answered UNAVAILABLE (`probe_failed`: to the probe, or the stream
        broke). Opens the circuit, or backs off the next probe. False once the circuit
        has been open longer than `patience_s`: the run should give up."""
        now = self.clock()
        if self.down_since is None:
            self.down_since, self._interval = now, self.probe_interval_s
            self._probe_at = now + self._interval
        elif probe_failed:
            self._interval = min(self._interval * 2, self.max_probe_interval_s)
            self._probe_at = now + self._interval
        return now - self.down_since <= self.patience_s

    def up(self) -> bool:
        """A success: close the circuit. True when it was open."""
        was_open = self.open
        self.down_since, self.probe_id = None, None
        return was_open

    def probe_delay(self) -> float | None:
        """Seconds until the next probe may go (0: now); None while one is in flight."""
        if self.probe_id is not None:
            return None
        return max(0.0, self._probe_at - self.clock())

    def probe_sent(self, image_id: str) -> None:
        self.probe_id = image_id

    def answered(self, image_id: str) -> bool:
        """An image came back; True when it was the probe (the next one may then go after
        the current interval, or later if `down` backs off)."""
        if image_id != self.probe_id:
            return False
        self.probe_id = None
        self._probe_at = self.clock() + self._interval
        return True
