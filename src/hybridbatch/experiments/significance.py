"""Paired significance tests between two systems evaluated on the same queries.

The statistic is the difference of the two systems' setting scores, a - b. Our settings are macro averages
(mean over query languages, or over x-y pairs, of the per-query means), so with `strata` the statistic is
the same macro average of the per-query differences, and resampling keeps every stratum's size: a
language with few queries keeps its weight, exactly as in metrics.json. Without `strata` it is the plain
mean over queries.

- paired_bootstrap: resample queries with replacement within strata. The 95% interval is the percentile
  interval of the resampled statistic; the two-sided p-value comes from the bootstrap distribution shifted
  to the null (difference 0): p = (1 + #{|s* - s| >= |s|}) / (B + 1)  (Efron & Tibshirani 1993, 16.4).
- paired_randomization: under the null the two systems are exchangeable on every query, so each query's
  difference flips its sign with probability 1/2 (approximate permutation test, Noreen 1989);
  p = (1 + #{|s*| >= |s|}) / (R + 1). Its interval is the same percentile bootstrap (same seed).

Several seeds per system: use `combine_seeds`, so that a system's per-query score is the mean over its
seeds. The test then asks whether the systems differ on these queries averaged over training seeds; it
does not model the variance between seeds (too few seeds to estimate it per query).

The unit resampled: a query (`unit="query"`), or a parallel group (`groups=`: one label per row, e.g. the
question that the row's query translates, `grouping.py`). Translations of one question are not independent
(in the pooled setting they share one relevant set), so resampling queries gives intervals too narrow. With
groups, every resample draws whole groups with replacement and every flip flips a whole group; the statistic
is unchanged: each row keeps the weight it has in the observed (macro) average, and a group contributes the
weighted sum of its rows (`_unit_contributions`). Where every group lies inside one stratum, groups are
resampled within their strata (stratification kept); where groups span strata (a question in 11 languages)
they are resampled over all groups. With one row per group this is exactly the per-query test. With every
question present in every language (XQuAD-R) the fixed weights equal the resample's own macro average; with
questions missing in some languages (MLQA-R) they are the linearization of that ratio.

Cross-lingual rows `qid>y` of one query are not independent either: by query, `compare_systems` folds them
into one value per query (`collapse_pairs`, same statistic); by group, they are rows of their group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from hybridbatch.experiments.per_query import (  # noqa: F401  (re-exported: read from here since they began)
    PerQuery,
    align,
    collapse_pairs,
    combine_seeds,
    load_per_query,
    query_language,
    stratum_of,
)

_CHUNK_ELEMENTS = 1 << 21  # resampled values held at once (16 MiB of float64) bounds memory
_TIE = 1e-9  # relative tolerance so that ties in exact arithmetic count as ties in floating point


def minimum_detectable_difference(se: float, level: float = 0.05, power: float = 0.8) -> float:
    """The true difference a two-sided test at `level` detects with probability `power`: (z_(1-level/2) +
    z_power) x SE, ~2.80 SE at 0.05 and 80% (normal approximation of the bootstrap distribution)."""
    z = NormalDist()
    return (z.inv_cdf(1 - level / 2) + z.inv_cdf(power)) * se


@dataclass(frozen=True)
class Comparison:
    """The outcome of one paired test of a - b."""

    diff: float  # observed statistic: (macro) mean of a - b
    ci: tuple[float, float]  # percentile bootstrap interval at `confidence`
    p_value: float  # two-sided
    n: int  # paired rows (queries, or query-target rows)
    method: str  # "bootstrap" or "randomization"
    strata: int = 1  # number of strata (1 when unstratified)
    confidence: float = 0.95
    unit: str = "query"  # what was resampled / flipped: "query" or "group"
    units: int = 0  # how many of them (groups, or queries)
    se: float = 0.0  # standard deviation of the bootstrap distribution
    means: tuple[float, float] = (0.0, 0.0)  # the (macro) means of a and of b

    def significant(self, level: float = 0.05) -> bool:
        return self.p_value < level

    def mdd(self, level: float = 0.05, power: float = 0.8) -> float:
        """The minimum detectable difference of this test (see `minimum_detectable_difference`)."""
        return minimum_detectable_difference(self.se, level, power)

    def reversed(self) -> Comparison:
        """The same test read as b - a (both p-values are symmetric)."""
        return Comparison(-self.diff, (-self.ci[1], -self.ci[0]), self.p_value, self.n, self.method,
                          self.strata, self.confidence, self.unit, self.units, self.se,
                          (self.means[1], self.means[0]))


def _prepare(a, b, strata) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Per-query differences, the positions of each stratum, and the weight of each query in the statistic."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"a and b must be non-empty 1-d arrays of one length, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("scores must be finite (drop the queries without a value first; `align` does)")
    if strata is None:
        members = [np.arange(len(a))]
    else:
        labels = np.asarray(strata)
        if labels.shape != a.shape:
            raise ValueError(f"strata must have one label per query, got {labels.shape} for {a.shape}")
        _, codes = np.unique(labels, return_inverse=True)
        members = [np.flatnonzero(codes == k) for k in range(codes.max() + 1)]
    weight = np.empty(len(a))
    for rows in members:  # macro average: every stratum weighs 1/S, shared by its queries
        weight[rows] = 1.0 / (len(members) * len(rows))
    return a - b, members, weight


@dataclass(frozen=True)
class _Units:
    """What a test resamples: each unit's contribution to the statistic, and the units of each stratum."""

    contribution: np.ndarray  # (U,) sum over the unit's rows of weight x difference; the statistic is the sum
    strata: list[np.ndarray]  # unit positions per resampling stratum
    kind: str  # "query" or "group"
    means: tuple[float, float]
    strata_count: int  # strata of the statistic (languages or pairs)


