"""The comparison report: OUTPUT/report.md (figures as PNG files beside it) and a self-contained report.html.

Only finished work is read: a run counts on a benchmark once its training is done and its evaluation
there has written metrics.json (`grid.is_evaluated`), so a half-trained run never reaches a table. Numbers
are means over seeds; the paired tests compare per-query scores averaged over seeds
(`significance.combine_seeds`), resampling parallel groups where the benchmark has them (`grouping.py`),
and the claims are checked with those same tests: one Holm family per base model and benchmark
(`claims.benchmark_family`), shown in the significance table and read by the verdicts. Markdown and HTML
are built side by side from one sequence of calls, so they say the same thing.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from hybridbatch.experiments import grid
from hybridbatch.experiments.claims import mean_over_seeds, scores_from_metrics
from hybridbatch.experiments.document import Document, md_row
from hybridbatch.experiments.grid import ZERO_SHOT, CompareConfig
from hybridbatch.experiments.grid import benchmark_label as label
from hybridbatch.experiments.report_languages import language_sections
from hybridbatch.experiments.report_results import Results, mean_sd
from hybridbatch.experiments.report_significance import (  # noqa: F401  (re-exported)
    SIGNIFICANCE_HEADER,
    alpha_intervals,
    alpha_system,
    claim_verdicts,
    comparisons,
    family_rows,
    margins_of,
    seed_agreement,
    significance_rows,
    significance_section,
    unit_label,
)
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


def collect(config: CompareConfig) -> Results:
    from hybridbatch.experiments.grid_baselines import not_run_reason

    results = Results(config)
    for run in grid.expand(config):
        results.left_out += not grid.is_complete(run, config.benchmarks) and not not_run_reason(run)
        for bench in config.benchmarks:
            if grid.is_evaluated(run, bench):
                key, folder = (run.base, run.system, bench), run.eval_dir(bench)
                results.metrics[key].append(json.loads((folder / "metrics.json").read_text(encoding="utf-8")))
                results.dirs[key].append(folder)
                systems = results.systems.setdefault(run.base, [])
                systems += [] if run.system in systems else [run.system]
    return results


# --------------------------------------------------------------------------------------------- tables
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
    from hybridbatch.experiments.grid_baselines import not_run_rows

    for base, system, reason in not_run_rows(results.config):  # never a silent skip
        rows.append([base, system, "–", reason] + ["–"] * (len(header) - 4))
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


# --------------------------------------------------------------------------------------------- figures
def _mean_by(rows: list[dict], setting: str, breakdown: str, key: str) -> dict[str, float]:
    """{language or pair: mean over seeds of metrics[setting][breakdown][...][key]}."""
    values = defaultdict(list)
    for m in rows:
        for sub, block in ((m.get(setting) or {}).get(breakdown) or {}).items():
            value = block.get(key)  # null in metrics.json where undefined (e.g. MIRACL's rank distance)
            values[sub].append(math.nan if value is None else value)
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
    # the curve's ends are the pure samplers: alpha 0 = cross, alpha 1 = mono (when the grid has them)
    at = {a: alpha_system(a, rows) for a in sorted({0.0, *cfg.alphas, 1.0})}
    sweep = {a: [scores_from_metrics(m) for m in rows[name]] for a, name in at.items() if name is not None}
    if len(sweep) > 1:
        refs = {ZERO_SHOT: mean_over_seeds([scores_from_metrics(m) for m in rows[ZERO_SHOT]])} \
            if ZERO_SHOT in rows else None
        bands = alpha_intervals(results, base, bench, list(sweep))
        out.append((f"{stem}-alpha", fig.alpha_curve(sweep, references=refs, intervals=bands),
                    f"{name}, {base}: mAP per setting and rank distance against alpha"
                    + (f" (bands: 95% bootstrap intervals over {unit_label(cfg, bench)})" if bands else "")))
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
    language_sections(doc, results)
    doc.heading(2, "Figures")
    for base in results.systems:
        for bench in cfg.benchmarks:
            for stem, png, caption in figures(results, base, bench):
                doc.figure(stem, png, caption)
    families = significance_section(doc, results, notes)
    doc.heading(2, "Claims of the paper")
    doc.para("Verdicts: holds / does not hold / not decided (the test cannot tell) / not checked (no test). "
             "\"W beats L\" holds when W is ahead and p (Holm) above, of the same family, is below "
             f"{sig.level}; \"W is best or tied\" holds only when the {0.95:.0%} interval of W − L lies above "
             f"−margin ({margins_of(cfg).describe()}), does not hold when it lies below −margin, and is not "
             "decided otherwise: a test too weak to see a difference shows no tie (rules: "
             "hybridbatch.experiments.equivalence, claims).")
    doc.table(["base", "claim", "verdict", "numbers"],
              [[b, v.text, v.verdict, v.evidence] for b, v in claim_verdicts(results, families, notes)])
    if cfg.kind == "image-text":
        from hybridbatch.experiments.report_image_text import image_text_claims_section

        image_text_claims_section(doc, results, notes)
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
