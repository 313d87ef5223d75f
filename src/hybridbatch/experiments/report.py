"""The comparison report: OUTPUT/report.md (figures as PNG files beside it) and a self-contained report.html.

Only finished work is read: a run counts on a benchmark once its training is done and its evaluation
there has written metrics.json (`grid.is_evaluated`), so a half-trained run never reaches a table. Numbers
are means over seeds; the paired tests compare per-query scores averaged over seeds
(`significance.combine_seeds`), and the claims are checked with those same tests. Markdown and HTML are
built side by side from one sequence of calls, so they say the same thing.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hybridbatch.experiments import claims, grid
from hybridbatch.experiments.claims import mean_over_seeds, scores_from_metrics
from hybridbatch.experiments.document import Document, md_row
from hybridbatch.experiments.grid import ZERO_SHOT, CompareConfig
from hybridbatch.experiments.grid import benchmark_label as label
from hybridbatch.experiments.significance import combine_seeds, holm, load_per_query
from hybridbatch.io import atomic_write

SETTINGS = ("monolingual", "crosslingual", "multilingual")
SHORT = {"monolingual": "mono", "crosslingual": "cross", "multilingual": "multi"}
PUBLISHED_LABEL = "published (arXiv 2408.10536, different training data)"
# XQuAD-R mAP (monolingual / cross-lingual / multilingual) of the fine-tuned XLM-R in arXiv 2408.10536, as
# quoted in the issue that asked for this comparison. Other rows of the paper are left out, not guessed.
PUBLISHED = {
    "XLM-R fine-tuned": {"xquad-r": {"monolingual": 0.79, "crosslingual": 0.70, "multilingual": 0.59}},
}
TITLE = "Hybrid batch training (arXiv 2408.10536): sampler comparison"
SIGNIFICANCE_HEADER = ["A", "B", "setting", "A − B", "95% CI", "p", "p (Holm)", "significant", "queries",
                       "seeds with this sign"]


@dataclass
class Results:
    """What the finished runs measured: (base, system, benchmark) -> per seed, metrics.json and its folder."""

    config: CompareConfig
    metrics: dict[tuple[str, str, str], list[dict]] = field(default_factory=lambda: defaultdict(list))
    dirs: dict[tuple[str, str, str], list[Path]] = field(default_factory=lambda: defaultdict(list))
    systems: dict[str, list[str]] = field(default_factory=dict)  # base -> systems with a result, grid order
    left_out: int = 0  # runs not (yet) complete

    def rows(self, base: str, system: str, bench: str) -> list[dict]:
        return self.metrics.get((base, system, bench), [])


def collect(config: CompareConfig) -> Results:
    results = Results(config)
    for run in grid.expand(config):
        results.left_out += not grid.is_complete(run, config.benchmarks)
        for bench in config.benchmarks:
            if grid.is_evaluated(run, bench):
                key, folder = (run.base, run.system, bench), run.eval_dir(bench)
                results.metrics[key].append(json.loads((folder / "metrics.json").read_text(encoding="utf-8")))
                results.dirs[key].append(folder)
                systems = results.systems.setdefault(run.base, [])
                systems += [] if run.system in systems else [run.system]
    return results


# --------------------------------------------------------------------------------------------- tables
def mean_sd(values: list[float], digits: int = 3) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if len(values) < 2:
        return f"{values[0]:.{digits}f}" if values else "–"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def _values(rows: list[dict], setting: str, key: str = "map") -> list[float]:
    return [r[setting][key] for r in rows if r.get(setting) and r[setting].get(key) is not None]


def _published(bench: str, name: str, setting: str) -> float | None:
    family = bench.split(":", 1)[0].split("@", 1)[0]
    return PUBLISHED[name].get(family, {}).get(setting)


def map_table(results: Results, benches: list[str]) -> tuple[list[str], list[list[str]]]:
    """The paper's Table 1: rows base x system, columns mono / cross / multi mAP per benchmark."""
    header = ["base", "system", "seeds"] + [f"{label(b)} {SHORT[s]}" for b in benches for s in SETTINGS]
    rows = []
    for base, systems in results.systems.items():
        for system in systems:
            seeds = max(len(results.rows(base, system, b)) for b in benches)
            rows.append([base, system, str(seeds)] + [mean_sd(_values(results.rows(base, system, b), s))
                                                      for b in benches for s in SETTINGS])
    for name in PUBLISHED:
        cells = [_published(b, name, s) for b in benches for s in SETTINGS]
        if any(c is not None for c in cells):
            rows.append([name, PUBLISHED_LABEL, "–"] + ["–" if c is None else f"{c:.2f}" for c in cells])
    return header, rows


