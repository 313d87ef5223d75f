"""The claims of hybrid batch training (arXiv 2408.10536) checked against measured numbers.

Input, per benchmark: a score table `system -> {setting: mAP, "rank_distance": multilingual rank distance}`
(`scores_from_metrics` reads one metrics.json) and, optionally, a source of paired tests `compare(a, b, key)
-> Comparison of a - b` (key: a setting, or "rank_distance"), e.g. `comparisons_from_per_query`. The
systems compared are the three samplers `mono`, `cross` and the designated hybrid (`hybrid`, or the only
`hybrid@alpha`); the zero-shot model and other alphas are context, not competitors.

All the tests of one benchmark form one Holm family (`benchmark_family`): cross vs mono, hybrid vs mono and
hybrid vs cross, on every setting and on rank distance; the report's significance table shows exactly
these tests with these adjusted p-values. "Significant" means adjusted p < level (default 0.05). Every
claim is a set of assertions "W beats L on key" (strict) or "W is best or tied with L on key" (tie allowed);
the rules, the equivalence margins and the verdict words (holds / does not hold / not decided / not checked)
are in `equivalence.py`. The direction is read from the table (rank distance: lower is better).
A claim's verdict is its worst assertion's (does not hold < not decided < not checked < holds).

Claims:
1. mono is best or tied in the monolingual setting (tie: mono vs cross, mono vs hybrid).
2. cross beats mono in the cross-lingual and the multilingual settings (strict, 2 assertions).
3. hybrid is best or tied-best in the multilingual setting (tie: hybrid vs mono, hybrid vs cross).
4. hybrid is within noise of the best sampler in every setting (tie: hybrid vs mono and vs cross, in each
   of the three settings; claim 3 is its multilingual part).
5. hybrid reduces the rank distance against mono (strict).
6. the zero-shot benchmark (never seen in training, e.g. MLQA-R) shows the same ordering: claims 1-5
   checked on each benchmark, then compared: `does not hold` if some claim does not hold on one benchmark
   and does not fail on the other; holds if every verdict is the same and decided (holds or does not hold)
   on both; otherwise `not decided` (or `not checked` when that is all that keeps it open).
An assertion whose systems or settings are missing from the table (a benchmark without a setting, a
sampler not trained) is skipped and listed in the claim's evidence and `numbers["skipped"]`; a claim with
no assertion left is left out (and logged).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from hybridbatch.experiments.equivalence import (
    FAILS,
    HOLDS,
    MIN_UNITS,
    NOT_CHECKED,
    NOT_DECIDED,
    NOT_SIGNIFICANT,  # noqa: F401  (re-exported: the verdict words are read from here)
    RANK_DISTANCE,
    VERDICT_ORDER,  # noqa: F401
    Margins,
    oriented,
    strict_verdict,
    tie_verdict,
    worst,
)
from hybridbatch.experiments.significance import Comparison, PerQuery, compare_systems, holm

log = logging.getLogger(__name__)

SETTINGS = ("monolingual", "crosslingual", "multilingual")
Scores = Mapping[str, Mapping[str, float]]  # system -> {setting or "rank_distance": value}
CompareFn = Callable[[str, str, str], "Comparison | None"]  # (a, b, key) -> test of a - b
Key = tuple[str, str, str]  # (a, b, setting or "rank_distance"): the test of a - b


@dataclass
class ClaimVerdict:
    id: str
    text: str
    verdict: str  # holds / does not hold / not decided / not checked
    evidence: str
    numbers: dict = field(default_factory=dict)


@dataclass
class TestFamily:
    """The tests of one benchmark adjusted together (Holm): what the report's table shows and the claims read."""

    keys: list[Key]  # in order; only tests that exist (both systems have per-query scores there)
    tests: dict[Key, Comparison]
    adjusted: dict[Key, float]

    def get(self, a: str, b: str, key: str) -> tuple[Comparison | None, float | None]:
        """(test of a - b, its Holm-adjusted p-value), read the other way round if need be; (None, None)
        if the family has no such test."""
        if (a, b, key) in self.tests:
            return self.tests[(a, b, key)], self.adjusted[(a, b, key)]
        if (b, a, key) in self.tests:
            return self.tests[(b, a, key)].reversed(), self.adjusted[(b, a, key)]
        return None, None

    def __len__(self) -> int:
        return len(self.keys)


