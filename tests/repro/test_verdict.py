"""Verdicts from per-run values: an equivalence test on the mean's 95 % interval, never the mean alone."""

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import stats

from mmclust.repro import verdict as V

frac = st.floats(0.05, 0.95)
std = st.one_of(st.none(), st.floats(0.0, 0.05))
runs = st.lists(st.floats(0.0, 1.0), min_size=3, max_size=12)


# -- the worked examples ---------------------------------------------------------------------
def test_wide_spread_around_the_published_value_is_inconclusive():
    a = V.assess(0.7812, [0.62, 0.78, 0.94])
    assert a.verdict == "inconclusive"
    assert a.runs_to_decide is not None and a.runs_to_decide > 3  # more runs at this spread would decide


def test_tight_runs_near_the_published_value_are_reproduced():
    assert V.verdict(0.7812, [0.780, 0.785, 0.775, 0.782, 0.779]) == "reproduced"


def test_clearly_low_and_high_runs():
    assert V.verdict(0.7812, [0.60, 0.61, 0.59]) == "below"
    assert V.verdict(0.7812, [0.95, 0.96, 0.94]) == "above"


def test_many_failures_make_a_cell_unstable_whatever_the_survivors_say():
    good = [0.780, 0.785, 0.775]
    assert V.verdict(0.7812, good, failed=7) == "unstable"
    assert V.verdict(0.7812, [0.60, 0.61, 0.59], failed=7) == "unstable"
    # one failure in five is tolerated (and still printed by the report); two in five are not
    assert V.verdict(0.7812, [0.780, 0.785, 0.775, 0.782], failed=1) == "reproduced"
    assert V.verdict(0.7812, [0.780, 0.785, 0.775], failed=2) == "unstable"


def test_too_few_runs_are_inconclusive_and_say_how_many_would_decide():
    assert V.verdict(0.5, [0.5, 0.5]) == "inconclusive"
    assert V.assess(0.5, [0.5, 0.5]).runs_to_decide == V.MIN_RUNS
    assert V.verdict(0.5, []) == "inconclusive"
    assert V.verdict(0.5, [float("nan")] * 5) == "unstable"  # runs without a finite metric failed


def test_half_width_is_the_student_t_interval():
    vals = [0.70, 0.74, 0.71, 0.69, 0.76]
    a = V.assess(0.72, vals)
    expected = stats.t.ppf(0.975, 4) * np.std(vals, ddof=1) / math.sqrt(5)
    assert a.half_width == pytest.approx(expected) and a.mean == pytest.approx(np.mean(vals))


def test_non_finite_metrics_count_as_failed_runs():
    a = V.assess(0.5, [0.5, 0.51, 0.49] + [float("nan")] * 4)
    assert (a.verdict, a.n, a.failed) == ("unstable", 3, 4)


def test_runs_to_decide_is_fast_and_bounded():
    a = V.assess(0.5, [0.52999, 0.53001, 0.53])  # mean a hair from the band edge: would need millions of runs
    assert a.verdict == "inconclusive" and a.runs_to_decide is None
    b = V.assess(0.7812, [0.62, 0.78, 0.94])
    k = b.runs_to_decide
    assert k is not None and V._t(k) * b.std / math.sqrt(k) < b.band - abs(b.mean - 0.7812)
    assert V._t(k - 1) * b.std / math.sqrt(k - 1) >= b.band - abs(b.mean - 0.7812)  # the smallest such count
    assert V.assess(0.5, [0.5]).runs_to_decide is None  # one run: the spread is unknown


def test_mean_on_the_band_edge_can_never_be_decided():
    a = V.assess(0.5, [0.52, 0.53, 0.54])  # mean 0.53 = p + band: no interval can fit inside or outside
    assert a.verdict == "inconclusive" and a.runs_to_decide is None


def test_band_floor_std_and_resolution():
    assert V.band() == V.ABS_FLOOR and V.band(0.03) == pytest.approx(0.06) and V.band(None, 0.05) == 0.05
    with pytest.raises(ValueError):
        V.band(-0.1)
    with pytest.raises(ValueError):
        V.assess(0.5, [0.5] * 3, failed=-1)


