"""The claims of hybrid batch training (arXiv 2408.10536) checked against measured numbers.

Input, per benchmark: a score table `system -> {setting: mAP, "rank_distance": multilingual rank distance}`
(`scores_from_metrics` reads one metrics.json) and, optionally, a source of paired tests `compare(a, b, key)
-> Comparison of a - b` (key: a setting, or "rank_distance"), e.g. `comparisons_from_per_query`. The
systems compared are the three samplers `mono`, `cross` and the designated hybrid (`hybrid`, or the only
`hybrid@alpha`); the zero-shot model and other alphas are context, not competitors.

Every claim is a family of assertions "W beats L on key" of two kinds; the p-values of a claim's family are
Holm-adjusted together, and "significant" means adjusted p < level (default 0.05). The direction is read
from the table (rank distance: lower is better).
- strict ("W beats L"): holds if W is ahead and significant; `not significant` if W is ahead but the test
  does not reject (or there is no test); `does not hold` if W is not ahead.
- tie allowed ("W is best or tied", "within noise"): holds if W is ahead or equal, or behind but not
  significantly; `does not hold` if W is significantly behind. Without a test a tie cannot be shown, so
  W must be ahead or equal in the numbers.
A claim's verdict is its worst assertion's (does not hold < not significant < holds). So tie claims are
never `not significant`: "tied" is what they allow.

Claims:
1. mono is best or tied in the monolingual setting (tie: mono vs cross, mono vs hybrid).
2. cross beats mono in the cross-lingual and the multilingual settings (strict, 2 assertions).
3. hybrid is best or tied-best in the multilingual setting (tie: hybrid vs mono, hybrid vs cross).
4. hybrid is within noise of the best sampler in every setting (tie: hybrid vs mono and vs cross, in each
   of the three settings; claim 3 is its multilingual part, with its own smaller family).
5. hybrid reduces the rank distance against mono (strict).
6. the zero-shot benchmark (never seen in training, e.g. MLQA-R) shows the same ordering: claims 1-5
   checked on each benchmark, then compared: holds if every verdict is the same on both; `not significant`
   if they differ only between holds and `not significant` (same direction, significance lost on one);
   `does not hold` if some claim does not hold on one benchmark and does on the other (either verdict).
An assertion whose systems or settings are missing from the table (a benchmark without a setting, a
sampler not trained) is skipped and listed in the claim's evidence and `numbers["skipped"]`; a claim with
no assertion left is left out (and logged).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from hybridbatch.experiments.significance import Comparison, PerQuery, compare_systems, holm

log = logging.getLogger(__name__)

HOLDS, NOT_SIGNIFICANT, FAILS = "holds", "not significant", "does not hold"
_RANK = {FAILS: 0, NOT_SIGNIFICANT: 1, HOLDS: 2}
SETTINGS = ("monolingual", "crosslingual", "multilingual")
RANK_DISTANCE = "rank_distance"
Scores = Mapping[str, Mapping[str, float]]  # system -> {setting or "rank_distance": value}
CompareFn = Callable[[str, str, str], "Comparison | None"]  # (a, b, key) -> test of a - b
CompareSource = CompareFn | Mapping[tuple[str, str, str], Comparison] | None


@dataclass
class ClaimVerdict:
    id: str
    text: str
    verdict: str  # holds / does not hold / not significant
    evidence: str
    numbers: dict = field(default_factory=dict)


def scores_from_metrics(metrics: Mapping, measure: str = "map") -> dict[str, float]:
    """{setting: measure, "rank_distance": ...} from a metrics.json; absent settings are left out."""
    row = {s: float(metrics[s][measure]) for s in SETTINGS if metrics.get(s)}
    if metrics.get("multilingual") and metrics["multilingual"].get(RANK_DISTANCE) is not None:
        row[RANK_DISTANCE] = float(metrics["multilingual"][RANK_DISTANCE])
    return row


def comparisons_from_per_query(per_query: Mapping[str, PerQuery], measure: str = "map", **test) -> CompareFn:
    """A cached `compare(a, b, key)` over per-query tables (system -> `load_per_query` / `combine_seeds`).

    Settings are compared on `measure`; "rank_distance" on the multilingual per-query rank distance when
    the table has it (else None: untested). `test` goes to `compare_systems` (method, n_resamples, seed).
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
    if callable(source):
        return source

    def from_mapping(a: str, b: str, key: str) -> Comparison | None:
        if (a, b, key) in source:
            return source[(a, b, key)]
        return source[(b, a, key)].reversed() if (b, a, key) in source else None

    return from_mapping


def _assertion_verdict(ahead: float, p_holm: float | None, strict: bool, level: float) -> str:
    significant = p_holm is not None and p_holm < level
    if strict:
        return FAILS if ahead <= 0 else HOLDS if significant else NOT_SIGNIFICANT
    return HOLDS if ahead >= 0 or (p_holm is not None and not significant) else FAILS


def _has(scores: Scores, system: str, key: str) -> bool:
    value = scores.get(system, {}).get(key)
    return value is not None and math.isfinite(value)