CompareSource = CompareFn | Mapping[Key, Comparison] | TestFamily | None


def scores_from_metrics(metrics: Mapping, measure: str = "map") -> dict[str, float]:
    """{setting: measure, "rank_distance": ...} from a metrics.json; absent settings are left out."""
    row = {s: float(metrics[s][measure]) for s in SETTINGS if metrics.get(s)}
    if metrics.get("multilingual") and metrics["multilingual"].get(RANK_DISTANCE) is not None:
        row[RANK_DISTANCE] = float(metrics["multilingual"][RANK_DISTANCE])
    return row


def comparisons_from_per_query(per_query: Mapping[str, PerQuery], measure: str = "map", **test) -> CompareFn:
    """A cached `compare(a, b, key)` over per-query tables (system -> `load_per_query` / `combine_seeds`).

    Settings are compared on `measure`; "rank_distance" on the multilingual per-query rank distance when
    the table has it (else None: untested). `test` goes to `compare_systems` (method, n_resamples, seed,
    group_of: the parallel groups to resample, `grouping.py`; without it queries are the unit).
    """
    cache: dict[tuple[str, str, str], Comparison | None] = {}

    def compare(a: str, b: str, key: str) -> Comparison | None:
        if (b, a, key) in cache:  # the same test read the other way round
            known = cache[(b, a, key)]
            return None if known is None else known.reversed()
        if (a, b, key) not in cache:
            setting, column = ("multilingual", RANK_DISTANCE) if key == RANK_DISTANCE else (key, measure)
            cache[(a, b, key)] = compare_systems(per_query[a], per_query[b], setting, column, **test)
        return cache[(a, b, key)]

    return compare


def _lookup(source: CompareSource) -> CompareFn:
    if source is None:
        return lambda a, b, key: None
    if isinstance(source, TestFamily):
        return lambda a, b, key: source.get(a, b, key)[0]
    if callable(source):
        return source

    def from_mapping(a: str, b: str, key: str) -> Comparison | None:
        if (a, b, key) in source:
            return source[(a, b, key)]
        return source[(b, a, key)].reversed() if (b, a, key) in source else None

    return from_mapping


def claim_pairs(systems: Sequence[str], hybrid: str | None) -> list[Key]:
    """The tests the claims need: cross vs mono, hybrid vs mono, hybrid vs cross, on every setting and on
    rank distance (those whose two systems are both in `systems`)."""
    pairs = [(a, b) for a, b in (("cross", "mono"), (hybrid, "mono"), (hybrid, "cross"))
             if a in systems and b in systems]
    return [(a, b, key) for a, b in pairs for key in (*SETTINGS, RANK_DISTANCE)]


def build_family(keys: Sequence[Key], compare: CompareSource) -> TestFamily:
    """Run the tests `keys` (those the source has) and adjust their p-values together (Holm)."""
    fn = _lookup(compare)
    tests = {k: t for k in keys if (t := fn(*k)) is not None}
    order = [k for k in keys if k in tests]
    return TestFamily(order, tests, dict(zip(order, holm([tests[k].p_value for k in order]), strict=True)))


def benchmark_family(systems: Sequence[str], compare: CompareSource, hybrid: str | None = None) -> TestFamily:
    """The one Holm family of a benchmark: `claim_pairs` over the systems, tested by `compare`. The report's
    significance table and `check_claims` both use it, so they read the same adjusted p-values."""
    if isinstance(compare, TestFamily):
        return compare
    return build_family(claim_pairs(systems, hybrid or designated_hybrid(list(systems))), compare)


