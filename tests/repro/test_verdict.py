"""Verdict logic: monotone in the value, symmetric band, floor respected."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmclust.repro import verdict as V

frac = st.floats(0.0, 1.0)
std = st.one_of(st.none(), st.floats(0.0, 0.2))


@given(frac, std, st.floats(0, 0.01))
def test_band_floor_and_std(pub, s, res):
    b = V.band(s, res)
    assert b >= V.ABS_FLOOR and b >= res and b >= V.Z * (s or 0)


@given(frac, st.floats(-0.5, 0.5), std)
def test_symmetric_band(pub, delta, s):
    a = V.verdict(pub, pub + delta, 5, s)
    b = V.verdict(pub, pub - delta, 5, s)
    assert {a, b} <= {"reproduced", "below", "above"}
    assert (a == "reproduced") == (b == "reproduced")
    if a == "above":
        assert b == "below"


ORDER = {"below": 0, "reproduced": 1, "above": 2}


@given(frac, frac, frac, std)
def test_monotone_in_reproduced_value(pub, x, y, s):
    lo, hi = sorted((x, y))
    assert ORDER[V.verdict(pub, lo, 5, s)] <= ORDER[V.verdict(pub, hi, 5, s)]


def test_edges_and_inconclusive():
    assert V.verdict(0.5, 0.5 - V.ABS_FLOOR + 1e-9, 5) == "reproduced"
    assert V.verdict(0.5, 0.5 - V.ABS_FLOOR - 1e-6, 5) == "below"
    assert V.verdict(0.5, 0.5 + V.ABS_FLOOR + 1e-6, 5) == "above"
    assert V.verdict(0.5, 0.45, 5, std=0.03) == "reproduced"  # 2 x 3 pts band
    assert V.verdict(0.5, 0.5, V.MIN_RUNS - 1) == "inconclusive"
    assert V.verdict(0.5, float("nan"), 5) == "inconclusive"
    with pytest.raises(ValueError):
        V.band(-0.1)


@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 0.2))
def test_greater_claim_outcome_follows_the_gap(a, b, tol):
    out = V.greater_claim_outcome([(a, 3, b, 3)], tol)
    assert out == ("fails" if a < b - tol else "level" if a <= b + tol else "holds")
    # another comparison can only make it worse, never better
    order = {"holds": 0, "level": 1, "inconclusive": 2, "fails": 3}
    assert order[V.greater_claim_outcome([(a, 3, b, 3), (0.5, 3, 0.5, 3)], tol)] >= order[out] or out == "fails"
    # too few runs: inconclusive, unless another comparison already fails
    assert V.greater_claim_outcome([(a, 2, b, 3)], tol) == "inconclusive"
    assert V.greater_claim_outcome([(0.1, 3, 0.9, 3), (a, 2, b, 3)], tol) == "fails"
