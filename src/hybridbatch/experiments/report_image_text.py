"""The image-text section of the compare report: the claims IT1-IT6 (`claims_image_text.py`) with their tests.

Per base model and benchmark: per-query scores averaged over seeds, with the non-English and unseen caption
language views added; one Holm family over every test the claims read (the resampling unit: an image with all
its captions); the family as a table, then the verdicts. Baselines that could not be run are named in IT2's
evidence, which is then "not checked".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hybridbatch.experiments import claims_image_text as it
from hybridbatch.experiments.claims import comparisons_from_per_query, mean_over_seeds, scores_from_metrics
from hybridbatch.experiments.document import Document
from hybridbatch.experiments.grid import ZERO_SHOT
from hybridbatch.experiments.grid import benchmark_label as label
from hybridbatch.experiments.grid_baselines import baseline_system, not_run_rows
from hybridbatch.experiments.grouping import RULES
from hybridbatch.experiments.report_significance import SIGNIFICANCE_HEADER, family_rows, margins_of, unit_of
from hybridbatch.experiments.significance import combine_seeds, load_per_query

if TYPE_CHECKING:
    from hybridbatch.experiments.report_results import Results


def image_text_verdicts(results: Results, base: str, bench: str, notes: list[str]):
    """(family, verdicts) of the image-text claims for one base model on one benchmark; (None, []) when the
    designated hybrid has no result there."""
    cfg, sig = results.config, results.config.significance
    trained_langs = list((cfg.train.get("data") or {}).get("languages") or [])
    systems = [s for s in results.systems.get(base, []) if s != ZERO_SHOT and results.dirs.get((base, s, bench))]
    hybrid = cfg.claim_hybrid
    if hybrid not in systems:
        notes.append(f"{base} on {label(bench)}: the image-text claims need {hybrid}; complete: {systems}")
        return None, []
    per_query = {s: it.per_query_views(combine_seeds([load_per_query(d) for d in results.dirs[(base, s, bench)]]),
                                       trained_langs) for s in systems}
    compare = comparisons_from_per_query(per_query, method=sig.method, n_resamples=sig.n_resamples, seed=sig.seed,
                                         group_of=RULES.get(unit_of(cfg, bench)))
    scores = {s: mean_over_seeds([it.scores_with_views(m, scores_from_metrics(m), trained_langs)
                                  for m in results.rows(base, s, bench)]) for s in systems}
    baselines = [baseline_system(m) for m in cfg.baselines]
    not_run = {system: reason for b, system, reason in not_run_rows(cfg) if b == base}
    family = it.image_text_family(systems, compare, hybrid, [b for b in baselines if b not in not_run])
    verdicts = it.check_image_text_claims(scores, family, hybrid=hybrid, baselines=baselines, not_run=not_run,
                                          level=sig.level, margins=margins_of(cfg))
    return family, verdicts


def image_text_claims_section(doc: Document, results: Results, notes: list[str]) -> None:
    cfg = results.config
    doc.heading(2, "Image-text claims")
    doc.para("The question this grid answers: does hybrid batch training help zero-shot cross-lingual image-text "
             "retrieval against the English-only CLIP-style model (en-en) and the pretrained baselines? "
             "`monolingual:non-en` is text -> image over the caption languages other than English, "
             "`monolingual:unseen` over those never trained on. One Holm family per base model and benchmark; "
             "verdict rules as above (hybridbatch.experiments.claims_image_text).")
    rows = []
    for base in results.systems:
        for bench in cfg.benchmarks:
            family, verdicts = image_text_verdicts(results, base, bench, notes)
            if family is None:
                continue
            if len(family):
                doc.heading(3, f"{base} on {label(bench)}: tests of the image-text claims")
                doc.table(SIGNIFICANCE_HEADER, family_rows(family, cfg.significance.level, None, margins_of(cfg)))
            rows += [[base, f"[{label(bench)}] {v.text}", v.verdict, v.evidence] for v in verdicts]
    if rows:
        doc.table(["base", "claim", "verdict", "numbers"], rows)
    else:
        doc.para("No image-text claim could be checked (see the notes).")