def _has(scores: Scores, system: str, key: str) -> bool:
    value = scores.get(system, {}).get(key)
    return value is not None and math.isfinite(value)


def _assertion(winner: str, loser: str, key: str, strict: bool, scores: Scores, family: TestFamily,
               level: float, margins: Margins) -> tuple[dict, str]:
    """One assertion's row of numbers and its line of evidence."""
    w, lo = scores[winner][key], scores[loser][key]
    diff = w - lo
    ahead = -diff if key == RANK_DISTANCE else diff
    test, p_holm = family.get(winner, loser, key)
    margin = margins.for_key(key, test, (w, lo))
    if strict:
        verdict = strict_verdict(ahead, p_holm, level)
    else:
        verdict = tie_verdict(None if test is None else oriented(test, key)[1], margin)
    few = test is not None and test.units < MIN_UNITS
    if few and verdict in (HOLDS, FAILS):
        verdict = NOT_DECIDED  # a test over so few independent units decides nothing
    row = {"winner": winner, "loser": loser, "key": key, "winner_score": w, "loser_score": lo, "diff": diff,
           "verdict": verdict, "p_holm": p_holm, "margin": None if strict else margin}
    if test is None:
        stat = "untested"
    else:
        mdd = test.mdd(level)
        row.update(test_diff=test.diff, ci=list(test.ci), p=test.p_value, n=test.n, method=test.method,
                   unit=test.unit, units=test.units, se=test.se, mdd=mdd)
        stat = (f"{test.confidence:.0%} CI [{test.ci[0]:+.4f}, {test.ci[1]:+.4f}], p_holm={p_holm:.3g}, "
                f"MDD {mdd:.4f}, {test.units} {'groups' if test.unit == 'group' else 'queries'}")
        stat += "" if strict else f", margin ±{margin:.4g}"
        stat += f", fewer than {MIN_UNITS} units: not decided" if few else ""
    return row, (f"{key}: {winner} {w:.4f} vs {loser} {lo:.4f} ({diff:+.4f}; {stat}) -> {verdict}")


def _family(claim_id: str, text: str, pairs: Sequence[Key], strict: bool, scores: Scores, family: TestFamily,
            level: float, margins: Margins) -> ClaimVerdict | None:
    """Check the assertions "winner beats (or ties with) loser on key" of one claim."""
    present = [_has(scores, w, k) and _has(scores, lo, k) for w, lo, k in pairs]
    skipped = [f"{w} vs {lo} on {k}" for (w, lo, k), ok in zip(pairs, present, strict=True) if not ok]
    pairs = [pair for pair, ok in zip(pairs, present, strict=True) if ok]
    if not pairs:
        log.warning("claim %s: systems or settings missing from the table; left out", claim_id)
        return None
    rows, parts = zip(*(_assertion(w, lo, k, strict, scores, family, level, margins) for w, lo, k in pairs),
                      strict=True)
    parts = list(parts)
    if skipped:
        parts.append("skipped (not in the table): " + ", ".join(skipped))
    kind = "strict" if strict else "tie allowed"
    numbers = {"assertions": list(rows), "skipped": skipped, "level": level, "kind": kind,
               "family_size": len(family)}
    return ClaimVerdict(claim_id, text, worst(r["verdict"] for r in rows), "; ".join(parts), numbers)


def designated_hybrid(systems: Sequence[str]) -> str | None:
    """`hybrid` if present, else the only `hybrid@alpha`, else `hybrid@0.5`; None if ambiguous or absent."""
    if "hybrid" in systems:
        return "hybrid"
    variants = [s for s in systems if s.startswith("hybrid@")]
    if len(variants) == 1:
        return variants[0]
    return "hybrid@0.5" if "hybrid@0.5" in variants else None