def rank_table(results: Results, benches: list[str]) -> tuple[list[str], list[list[str]]]:
    kinds = (("rank_distance", "rank distance", 2), ("own_language_top10", "own language in top 10", 3))
    header = ["base", "system"] + [f"{label(b)} {name}" for b in benches for _, name, _ in kinds]
    rows = [[base, system] + [mean_sd(_values(results.rows(base, system, b), "multilingual", key), digits)
                              for b in benches for key, _, digits in kinds]
            for base, systems in results.systems.items() for system in systems]
    return header, rows


def headline_table(results: Results) -> str:
    """The in-domain mAP and rank distance as one markdown table (the CLI prints it at the end)."""
    bench = results.config.in_domain
    header, rows = map_table(results, [bench])
    ranks = {(r[0], r[1]): r[2] for r in rank_table(results, [bench])[1]}
    lines = [f"In-domain: {label(bench)} (mAP; mean ± sd over seeds)", "",
             md_row([*header, "rank distance"]), md_row(["---"] * (len(header) + 1))]
    lines += [md_row([*row, ranks.get((row[0], row[1]), "–")]) for row in rows]
    if results.left_out:
        lines += ["", f"{results.left_out} run(s) not complete: only their finished parts are counted."]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- tests, claims
def _pairs(systems: list[str]) -> list[tuple[str, str]]:
    """cross vs mono, then every other system vs mono and vs cross."""
    pairs = [("cross", "mono")] if {"cross", "mono"} <= set(systems) else []
    return pairs + [(s, ref) for s in systems if s not in ("mono", "cross") for ref in ("mono", "cross")
                    if ref in systems]


def comparisons(results: Results, base: str, bench: str, notes: list[str]):
    """(trained systems, cached compare(a, b, key)) over per-query scores averaged over seeds."""
    sig = results.config.significance
    trained = [s for s in results.systems[base] if s != ZERO_SHOT and results.dirs.get((base, s, bench))]
    per_query = {s: combine_seeds([load_per_query(d) for d in results.dirs[(base, s, bench)]])
                 for s in trained}
    compare = claims.comparisons_from_per_query(per_query, method=sig.method, n_resamples=sig.n_resamples,
                                                seed=sig.seed)

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


def significance_rows(trained: list[str], compare, level: float,
                      seed_rows: dict[str, list[dict]] | None = None) -> list[list[str]]:
    """Every pair on every setting (and rank distance where the per-query files have it), one Holm family.

    `seed_rows` (system -> its metrics.json per seed) adds how many seeds agree with the sign of A − B."""
    keys = (*SETTINGS, "rank_distance")
    tests = [(a, b, key, compare(a, b, key)) for a, b in _pairs(trained) for key in keys]
    tests = [t for t in tests if t[3] is not None]
    seed_rows = seed_rows or {}
    return [[a, b, key, f"{t.diff:+.4f}", f"[{t.ci[0]:+.4f}, {t.ci[1]:+.4f}]", f"{t.p_value:.3g}", f"{p:.3g}",
             "yes" if p < level else "no", str(t.n),
             seed_agreement(seed_rows.get(a, []), seed_rows.get(b, []), key, t.diff)]
            for (a, b, key, t), p in zip(tests, holm([t[3].p_value for t in tests]), strict=True)]


def claim_verdicts(results: Results, compares: dict, notes: list[str]) -> list:
    """(base, ClaimVerdict): per base model, claims 1-5 per benchmark and 6 (in-domain vs zero-shot)."""
    cfg, out = results.config, []
    kwargs = {"level": cfg.significance.level, "hybrid": cfg.claim_hybrid}
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