def _family(claim_id: str, text: str, pairs: Sequence[tuple[str, str, str]], strict: bool,
            scores: Scores, compare: CompareFn, level: float) -> ClaimVerdict | None:
    """Check the assertions "winner beats loser on key" of one claim, Holm-adjusted together."""
    present = [_has(scores, w, k) and _has(scores, lo, k) for w, lo, k in pairs]
    skipped = [f"{w} vs {lo} on {k}" for (w, lo, k), ok in zip(pairs, present, strict=True) if not ok]
    pairs = [pair for pair, ok in zip(pairs, present, strict=True) if ok]
    if not pairs:
        log.warning("claim %s: systems or settings missing from the table; left out", claim_id)
        return None
    tests = [compare(w, lo, k) for w, lo, k in pairs]
    tested = [i for i, t in enumerate(tests) if t is not None]
    adjusted = dict(zip(tested, holm([tests[i].p_value for i in tested]), strict=True))
    rows, parts = [], []
    for i, ((winner, loser, key), test) in enumerate(zip(pairs, tests, strict=True)):
        diff = scores[winner][key] - scores[loser][key]
        ahead = -diff if key == RANK_DISTANCE else diff
        verdict = _assertion_verdict(ahead, adjusted.get(i), strict, level)
        row = {"winner": winner, "loser": loser, "key": key, "winner_score": scores[winner][key],
               "loser_score": scores[loser][key], "diff": diff, "verdict": verdict, "p_holm": adjusted.get(i)}
        if test is None:
            stat = "untested"
        else:
            row.update(test_diff=test.diff, ci=list(test.ci), p=test.p_value, n=test.n, method=test.method)
            stat = (f"{test.confidence:.0%} CI [{test.ci[0]:+.4f}, {test.ci[1]:+.4f}], "
                    f"p_holm={adjusted[i]:.3g}, n={test.n}")
        rows.append(row)
        parts.append(f"{key}: {winner} {scores[winner][key]:.4f} vs {loser} {scores[loser][key]:.4f} "
                     f"({diff:+.4f}; {stat}) -> {verdict}")
    verdict = min((r["verdict"] for r in rows), key=_RANK.__getitem__)
    if skipped:
        parts.append("skipped (not in the table): " + ", ".join(skipped))
    kind = "strict" if strict else "tie allowed"
    numbers = {"assertions": rows, "skipped": skipped, "level": level, "kind": kind}
    return ClaimVerdict(claim_id, text, verdict, "; ".join(parts), numbers)


def designated_hybrid(systems: Sequence[str]) -> str | None:
    """`hybrid` if present, else the only `hybrid@alpha`, else `hybrid@0.5`; None if ambiguous or absent."""
    if "hybrid" in systems:
        return "hybrid"
    variants = [s for s in systems if s.startswith("hybrid@")]
    if len(variants) == 1:
        return variants[0]
    return "hybrid@0.5" if "hybrid@0.5" in variants else None


def check_claims(scores: Scores, compare: CompareSource = None, *, level: float = 0.05,
                 hybrid: str | None = None) -> list[ClaimVerdict]:
    """Claims 1-5 on one benchmark; see the module docstring for the rules."""
    fn = _lookup(compare)
    hy = hybrid or designated_hybrid(list(scores))
    if hy is None:
        raise ValueError(f"cannot tell which system is the hybrid among {sorted(scores)}; pass hybrid=")
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
    verdicts = [_family(cid, text, pairs, strict, scores, fn, level) for cid, text, pairs, strict in specs]
    return [v for v in verdicts if v is not None]


def check_transfer(in_domain: Sequence[ClaimVerdict], zero_shot: Sequence[ClaimVerdict],
                   names: tuple[str, str] = ("in-domain", "zero-shot")) -> ClaimVerdict:
    """Claim 6: the verdicts of claims 1-5 on the zero-shot benchmark against those in-domain."""
    first = {v.id.rsplit("/", 1)[-1]: v.verdict for v in in_domain}
    second = {v.id.rsplit("/", 1)[-1]: v.verdict for v in zero_shot}
    shared = sorted(set(first) & set(second))
    pairs = {cid: {names[0]: first[cid], names[1]: second[cid]} for cid in shared}
    if not shared:
        verdict = NOT_SIGNIFICANT
    elif all(first[c] == second[c] for c in shared):
        verdict = HOLDS
    elif all((first[c] == FAILS) == (second[c] == FAILS) for c in shared):
        verdict = NOT_SIGNIFICANT
    else:
        verdict = FAILS
    evidence = "; ".join(f"claim {c}: {names[0]} {first[c]}, {names[1]} {second[c]}" for c in shared)
    return ClaimVerdict("6", f"{names[1]} shows the same ordering as {names[0]}", verdict,
                        evidence or "no claim checked on both benchmarks", {"verdicts": pairs})


def check_benchmarks(tables: Mapping[str, Scores], compares: Mapping[str, CompareSource] | None = None, *,
                     in_domain: str, zero_shot: str, level: float = 0.05,
                     hybrid: str | None = None) -> list[ClaimVerdict]:
    """Claims 1-5 on every benchmark (ids `benchmark/k`), then claim 6 between the two named ones."""
    compares = compares or {}
    per_bench: dict[str, list[ClaimVerdict]] = {}
    for bench, scores in tables.items():
        per_bench[bench] = check_claims(scores, compares.get(bench), level=level, hybrid=hybrid)
        for v in per_bench[bench]:
            v.id, v.text = f"{bench}/{v.id}", f"[{bench}] {v.text}"
    claim6 = check_transfer(per_bench[in_domain], per_bench[zero_shot], (in_domain, zero_shot))
    return [v for vs in per_bench.values() for v in vs] + [claim6]


def mean_over_seeds(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """One table row from several seeds: the mean of each score (consistent with `combine_seeds`)."""
    keys = set.intersection(*(set(r) for r in rows))
    return {k: sum(r[k] for r in rows) / len(rows) for k in sorted(keys)}
