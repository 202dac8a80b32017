"""The bulk run's circuit for a suite that is down (prelabel.circuit), on a fake clock."""
from __future__ import annotations

import pytest

from prelabel.circuit import Circuit

pytestmark = pytest.mark.timeout(10)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_circuit_probes_one_at_a_time_backing_off_until_a_success_closes_it():
    clock = Clock()
    circuit = Circuit(patience_s=60, probe_interval_s=1, max_probe_interval_s=4, clock=clock)
    assert not circuit.open
    assert circuit.down(probe_failed=False) and circuit.open
    assert circuit.probe_delay() == 1  # nothing goes before the first probe is due
    assert circuit.down(probe_failed=False) and circuit.probe_delay() == 1  # stragglers do not back off
    gaps = []
    for _ in range(4):  # each failed probe doubles the gap, up to the maximum
        clock.now += circuit.probe_delay()
        assert circuit.probe_delay() == 0
        circuit.probe_sent("img")
        assert circuit.probe_delay() is None  # one probe in flight at most
        assert not circuit.answered("other") and circuit.answered("img")
        assert circuit.down(probe_failed=True)
        gaps.append(circuit.probe_delay())
    assert gaps == [2, 4, 4, 4]
    assert circuit.up() and not circuit.open and not circuit.up()


def test_circuit_says_give_up_when_down_longer_than_patience():
    clock = Clock()
    circuit = Circuit(patience_s=10, clock=clock)
    assert circuit.down(probe_failed=False)
    clock.now += 10
    assert circuit.down(probe_failed=True)
    clock.now += 0.1
    assert not circuit.down(probe_failed=True)
    circuit.up()
    assert circuit.down(probe_failed=False)  # a success starts the patience again