# --------------------------------------------------------------------------------------------- figures
def _mean_by(rows: list[dict], setting: str, breakdown: str, key: str) -> dict[str, float]:
    """{language or pair: mean over seeds of metrics[setting][breakdown][...][key]}."""
    values = defaultdict(list)
    for m in rows:
        for sub, block in ((m.get(setting) or {}).get(breakdown) or {}).items():
            values[sub].append(block.get(key, math.nan))
    return {sub: float(np.mean(v)) for sub, v in values.items()}


def figures(results: Results, base: str, bench: str) -> list[tuple[str, bytes, str]]:
    """(file stem, PNG, caption) for one base model on one benchmark."""
    from hybridbatch.experiments import figures as fig

    cfg, name, hy = results.config, label(bench), results.config.claim_hybrid
    stem = f"{base}-{grid.benchmark_slug(name)}"
    rows = {s: results.rows(base, s, bench) for s in results.systems[base] if results.rows(base, s, bench)}
    pairs = {s: {k: {"map": v} for k, v in _mean_by(r, "crosslingual", "per_pair", "map").items()}
             for s, r in rows.items()}
    drawn = [s for s in rows if pairs[s] and s != ZERO_SHOT and (not s.startswith("hybrid@") or s == hy)]
    out = []
    for s in drawn:
        diagonal = _mean_by(rows[s], "monolingual", "per_language", "map")
        png = fig.cross_lingual_heatmap(pairs[s], s, diagonal=diagonal)
        out.append((f"{stem}-heatmap-{s}", png,
                    f"{name}, {base} {s}: cross-lingual mAP per language pair (diagonal: monolingual)"))
    for ref in ("mono", "cross"):
        if hy in drawn and ref in drawn:
            png = fig.cross_lingual_difference_heatmap(pairs[hy], pairs[ref], hy, ref)
            out.append((f"{stem}-diff-{hy}-{ref}", png,
                        f"{name}, {base}: {hy} − {ref} per language pair (red: {hy} better)"))
    ranks = {s: _mean_by(r, "multilingual", "per_language", "rank_distance") for s, r in rows.items()}
    if any(ranks.values()):
        out.append((f"{stem}-rank-distance", fig.rank_distance_bars({s: v for s, v in ranks.items() if v}),
                    f"{name}, {base}: rank distance per query language (lower: less language bias)"))
    sweep = {a: [scores_from_metrics(m) for m in rows[grid.system_label("hybrid", a)]]
             for a in cfg.alphas if grid.system_label("hybrid", a) in rows}
    if len(sweep) > 1:
        refs = {ZERO_SHOT: mean_over_seeds([scores_from_metrics(m) for m in rows[ZERO_SHOT]])} \
            if ZERO_SHOT in rows else None
        out.append((f"{stem}-alpha", fig.alpha_curve(sweep, references=refs),
                    f"{name}, {base}: mAP per setting and rank distance against alpha"))
    return out


def _setup(cfg: CompareConfig) -> str:
    train, data = cfg.train, cfg.train.get("data") or {}
    alphas = f" (hybrid alpha {', '.join(f'{a:g}' for a in cfg.alphas)})" if "hybrid" in cfg.samplers else ""
    zero = f", zero-shot `{label(cfg.zero_shot_benchmark)}`" if cfg.zero_shot_benchmark else ""
    return (f"Base models: {', '.join(cfg.base_models)}. Samplers: {', '.join(cfg.samplers)}{alphas}; seeds "
            f"{', '.join(map(str, cfg.seeds))}. Training: `{data.get('source')}`, languages "
            f"{', '.join(data.get('languages') or [])}, {train.get('steps')} steps of batch "
            f"{train.get('batch_size')}. Benchmarks: {', '.join(f'`{label(b)}`' for b in cfg.benchmarks)} "
            f"(in-domain `{label(cfg.in_domain)}`{zero}).")


