"""The report's languages seen and unseen in training: does what a sampler teaches reach languages it never saw?

For each base model and benchmark whose query languages are not all training languages (e.g. MLQA-R training
evaluated on XQuAD-R's el, ru, th, tr), two tables from the finished runs' metrics.json:
- per system, macro-averages over the seen and the unseen languages of monolingual mAP, cross-lingual mAP (pairs
  split into both seen / one seen / neither seen), multilingual mAP and rank distance by query language; each
  macro-average is taken per seed and shown as mean ± sd over seeds;
- per system, monolingual mAP in every language (mean over seeds), seen languages marked with `*`.
Descriptive only: the paired tests by parallel group are in the significance section.
"""

from __future__ import annotations

import math

import numpy as np

from hybridbatch.experiments.grid import benchmark_label as label
from hybridbatch.experiments.report_results import mean_sd

SEEN_MARK = "*"


def training_languages(config) -> list[str]:
    """The languages the grid trains on, [] where the config does not list them (then every split is unknown)."""
    return list(((config.train or {}).get("data") or {}).get("languages") or [])


def _per_seed_macro(rows: list[dict], setting: str, breakdown: str, keep, key: str) -> list[float]:
    """Per seed: the mean over the breakdown's entries (languages or pairs) that `keep` accepts."""
    out = []
    for metrics in rows:
        block = (metrics.get(setting) or {}).get(breakdown) or {}
        values = [b.get(key) for sub, b in block.items() if keep(sub)]
        values = [v for v in values if v is not None and math.isfinite(v)]
        if values:
            out.append(float(np.mean(values)))
    return out


def query_languages(rows: list[dict]) -> list[str]:
    langs = set()
    for metrics in rows:
        langs |= set((metrics.get("monolingual") or {}).get("per_language") or {})
    return sorted(langs)


def split_table(results, base: str, bench: str, seen: set[str]) -> tuple[list[str], list[list[str]]]:
    """Rows: systems; columns: seen / unseen macro-averages per setting (mean ± sd over seeds)."""
    def pair_kind(n_seen: int):
        return lambda pair: sum(lang in seen for lang in pair.split("-", 1)) == n_seen

    def is_seen(lang: str) -> bool:
        return lang in seen

    def is_unseen(lang: str) -> bool:
        return lang not in seen

    columns = [("mono mAP seen", "monolingual", "per_language", is_seen, "map", 3),
               ("mono mAP unseen", "monolingual", "per_language", is_unseen, "map", 3),
               ("cross mAP both seen", "crosslingual", "per_pair", pair_kind(2), "map", 3),
               ("cross mAP one seen", "crosslingual", "per_pair", pair_kind(1), "map", 3),
               ("cross mAP neither seen", "crosslingual", "per_pair", pair_kind(0), "map", 3),
               ("multi mAP seen", "multilingual", "per_language", is_seen, "map", 3),
               ("multi mAP unseen", "multilingual", "per_language", is_unseen, "map", 3),
               ("rank distance seen", "multilingual", "per_language", is_seen, "rank_distance", 1),
               ("rank distance unseen", "multilingual", "per_language", is_unseen, "rank_distance", 1)]
    header = ["system", "seeds"] + [name for name, *_ in columns]
    rows = []
    for system in results.systems.get(base, []):
        runs = results.rows(base, system, bench)
        if runs:
            rows.append([system, str(len(runs))] + [mean_sd(_per_seed_macro(runs, setting, part, keep, key), digits)
                                                    for _, setting, part, keep, key, digits in columns])
    return header, rows


def per_language_table(results, base: str, bench: str, seen: set[str]) -> tuple[list[str], list[list[str]]]:
    """Rows: systems; columns: monolingual mAP per query language (mean over seeds), seen ones marked."""
    systems = [s for s in results.systems.get(base, []) if results.rows(base, s, bench)]
    langs = query_languages([m for s in systems for m in results.rows(base, s, bench)])
    header = ["system"] + [lang + (SEEN_MARK if lang in seen else "") for lang in langs]
    rows = []
    for system in systems:
        cells = []
        for lang in langs:
            values = _per_seed_macro(results.rows(base, system, bench), "monolingual", "per_language",
                                     lambda sub, lang=lang: sub == lang, "map")
            cells.append(f"{np.mean(values):.3f}" if values else "–")
        rows.append([system] + cells)
    return header, rows


def language_sections(doc, results) -> None:
    """The two tables per base model and benchmark that has languages never trained on; nothing otherwise."""
    config = results.config
    seen = set(training_languages(config))
    if not seen or config.kind == "image-text":  # image-text has its own unseen view (report_image_text.py)
        return
    blocks = []
    for base in results.systems:
        for bench in config.benchmarks:
            langs = query_languages([m for s in results.systems[base] for m in results.rows(base, s, bench)])
            if langs and any(lang not in seen for lang in langs):
                blocks.append((base, bench, langs))
    if not blocks:
        return
    doc.heading(2, "Languages seen and unseen in training")
    doc.para(f"Training languages: {', '.join(sorted(seen))}. Macro-averages over the query languages (or "
             "language pairs) of each group, per seed, then mean ± sd over seeds; rank distance by query "
             f"language. Per-language monolingual mAP below (mean over seeds; `{SEEN_MARK}` = seen in training). "
             "Descriptive: the paired tests are in the significance section.")
    for base, bench, langs in blocks:
        unseen = [lang for lang in langs if lang not in seen]
        doc.para(f"**{base} on `{label(bench)}`** — unseen: {', '.join(unseen)}.")
        doc.table(*split_table(results, base, bench, seen))
        doc.table(*per_language_table(results, base, bench, seen))