def check_claims(scores: Scores, compare: CompareSource = None, *, level: float = 0.05,
                 hybrid: str | None = None, margins: Margins | None = None) -> list[ClaimVerdict]:
    """Claims 1-5 on one benchmark; see the module docstring for the rules. `compare`: a `TestFamily`
    (the report passes the one its table shows), or a source of tests made into `benchmark_family`."""
    hy = hybrid or designated_hybrid(list(scores))
    if hy is None:
        raise ValueError(f"cannot tell which system is the hybrid among {sorted(scores)}; pass hybrid=")
    family = benchmark_family(list(scores), compare, hy)
    margins = margins or Margins()
    others = ("mono", "cross")
    specs = [
        ("1", "mono is best (or tied) in the monolingual setting",
         [("mono", s, "monolingual") for s in ("cross", hy)], False),
        ("2", "cross beats mono in the cross-lingual and multilingual settings",
         [("cross", "mono", s) for s in ("crosslingual", "multilingual")], True),
        ("3", f"{hy} is best or tied-best in the multilingual setting",
         [(hy, s, "multilingual") for s in others], False),
        ("4", f"{hy} is within noise of the best sampler in every setting",
         [(hy, s, setting) for setting in SETTINGS for s in others], False),
        ("5", f"{hy} reduces the rank distance against mono", [(hy, "mono", RANK_DISTANCE)], True),
    ]
    verdicts = [_family(cid, text, pairs, strict, scores, family, level, margins)
                for cid, text, pairs, strict in specs]
    return [v for v in verdicts if v is not None]


def check_transfer(in_domain: Sequence[ClaimVerdict], zero_shot: Sequence[ClaimVerdict],
                   names: tuple[str, str] = ("in-domain", "zero-shot")) -> ClaimVerdict:
    """Claim 6: the verdicts of claims 1-5 on the zero-shot benchmark against those in-domain."""
    first = {v.id.rsplit("/", 1)[-1]: v.verdict for v in in_domain}
    second = {v.id.rsplit("/", 1)[-1]: v.verdict for v in zero_shot}
    shared = sorted(set(first) & set(second))
    pairs = {cid: {names[0]: first[cid], names[1]: second[cid]} for cid in shared}
    decided = (HOLDS, FAILS)
    if not shared:
        verdict = NOT_CHECKED
    elif any((first[c] == FAILS) != (second[c] == FAILS) for c in shared):
        verdict = FAILS
    elif all(first[c] == second[c] and first[c] in decided for c in shared):
        verdict = HOLDS
    elif any(NOT_DECIDED in (first[c], second[c]) for c in shared):
        verdict = NOT_DECIDED
    else:
        verdict = NOT_CHECKED
    evidence = "; ".join(f"claim {c}: {names[0]} {first[c]}, {names[1]} {second[c]}" for c in shared)
    return ClaimVerdict("6", f"{names[1]} shows the same ordering as {names[0]}", verdict,
                        evidence or "no claim checked on both benchmarks", {"verdicts": pairs})


def check_benchmarks(tables: Mapping[str, Scores], compares: Mapping[str, CompareSource] | None = None, *,
                     in_domain: str, zero_shot: str, level: float = 0.05,
                     hybrid: str | None = None, margins: Margins | None = None) -> list[ClaimVerdict]:
    """Claims 1-5 on every benchmark (ids `benchmark/k`), then claim 6 between the two named ones."""
    compares = compares or {}
    per_bench: dict[str, list[ClaimVerdict]] = {}
    for bench, scores in tables.items():
        per_bench[bench] = check_claims(scores, compares.get(bench), level=level, hybrid=hybrid, margins=margins)
        for v in per_bench[bench]:
            v.id, v.text = f"{bench}/{v.id}", f"[{bench}] {v.text}"
    claim6 = check_transfer(per_bench[in_domain], per_bench[zero_shot], (in_domain, zero_shot))
    return [v for vs in per_bench.values() for v in vs] + [claim6]


def mean_over_seeds(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """One table row from several seeds: the mean of each score (consistent with `combine_seeds`)."""
    keys = set.intersection(*(set(r) for r in rows))
    return {k: sum(r[k] for r in rows) / len(rows) for k in sorted(keys)}
