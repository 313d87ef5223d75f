"""The report's significance tables and claim verdicts: one Holm family per base model and benchmark.

`significance_section` writes, per base model and benchmark, the unit resampled (parallel groups where the
benchmark has them, `grouping.py`), the number of units, the Holm family (`claims.benchmark_family`: the
tests the claims read, with the same adjusted p-values), the minimum detectable difference of each test and
whether its interval lies inside the equivalence margin; systems the claims do not test (other alphas) get
a table of their own, an exploratory family. `claim_verdicts` checks the claims with those same families.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hybridbatch.experiments import claims
from hybridbatch.experiments.claims import TestFamily, mean_over_seeds, scores_from_metrics
from hybridbatch.experiments.document import Document
from hybridbatch.experiments.equivalence import Margins, within_margin
from hybridbatch.experiments.grid import ZERO_SHOT, CompareConfig, system_label
from hybridbatch.experiments.grid import benchmark_label as label
from hybridbatch.experiments.grouping import RULES, describe_rule, grouping_rule
from hybridbatch.experiments.significance import align, combine_seeds, load_per_query, paired_bootstrap

if TYPE_CHECKING:
    from hybridbatch.experiments.report_results import Results

SETTINGS = ("monolingual", "crosslingual", "multilingual")
SIGNIFICANCE_HEADER = ["A", "B", "setting", "A − B", "95% CI", "p", "p (Holm)", "significant", "MDD",
                       "equivalent (margin)", "queries", "resampled units", "seeds with this sign"]


def _other_pairs(systems: list[str], hybrid: str) -> list[tuple[str, str, str]]:
    """Systems the claims do not test (other alphas) against mono and against cross: exploratory."""
    return [(s, ref, key) for s in systems if s not in ("mono", "cross", hybrid) for ref in ("mono", "cross")
            if ref in systems for key in (*SETTINGS, "rank_distance")]


def margins_of(config: CompareConfig) -> Margins:
    sig = config.significance
    return Margins(sig.equivalence_margin, sig.rank_distance_margin)


def unit_of(config: CompareConfig, bench: str) -> str:
    """"group" (with the benchmark's rule) or "query": what the tests resample on this benchmark."""
    sig = config.significance
    rule = grouping_rule(bench, config.kind, sig.parallel_benchmarks)
    return rule if sig.unit == "group" and RULES[rule] is not None else "query"


def comparisons(results: Results, base: str, bench: str, notes: list[str]):
    """(trained systems, cached compare(a, b, key)) over per-query scores averaged over seeds."""
    sig = results.config.significance
    trained = [s for s in results.systems[base] if s != ZERO_SHOT and results.dirs.get((base, s, bench))]
    per_query = {s: combine_seeds([load_per_query(d) for d in results.dirs[(base, s, bench)]])
                 for s in trained}
    rule = unit_of(results.config, bench)
    if sig.unit == "group" and rule == "query":
        notes.append(f"{label(bench)}: no parallel groups known (not XQuAD-R / MLQA-R / image-text, nor listed in "
                     "significance.parallel_benchmarks): its tests resample single queries, and their intervals "
                     "are too narrow if its queries have translations")
    compare = claims.comparisons_from_per_query(per_query, method=sig.method, n_resamples=sig.n_resamples,
                                                seed=sig.seed, group_of=RULES.get(rule))

    def safe(a: str, b: str, key: str):
        try:
            return compare(a, b, key)
        except ValueError as exc:  # e.g. query ids without the `lang:` prefix the strata are read from
            notes.append(f"{label(bench)}: no significance test ({exc})")
            return None

    return trained, safe


def _seed_score(row: dict, key: str) -> float | None:
    cell = row.get("multilingual" if key == "rank_distance" else key) or {}
    return cell.get("rank_distance" if key == "rank_distance" else "map")


def seed_agreement(rows_a: list[dict], rows_b: list[dict], key: str, diff: float) -> str:
    """"k/n": of the n seeds both systems were trained with, in how many A − B has the sign of `diff`.

    The paired tests average each query over seeds, so they say nothing about how much a retrained model
    moves; this count does, seed by seed (systems paired by seed number).
    "–" with fewer than two common seeds.
    """
    by_seed_a = {r.get("seed"): _seed_score(r, key) for r in rows_a}
    by_seed_b = {r.get("seed"): _seed_score(r, key) for r in rows_b}
    common = [s for s in by_seed_a if s in by_seed_b and by_seed_a[s] is not None and by_seed_b[s] is not None]
    if len(common) < 2:
        return "–"
    same = sum(np.sign(by_seed_a[s] - by_seed_b[s]) == np.sign(diff) for s in common)
    return f"{same}/{len(common)}"


def family_rows(family: TestFamily, level: float, seed_rows: dict[str, list[dict]] | None = None,
                margins: Margins | None = None) -> list[list[str]]:
    """One row per test of the family, with its Holm-adjusted p-value, its minimum detectable difference at
    80% power, and whether its interval lies inside the equivalence margin (yes / no / – undecided)."""
    seed_rows, margins = seed_rows or {}, margins or Margins()
    rows = []
    for a, b, key in family.keys:
        t, p = family.get(a, b, key)
        margin = margins.for_key(key, t)
        units = f"{t.units} {'groups' if t.unit == 'group' else 'queries'}"
        rows.append([a, b, key, f"{t.diff:+.4f}", f"[{t.ci[0]:+.4f}, {t.ci[1]:+.4f}]", f"{t.p_value:.3g}",
                     f"{p:.3g}", "yes" if p < level else "no", f"{t.mdd(level):.4f}",
                     f"{within_margin(t, margin)} (±{margin:.3g})", str(t.n), units,
                     seed_agreement(seed_rows.get(a, []), seed_rows.get(b, []), key, t.diff)])
    return rows


def significance_rows(trained: list[str], compare, level: float,
                      seed_rows: dict[str, list[dict]] | None = None, hybrid: str | None = None,
                      margins: Margins | None = None) -> list[list[str]]:
    """The benchmark's Holm family (`claims.benchmark_family`: cross, hybrid vs mono, hybrid vs cross on every
    setting and rank distance where the per-query files have it) as table rows; see `family_rows`.

    `seed_rows` (system -> its metrics.json per seed) adds how many seeds agree with the sign of A − B."""
    return family_rows(claims.benchmark_family(trained, compare, hybrid), level, seed_rows, margins)


def claim_verdicts(results: Results, compares: dict, notes: list[str]) -> list:
    """(base, ClaimVerdict): per base model, claims 1-5 per benchmark and 6 (in-domain vs zero-shot).

    `compares`: (base, benchmark) -> the `TestFamily` the significance table shows (or a compare function)."""
    cfg, out = results.config, []
    kwargs = {"level": cfg.significance.level, "hybrid": cfg.claim_hybrid, "margins": margins_of(cfg)}
    for base in results.systems:
        tables, comps = {}, {}
        for bench in cfg.benchmarks:
            table = {s: mean_over_seeds([scores_from_metrics(m) for m in results.rows(base, s, bench)])
                     for s in results.systems[base] if s != ZERO_SHOT and results.rows(base, s, bench)}
            if {"mono", "cross", cfg.claim_hybrid} <= set(table):
                tables[label(bench)], comps[label(bench)] = table, compares.get((base, bench))
            else:
                notes.append(f"{base} on {label(bench)}: the claims need mono, cross and {cfg.claim_hybrid}; "
                             f"complete: {sorted(table)}")
        pair = (label(cfg.in_domain), label(cfg.zero_shot_benchmark or ""))
        if pair[0] in tables and pair[1] in tables:
            verdicts = claims.check_benchmarks(tables, comps, in_domain=pair[0], zero_shot=pair[1], **kwargs)
        else:  # no zero-shot benchmark to compare with: claims 1-5, named as check_benchmarks names them
            verdicts = []
            for bench, table in tables.items():
                for v in claims.check_claims(table, comps[bench], **kwargs):
                    v.id, v.text = f"{bench}/{v.id}", f"[{bench}] {v.text}"
                    verdicts.append(v)
        out += [(base, v) for v in verdicts]
    return out


def significance_section(doc: Document, results: Results, notes: list[str]) -> dict:
    """The significance tables, one Holm family per base model and benchmark; returns those families,
    (base, benchmark) -> TestFamily, for the claim verdicts."""
    cfg, sig, margins = results.config, results.config.significance, margins_of(results.config)
    doc.heading(2, "Significance")
    doc.para(f"Paired {sig.method} tests ({sig.n_resamples} resamples) of A − B per setting (mAP) and in rank "
             "distance. The unit resampled (or sign-flipped) is the parallel group where the benchmark has one: "
             "a question with all its translations (XQuAD-R / MLQA-R: every row sharing `qas.id`, its "
             "cross-lingual rows included), an image with all its captions (image-text); translations are not "
             "independent, so resampling single queries gives intervals too narrow. The statistic is the "
             "table's macro average over languages (pairs). A system's per-query score is its mean over seeds, "
             "so the tests do not model the variance between seeds; the last column counts the seeds in which "
             "A − B has the same sign. p (Holm): adjusted over one family per base model and benchmark — "
             "cross vs mono, hybrid vs mono, hybrid vs cross on every setting and rank distance — the same "
             f"family the claims below read; significant: p (Holm) < {sig.level}. MDD: the minimum detectable "
             f"difference, (z(1 − {sig.level}/2) + z(0.8)) × the bootstrap SE, the true difference this test "
             "would find significant 80% of the time before the Holm adjustment: differences smaller than it "
             f"are not ruled out by a non-significant result. Equivalent: the {0.95:.0%} interval lies inside "
             f"±margin ({margins.describe()}): yes, no (outside it entirely), – (undecided).")
    families = {}
    for base in results.systems:
        for bench in cfg.benchmarks:
            trained, compare = comparisons(results, base, bench, notes)
            families[(base, bench)] = claims.benchmark_family(trained, compare, cfg.claim_hybrid)
            seed_rows = {system: results.rows(base, system, bench) for system in trained}
            rows = family_rows(families[(base, bench)], sig.level, seed_rows, margins)
            others = claims.build_family(_other_pairs(trained, cfg.claim_hybrid), compare)
            if not rows and not len(others):
                continue
            doc.heading(3, f"{base} on {label(bench)}")
            doc.para(_unit_line(cfg, bench, families[(base, bench)]))
            doc.table(SIGNIFICANCE_HEADER, rows)
            if len(others):
                doc.para(f"Other systems (not in the claims; exploratory: their own Holm family of {len(others)} "
                         "tests):")
                doc.table(SIGNIFICANCE_HEADER, family_rows(others, sig.level, seed_rows, margins))
    return families


def _unit_line(cfg: CompareConfig, bench: str, family: TestFamily) -> str:
    unit = unit_of(cfg, bench)
    counts = {}
    for key in family.keys:
        test = family.tests[key]
        counts.setdefault(key[2], f"{test.units}")
    sizes = ", ".join(f"{setting} {n}" for setting, n in counts.items())
    if unit != "query":
        what = f"groups, {describe_rule(unit)}"
    elif cfg.significance.unit == "query":
        what = "single queries (significance.unit: query)"
    else:
        what = "single queries (no parallel groups known for this benchmark; see the notes)"
    return (f"Unit resampled: {what}; units per test: {sizes or '–'}. Holm family: {len(family)} tests. "
            f"Margin: {_margins_short(cfg)}.")


def unit_label(cfg: CompareConfig, bench: str) -> str:
    """"parallel groups" or "queries": what the tests on this benchmark resample, for captions."""
    return "queries" if unit_of(cfg, bench) == "query" else "parallel groups"


def alpha_system(alpha: float, present) -> str | None:
    """The system at mixing ratio `alpha` among `present` (labels): a hybrid run at that alpha if the grid has
    one, else for the ends the pure sampler (alpha 0, all batches cross-lingual = cross; alpha 1 = mono)."""
    for name in (system_label("hybrid", alpha), {0: "cross", 1: "mono"}.get(alpha)):
        if name is not None and name in present:
            return name
    return None


def alpha_intervals(results: Results, base: str, bench: str, alphas: list[float],
                    max_resamples: int = 2000) -> dict[float, dict[str, tuple[float, float]]]:
    """alpha -> {setting or "rank_distance": 95% bootstrap interval of its score}, per-query scores averaged
    over seeds, resampling the benchmark's unit (parallel groups where it has them); {} without per-query
    files. The score is the same macro average as the table's."""
    cfg = results.config
    group_of = RULES.get(unit_of(cfg, bench))
    out: dict[float, dict[str, tuple[float, float]]] = {}
    for alpha in alphas:
        dirs = results.dirs.get((base, alpha_system(alpha, {s for b, s, _ in results.dirs if b == base}), bench))
        if not dirs:
            continue
        try:
            per_query = combine_seeds([load_per_query(d) for d in dirs])
        except OSError:
            continue
        for setting, key, measure in [(s, s, "map") for s in SETTINGS] + [("multilingual", "rank_distance",
                                                                               "rank_distance")]:
            a, _, strata, ids = align(per_query, per_query, setting, measure)
            if len(a) == 0:
                continue
            groups = None if group_of is None else [group_of(setting, q) for q in ids]
            resamples = min(max_resamples, cfg.significance.n_resamples)
            test = paired_bootstrap(a, np.zeros_like(a), n_resamples=resamples, seed=cfg.significance.seed,
                                    strata=strata, groups=groups)
            out.setdefault(alpha, {})[key] = test.ci
    return out


def _margins_short(cfg: CompareConfig) -> str:
    m = margins_of(cfg)
    return f"±{m.measure:g} mAP, ±{m.rank_distance_relative:.0%} of the mean rank distance"