def build_document(results: Results, figure_dir: Path) -> Document:
    cfg, doc, notes, sig = results.config, Document(figure_dir), [], results.config.significance
    doc.heading(1, TITLE)
    doc.para(_setup(cfg))
    if results.left_out:
        doc.para(f"{results.left_out} run(s) are not complete: a run counts on a benchmark only once its "
                 "training is finished and its evaluation there is written (`hybridbatch compare CONFIG "
                 "--dry-run` lists what is missing; running the grid again finishes it).")
    if not results.systems:
        doc.para("No run is complete yet.")
        return doc
    doc.heading(2, "mAP per setting (the paper's Table 1)")
    doc.para("Mean ± sd over seeds (sd only with several seeds); zero-shot is the base model, untrained. "
             f"Rows marked '{PUBLISHED_LABEL}' are the paper's numbers, not ours: other training data, and "
             "all of XQuAD-R in 11 languages rather than our held-out half (or a subset of its languages).")
    doc.table(*map_table(results, cfg.benchmarks))
    doc.heading(2, "Language bias (multilingual setting)")
    doc.para("Rank distance: per query, the maximum minus the minimum pooled rank of its relevant items, "
             "macro-averaged over query languages (lower is better); and the share of each query's top 10 "
             "that is in its own language.")
    doc.table(*rank_table(results, cfg.benchmarks))
    doc.heading(2, "Figures")
    for base in results.systems:
        for bench in cfg.benchmarks:
            for stem, png, caption in figures(results, base, bench):
                doc.figure(stem, png, caption)
    doc.heading(2, "Significance")
    doc.para(f"Paired {sig.method} tests over queries ({sig.n_resamples} resamples, stratified by query "
             "language) of A − B in mAP per setting; a system's per-query score is its mean over seeds, so "
             "the tests do not model the variance between seeds; the last column counts the seeds in which "
             "A − B has the same sign (a difference that flips between seeds is not one to rely on). "
             f"p (Holm): adjusted over each table; significant: p (Holm) < {sig.level}.")
    compares = {}
    for base in results.systems:
        for bench in cfg.benchmarks:
            trained, compares[(base, bench)] = comparisons(results, base, bench, notes)
            seed_rows = {system: results.rows(base, system, bench) for system in trained}
            rows = significance_rows(trained, compares[(base, bench)], sig.level, seed_rows)
            if rows:
                doc.heading(3, f"{base} on {label(bench)}")
                doc.table(SIGNIFICANCE_HEADER, rows)
    doc.heading(2, "Claims of the paper")
    doc.para("Verdicts: holds / not significant / does not hold (rules: hybridbatch.experiments.claims).")
    doc.table(["base", "claim", "verdict", "numbers"],
              [[b, v.text, v.verdict, v.evidence] for b, v in claim_verdicts(results, compares, notes)])
    if notes:
        doc.heading(2, "Notes")
        for note in dict.fromkeys(notes):
            doc.para(note)
    return doc


def write_report(config: CompareConfig, results: Results | None = None) -> tuple[Path, Path]:
    """OUTPUT/report.md (with OUTPUT/figures/*.png) and the self-contained OUTPUT/report.html."""
    out = Path(config.output_dir)
    doc = build_document(results or collect(config), out / "figures")
    if (out / "explorer.html").is_file():  # written by `hybridbatch explore OUTPUT`: linked, not embedded
        doc.heading(2, "Per-query explorer")
        doc.para(f"Each query's pooled ranking per system, coloured by language, with the ranks of its answers "
                 f"(rebuild: `hybridbatch explore {out}`).")
        doc.md.append("[Open explorer.html](explorer.html)")
        doc.html.append('<p><a href="explorer.html">Open explorer.html</a></p>')
    with atomic_write(out / "report.md") as handle:
        handle.write(doc.markdown())
    with atomic_write(out / "report.html") as handle:
        handle.write(doc.page(TITLE))
    for stale in (out / "figures").glob("*.png"):  # figures of an earlier report that this one no longer has
        if stale.stem not in doc.stems:
            stale.unlink()
    return out / "report.md", out / "report.html"