def _unit_contributions(a, b, strata, groups) -> _Units:
    """Rows -> units: a group's contribution is the weighted sum of its rows (a row is its own unit without
    groups). Units are stratified by their stratum when every unit lies inside one stratum, else not."""
    d, row_strata, weight = _prepare(a, b, strata)
    means = (float(weight @ np.asarray(a, dtype=np.float64)), float(weight @ np.asarray(b, dtype=np.float64)))
    if groups is None:
        codes, kind = np.arange(len(d)), "query"
    else:
        labels = np.asarray(groups)
        if labels.shape != d.shape:
            raise ValueError(f"groups must have one label per row, got {labels.shape} for {d.shape}")
        _, codes = np.unique(labels, return_inverse=True)
        kind = "group"
    contribution = np.bincount(codes, weights=weight * d, minlength=codes.max() + 1)
    stratum_code = np.empty(len(d), dtype=np.int64)
    for k, rows in enumerate(row_strata):
        stratum_code[rows] = k
    lowest = np.full(len(contribution), len(row_strata))
    highest = np.full(len(contribution), -1)
    np.minimum.at(lowest, codes, stratum_code)
    np.maximum.at(highest, codes, stratum_code)
    if np.array_equal(lowest, highest):  # every unit inside one stratum: resample within strata
        unit_strata = [np.flatnonzero(lowest == k) for k in range(len(row_strata))]
        unit_strata = [u for u in unit_strata if len(u)]
    else:
        unit_strata = [np.arange(len(contribution))]
    return _Units(contribution, unit_strata, kind, means, len(row_strata))


def _chunks(n_resamples: int, n: int):
    size = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_resamples, size):
        yield min(size, n_resamples - start)