# -- properties ----------------------------------------------------------------------------------------
@given(frac, runs, std)
def test_reflection_about_the_published_value_swaps_below_and_above(pub, values, s):
    mirrored = [2 * pub - v for v in values]
    a, b = V.verdict(pub, values, s), V.verdict(pub, mirrored, s)
    swap = {"below": "above", "above": "below"}
    assert b == swap.get(a, a)


@given(frac, runs, st.floats(1.0, 5.0), std)
def test_widening_the_spread_never_turns_inconclusive_into_reproduced(pub, values, factor, s):
    m = float(np.mean(values))
    wider = [m + factor * (v - m) for v in values]
    before, after = V.verdict(pub, values, s), V.verdict(pub, wider, s)
    if before == "inconclusive":
        assert after != "reproduced"
    if after == "reproduced":
        assert before == "reproduced"


@given(frac, runs, std)
def test_reproduced_means_the_whole_interval_is_inside_the_band(pub, values, s):
    a = V.assess(pub, values, s)
    lo, hi = a.interval
    if a.verdict == "reproduced":
        assert pub - a.band <= lo and hi <= pub + a.band
    if a.verdict == "below":
        assert hi < pub - a.band
    if a.verdict == "above":
        assert lo > pub + a.band


@given(frac, runs, st.integers(0, 20))
def test_failures_only_ever_make_it_unstable(pub, values, failed):
    a, b = V.verdict(pub, values), V.verdict(pub, values, failed=failed)
    unstable = failed / (len(values) + failed) > V.MAX_FAILED_FRACTION
    assert b == ("unstable" if unstable else a)


# -- claims from seed-by-seed differences ----------------------------------------------------------------
def test_greater_claim_from_paired_differences():
    assert V.greater_claim_outcome([[0.10, 0.12, 0.11]], 0.02) == "holds"
    assert V.greater_claim_outcome([[-0.10, -0.12, -0.11]], 0.02) == "fails"
    assert V.greater_claim_outcome([[0.001, -0.001, 0.0]], 0.02) == "level"
    assert V.greater_claim_outcome([[0.3, -0.2, 0.1]], 0.02) == "inconclusive"  # a big mean gap, a bigger spread
    assert V.greater_claim_outcome([[0.1, 0.1]], 0.02) == "inconclusive"  # too few seeds
    # the worst comparison decides; failures make it unstable unless a comparison already fails
    assert V.greater_claim_outcome([[0.10, 0.12, 0.11], [-0.10, -0.12, -0.11]], 0.02) == "fails"
    assert V.greater_claim_outcome([[0.10, 0.12, 0.11]], 0.02, failed=3, total=6) == "unstable"
    assert V.greater_claim_outcome([[-0.10, -0.12, -0.11]], 0.02, failed=7, total=10) == "unstable"  # whatever the rest say


@given(st.lists(st.floats(-0.5, 0.5), min_size=3, max_size=10), st.floats(0, 0.1))
def test_greater_claim_flips_with_the_sign_of_the_differences(diffs, tol):
    a = V.greater_claim_outcome([diffs], tol)
    b = V.greater_claim_outcome([[-d for d in diffs]], tol)
    assert b == {"holds": "fails", "fails": "holds"}.get(a, a)


def test_decreasing_claim_from_paired_steps():
    falls = [[-0.05, -0.06, -0.04], [-0.10, -0.09, -0.11]]
    assert V.decreasing_claim_outcome(falls, 0.02) == "holds"
    assert V.decreasing_claim_outcome([[-0.05, -0.06, -0.04], [0.10, 0.11, 0.09]], 0.02) == "fails"
    assert V.decreasing_claim_outcome([[-0.05, 0.2, -0.3]], 0.02) == "inconclusive"
    assert V.decreasing_claim_outcome(falls, 0.02, failed=5, total=9) == "unstable"
    assert V.decreasing_claim_outcome([[0.0, 0.0, 0.0]], 0.01) == "level"  # flat is not falling
    assert V.decreasing_claim_outcome([[0.009, 0.009, 0.009]], 0.01) == "level"  # rising within the tolerance
    assert V.decreasing_claim_outcome([[-0.005, -0.004, -0.006]], 0.01) == "level"  # falling, but not by more


@given(frac, st.lists(st.floats(0.0, 1.0), min_size=3, max_size=8), std)
def test_verdict_only_depends_on_values_not_their_order(pub, values, s):
    assume(len(set(values)) > 1)
    assert V.verdict(pub, values, s) == V.verdict(pub, list(reversed(values)), s)
