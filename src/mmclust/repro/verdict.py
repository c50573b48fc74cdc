"""Tolerance bands and verdicts: the one place where "close enough to the paper" is defined.

``band = max(ABS_FLOOR, Z * std, resolution)`` where ``std`` is the paper's reported standard deviation
(0 when the paper gives none) and ``resolution`` half the last printed digit. The band is never widened.

A verdict is an equivalence test on the per-run values, not a look at their mean. With ``m``, ``s``, ``n``
the successful runs' mean, sample standard deviation and count, and ``h = t(0.975, n - 1) * s / sqrt(n)``
the half-width of the 95 % confidence interval of the mean (Student t):

* ``reproduced``   — ``[m - h, m + h]`` lies inside ``[p - band, p + band]`` (two one-sided tests, each at
  2.5 %: stricter than the common 90 % interval, on purpose);
* ``below``        — ``m + h < p - band``: the whole interval is under the band (end-to-end tests fail);
* ``above``        — ``m - h > p + band``: suspicious, reported for explanation, never celebrated;
* ``inconclusive`` — anything else, or fewer than ``MIN_RUNS`` successful runs. :func:`assess` says how
  many runs at the observed spread would decide, or that none can (``|m - p|`` at the band's edge);
* ``unstable``     — more than one run in five failed, whatever the others say (dropping failures
  would be survivor bias). A run whose metric is not finite counts as failed.

"How many runs would decide" is a planning aid, not a licence to add runs until a cell turns ``reproduced``:
that is optional stopping, which inflates false verdicts. Fix the number of runs first (the paper's, by default).

Other verdicts need no comparison: ``features_differ`` (the paper's samples with other features: shown
beside the published value, never pass/fail), ``data_absent`` (the file needed, and how to supply it),
``data_corrupt`` (the file is there but fails its sha256 check: replace it), ``not_implemented``, ``unreadable`` (the published cell could not be transcribed).

Why these numbers: deep-clustering runs on these data sets spread by 1-3 points of ACC between seeds
(MCA's Table 1 stds reach 2.5 points; CIGIT-C averages 10 runs without reporting a spread). A 3-point
floor is the smallest band that two correct implementations would not fail by seed noise alone; Z = 2
covers ~95 % of a normal spread where the paper reports its std. These were set once, before any
result was seen, and are never widened to pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["ABS_FLOOR", "Z", "MIN_RUNS", "MAX_FAILED_FRACTION", "CONFIDENCE", "band", "verdict", "assess", "Assessment",
           "mean_interval", "greater_claim_outcome", "decreasing_claim_outcome", "VERDICTS", "CLAIM_OUTCOMES"]

ABS_FLOOR = 0.03
Z = 2.0
MIN_RUNS = 3
MAX_FAILED_FRACTION = 0.2  # "more than one run in five failed" -> unstable
CONFIDENCE = 0.95

VERDICTS = ("reproduced", "below", "above", "inconclusive", "unstable", "features_differ", "data_absent",
            "data_corrupt", "not_implemented", "unreadable")
CLAIM_OUTCOMES = ("holds", "level", "fails", "inconclusive", "unstable")


def band(std: float | None = None, resolution: float = 0.0) -> float:
    """Half-width of the acceptance band around a published value (fractions)."""
    if std is not None and (not math.isfinite(std) or std < 0):
        raise ValueError(f"std must be a finite non-negative number, got {std}")
    if resolution < 0:
        raise ValueError(f"resolution must be >= 0, got {resolution}")
    return max(ABS_FLOOR, Z * (std or 0.0), resolution)


def _t(n: int) -> float:
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1))


def mean_interval(values) -> tuple[float, float, float, int]:
    """``(mean, sample std, h, n)`` of finite ``values``, ``h`` the 95 % t-interval's half-width (inf for n < 2)."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = int(arr.size)
    if n == 0:
        return math.nan, math.nan, math.inf, 0
    mean = float(arr.mean())
    if n < 2:
        return mean, 0.0, math.inf, n
    sd = float(arr.std(ddof=1))
    return mean, sd, _t(n) * sd / math.sqrt(n), n


@dataclass(frozen=True)
class Assessment:
    """A verdict with the numbers behind it (all fractions)."""

    verdict: str
    published: float
    band: float
    mean: float
    std: float
    half_width: float  # h of the 95 % interval of the mean
    n: int
    failed: int
    runs_to_decide: int | None  # at the observed spread; None when no number of runs can (or it is decided)

    @property
    def interval(self) -> tuple[float, float]:
        return self.mean - self.half_width, self.mean + self.half_width