def _bootstrap_stats(units: _Units, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The statistic on `n_resamples` resamples of units drawn with replacement within each unit stratum.

    A stratum of n units contributes the sum of n drawn contributions; with one query per unit and the
    macro weights that is the stratum's resampled mean over the number of strata, as before groups."""
    # float32 values and int32 indices halve the memory traffic (the cost here); sums stay float64
    scale = max(float(np.abs(units.contribution).max()), 1e-300)  # float32 keeps the relative precision
    parts = [(units.contribution[g] / scale).astype(np.float32) for g in units.strata]
    stats = np.empty(n_resamples)
    done = 0
    for rows in _chunks(n_resamples, len(units.contribution)):
        acc = np.zeros(rows)
        for part in parts:
            pick = rng.integers(0, len(part), size=(rows, len(part)), dtype=np.int32)  # (rows, n_s)
            acc += part[pick].sum(axis=1, dtype=np.float64)
        stats[done:done + rows] = acc * scale
        done += rows
    return stats


def _percentile_ci(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def _at_least(values: np.ndarray, threshold: float) -> int:
    return int(np.count_nonzero(values >= threshold - _TIE * max(abs(threshold), 1e-12)))


def _result(units: _Units, observed: float, stats: np.ndarray, p_value: float, n: int, method: str,
            confidence: float) -> Comparison:
    return Comparison(observed, _percentile_ci(stats, confidence), p_value, n, method, units.strata_count,
                      confidence, units.kind, len(units.contribution), float(np.std(stats, ddof=1)), units.means)


def paired_bootstrap(a, b, n_resamples: int = 10000, seed: int = 0, strata=None,
                     confidence: float = 0.95, groups=None) -> Comparison:
    """Paired (stratified) bootstrap of the mean difference a - b, of queries or of whole `groups`; see the
    module docstring."""
    units = _unit_contributions(a, b, strata, groups)
    observed = float(units.contribution.sum())
    stats = _bootstrap_stats(units, n_resamples, np.random.default_rng(seed))
    extreme = _at_least(np.abs(stats - observed), abs(observed))
    return _result(units, observed, stats, (1 + extreme) / (1 + n_resamples), len(np.asarray(a)), "bootstrap",
                   confidence)


def _byte_sums(values: np.ndarray) -> np.ndarray:
    """(ceil(n/8), 256): row j, column v = the sum of values[8j:8j+8] at the bits set in byte v."""
    padded = np.zeros(-(-len(values) // 8) * 8)
    padded[: len(values)] = values
    bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float64)  # (256, 8)
    return padded.reshape(-1, 8) @ bits.T


def paired_randomization(a, b, n_resamples: int = 10000, seed: int = 0, strata=None,
                         confidence: float = 0.95, groups=None) -> Comparison:
    """Paired randomization (sign-flip) test of a - b, flipping queries or whole `groups`; the interval is a
    percentile bootstrap of the same units."""
    units = _unit_contributions(a, b, strata, groups)
    wd = units.contribution
    observed = float(wd.sum())
    table = _byte_sums(wd)
    offset = np.arange(table.shape[0]) * 256
    rng = np.random.default_rng(seed)
    extreme = 0
    for rows in _chunks(n_resamples, table.shape[0]):
        # one random byte decides the signs of 8 units; the table gives their flipped sum in one lookup
        raw = rng.integers(0, 256, size=(rows, table.shape[0]), dtype=np.uint8)
        flipped = table.ravel()[raw + offset].sum(axis=1)  # (rows,) sum of wd over the flipped units
        extreme += _at_least(np.abs(observed - 2 * flipped), abs(observed))
    stats = _bootstrap_stats(units, n_resamples, rng)
    return _result(units, observed, stats, (1 + extreme) / (1 + n_resamples), len(np.asarray(a)),
                   "randomization", confidence)


TESTS: dict[str, Callable[..., Comparison]] = {"bootstrap": paired_bootstrap,
                                               "randomization": paired_randomization}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the given order: reject those below the level.

    Sorted ascending, the i-th (0-based) of m is multiplied by m - i, made monotone, and capped at 1. It
    controls the family-wise error rate under any dependence, and is never less powerful than Bonferroni.
    """
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, p[order] * (len(p) - np.arange(len(p))))
    adjusted = np.empty_like(p)
    adjusted[order] = np.maximum.accumulate(scaled) if len(p) else scaled
    return [float(x) for x in adjusted]


def compare_systems(per_query_a: PerQuery, per_query_b: PerQuery, setting: str, measure: str = "map",
                    method: str = "bootstrap", n_resamples: int = 10000, seed: int = 0,
                    stratified: bool = True, by_query: bool = True,
                    group_of: Callable[[str, str], str] | None = None,
                    confidence: float = 0.95) -> Comparison | None:
    """Align two systems and test a - b; None when they share no query with that measure.

    group_of(setting, row key) -> the row's parallel group (`grouping.py`): resample / flip whole groups,
    every row (a cross-lingual `qid>y` row too) keeping its weight. Without it, queries are the unit:
    by_query: in the cross-lingual setting resample queries (all their targets together, stratified by
    query language) rather than `qid>y` rows (stratified by pair); see `collapse_pairs`. The statistic
    is the same either way.
    """
    a, b, strata, ids = align(per_query_a, per_query_b, setting, measure)
    if len(a) == 0:
        return None
    groups = None
    if group_of is not None:
        groups = np.array([group_of(setting, key) for key in ids], dtype=object)
    elif setting == "crosslingual" and by_query:
        a, b, strata, _ = collapse_pairs(a, b, ids)
    return TESTS[method](a, b, n_resamples=n_resamples, seed=seed, strata=strata if stratified else None,
                         confidence=confidence, groups=groups)
