"""Verdict words and the rules that turn a paired test into one, for "W beats L" and for "W is best or tied".

Verdicts: `holds`, `does not hold`, `not decided` (the test cannot tell), `not checked` (no test: no
per-query scores). A test is read oriented so that positive means W is better (rank distance: lower is
better, so its difference and interval change sign).

- strict, "W beats L": holds if W is ahead and the Holm-adjusted p-value (the benchmark's one family,
  `claims.benchmark_family`) is below the level; not decided if W is ahead without that; does not hold if W
  is not ahead. Without a test: not checked when W is ahead, does not hold when it is not.
- tie allowed, "W is best or tied", "within noise of the best": a non-inferiority question, the one-sided
  half of TOST. It holds only when the confidence interval of W - L lies above -margin (W is better, or worse
  by less than the equivalence margin, shown by the interval); does not hold when the interval lies below
  -margin (W worse by more than the margin, shown); otherwise not decided, however the point estimates
  fall: a test too weak to see a difference does not make a tie. Without a test: not checked.
  The claims that allow ties are conjunctions ("tied with every other sampler"): by the intersection-union
  principle each interval at the stated confidence suffices, with no multiplicity adjustment.

Too few units: a test over fewer than `MIN_UNITS` independent units (groups, or queries where there are no
groups) gives `not decided` whatever its interval says.

Margins: `significance.equivalence_margin` in the measure's own unit (default 0.005 mAP), and
`significance.rank_distance_margin` for rank distance, relative: a share of the mean rank distance of the
two systems (default 0.02, i.e. 2%), because rank distances scale with the size of the pooled corpus and
differ between benchmarks by an order of magnitude.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hybridbatch.experiments.significance import Comparison

HOLDS, FAILS, NOT_DECIDED, NOT_CHECKED = "holds", "does not hold", "not decided", "not checked"
# A test resampling fewer independent units than this decides nothing: with one unit the bootstrap interval has
# zero width and any difference looked significant (found on a one-question MMMU fixture).
MIN_UNITS = 10
NOT_SIGNIFICANT = NOT_DECIDED  # the former name of "ahead, but the test does not reject"
VERDICT_ORDER = {FAILS: 0, NOT_DECIDED: 1, NOT_CHECKED: 2, HOLDS: 3}  # a claim takes its worst assertion's
RANK_DISTANCE = "rank_distance"


@dataclass(frozen=True)
class Margins:
    """Equivalence margins: absolute for mAP-like measures, relative for rank distance."""

    measure: float = 0.005
    rank_distance_relative: float = 0.02

    def for_key(self, key: str, comparison: Comparison | None = None,
                scores: tuple[float, float] | None = None) -> float:
        """The margin for a setting, or for rank distance around the two systems' mean rank distance (from
        `scores`, else from the test's means)."""
        if key != RANK_DISTANCE:
            return self.measure
        pair = scores if scores is not None else (comparison.means if comparison is not None else None)
        if pair is None or not all(math.isfinite(x) for x in pair):
            return math.nan
        return self.rank_distance_relative * (abs(pair[0]) + abs(pair[1])) / 2

    def describe(self) -> str:
        return (f"±{self.measure:g} (mAP and other measures), ±{self.rank_distance_relative:.0%} of the two "
                f"systems' mean rank distance")


def oriented(test: Comparison, key: str) -> tuple[float, tuple[float, float]]:
    """(W's advantage, its interval): positive is better for W (lower rank distance is better)."""
    if key == RANK_DISTANCE:
        return -test.diff, (-test.ci[1], -test.ci[0])
    return test.diff, test.ci


def strict_verdict(ahead: float, p_holm: float | None, level: float) -> str:
    """"W beats L" from W's advantage in the table and the family's Holm-adjusted p-value."""
    if ahead <= 0:
        return FAILS
    if p_holm is None:
        return NOT_CHECKED
    return HOLDS if p_holm < level else NOT_DECIDED


def tie_verdict(interval: tuple[float, float] | None, margin: float) -> str:
    """"W is best or tied (within `margin`)" from the interval of W's advantage: non-inferiority."""
    if interval is None or not math.isfinite(margin):
        return NOT_CHECKED
    if interval[0] > -margin:
        return HOLDS
    if interval[1] < -margin:
        return FAILS
    return NOT_DECIDED


def within_margin(test: Comparison, margin: float) -> str:
    """For the report: "yes" if the interval of A - B lies inside ±margin (equivalent), "no" if it lies
    outside it entirely (different by more than the margin), "–" if it straddles a bound (undecided)."""
    low, high = test.ci
    if not math.isfinite(margin):
        return "–"
    if -margin < low and high < margin:
        return "yes"
    if high < -margin or low > margin:
        return "no"
    return "–"


def worst(verdicts) -> str:
    return min(verdicts, key=VERDICT_ORDER.__getitem__)
