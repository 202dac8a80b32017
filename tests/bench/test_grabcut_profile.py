"""`python -m bench.grabcut_profile`: the per-iteration split still describes the engine
(one GrabCut iteration per call gives the engine's labels, else it raises) and reports a
cost for each of the 5 iterations of both prompts. The figures themselves are not
checked."""
from __future__ import annotations

import pytest

from services.modelkit.grabcut_clicks import DEFAULT_ITERATIONS


@pytest.mark.timeout(120)
def test_profile_splits_the_first_click_and_a_refinement_per_iteration():
    from bench.grabcut_profile import measure

    result = measure(rounds=1)
    assert result["grid"] == [171, 256]
    for prompt in ("first_click", "refinement"):
        numbers = result[prompt]
        assert len(numbers["grabcut_iteration_cpu_ms"]) == DEFAULT_ITERATIONS
        assert all(ms > 0 for ms in numbers["grabcut_iteration_cpu_ms"])
        assert numbers["grabcut_cpu_ms"] >= sum(numbers["grabcut_iteration_cpu_ms"])
        assert numbers["click_wall_p50_ms"] > 0 and numbers["click_cpu_p50_ms"] > 0