MAX_RUNS_TO_DECIDE = 10_000


def _runs_to_decide(published: float, b: float, mean: float, sd: float, n: int) -> int | None:
    """Smallest n' >= n at which the interval, at this mean and spread, would fall wholly inside or outside.

    None when the spread is unknown (fewer than 2 runs), when the mean sits on a band edge, or when it would
    take more than ``MAX_RUNS_TO_DECIDE`` runs.
    """
    room = abs(b - abs(mean - published))  # distance from the mean to the nearer band edge
    if n < 2 or room == 0:
        return None
    if sd == 0.0:
        return max(n, MIN_RUNS)
    # t > z, so the normal-quantile count is a lower bound: start there and step up
    k = max(n, MIN_RUNS, int((1.959963984540054 * sd / room) ** 2))
    while k <= MAX_RUNS_TO_DECIDE:
        if _t(k) * sd / math.sqrt(k) < room:
            return k
        k += 1 if k < 1000 else k // 100
    return None


def assess(published: float, values, std: float | None = None, resolution: float = 0.0, failed: int = 0) -> Assessment:
    """The verdict on one published cell from the per-run values of the successful runs (see module doc)."""
    if failed < 0:
        raise ValueError(f"failed must be >= 0, got {failed}")
    b = band(std, resolution)
    values = list(values)
    failed += sum(1 for v in values if v is None or not math.isfinite(v))  # a run without a finite metric failed
    mean, sd, h, n = mean_interval(values)
    total = n + failed
    if total and failed / total > MAX_FAILED_FRACTION:
        v = "unstable"
    elif n < MIN_RUNS:
        v = "inconclusive"
    elif mean + h < published - b:
        v = "below"
    elif mean - h > published + b:
        v = "above"
    elif published - b <= mean - h and mean + h <= published + b:
        v = "reproduced"
    else:
        v = "inconclusive"
    to_decide = _runs_to_decide(published, b, mean, sd, n) if v == "inconclusive" and n else None
    return Assessment(v, published, b, mean, sd, h, n, failed, to_decide)


def verdict(published: float, values, std: float | None = None, resolution: float = 0.0, failed: int = 0) -> str:
    """``reproduced`` / ``below`` / ``above`` / ``inconclusive`` / ``unstable`` for one published cell."""
    return assess(published, values, std, resolution, failed).verdict


def _paired_outcome(diffs, tolerance: float) -> str:
    """One comparison from seed-by-seed differences ``better - worse`` (same seed: same split, same init)."""
    mean, _, h, n = mean_interval(diffs)
    if n < MIN_RUNS:
        return "inconclusive"
    if mean - h > tolerance:
        return "holds"
    if mean + h < -tolerance:
        return "fails"
    if -tolerance <= mean - h and mean + h <= tolerance:
        return "level"
    return "inconclusive"


_CLAIM_RANK = {"holds": 0, "level": 1, "inconclusive": 2, "unstable": 3, "fails": 4}


def greater_claim_outcome(comparisons, tolerance: float, failed: int = 0, total: int = 0) -> str:
    """Outcome of "A beats B1, B2, ..." from the seed-by-seed differences ``A - B`` of each comparison.

    Per comparison, with the 95 % t-interval of the mean difference: ``holds`` when it lies wholly above
    ``tolerance``; ``fails`` when wholly below ``-tolerance``; ``level`` when inside ``[-tolerance,
    tolerance]`` (the runs cannot tell A and B apart at this tolerance, so "beats" is not shown); otherwise,
    or with fewer than ``MIN_RUNS`` paired seeds, ``inconclusive``. The claim takes the worst comparison.
    More than one failed run in five among the ``total`` runs it needed makes it ``unstable``, whatever the
    comparisons say.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if total and failed / total > MAX_FAILED_FRACTION:
        return "unstable"
    outcomes = [_paired_outcome(list(d), tolerance) for d in comparisons]
    return max(outcomes, key=_CLAIM_RANK.__getitem__) if outcomes else "inconclusive"


def decreasing_claim_outcome(steps, tolerance: float, failed: int = 0, total: int = 0) -> str:
    """Outcome of "the metric falls as the setting rises" from seed-by-seed differences ``later - earlier``.

    Each step is a comparison "earlier beats later" (the differences negated) under the rules of
    :func:`greater_claim_outcome`: ``holds`` only when every step falls by more than ``tolerance``; ``fails``
    when some step rises by more than it; ``level`` when the steps are flat within it.
    """
    return greater_claim_outcome([[-d for d in step] for step in steps], tolerance, failed, total)
