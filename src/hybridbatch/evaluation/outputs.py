"""Evaluation outputs: metrics.json, TREC runs, per-query scores and a short report.md."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np

from hybridbatch.evaluation.settings import Evaluation, Run
from hybridbatch.io import atomic_write, write_json

SETTINGS = ("monolingual", "crosslingual", "multilingual")


def write_evaluation(evaluation: Evaluation, out_dir: str | Path) -> Path:
    """DIR/metrics.json, DIR/report.md, DIR/runs/<setting>.trec, DIR/per_query.tsv.gz (each atomic)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for setting, run in evaluation.runs.items():
        write_trec_run(out / "runs" / f"{setting}.trec", run, tag=f"hybridbatch-{setting}")
    with atomic_write(out / "per_query.tsv.gz", "wb") as raw, gzip.open(raw, "wt", encoding="utf-8") as handle:
        measures = [*evaluation.metrics["measures"], "rank_distance"]  # rank distance: pooled setting only
        handle.write("\t".join(["setting", "query", *measures]) + "\n")
        for setting, (keys, scores) in evaluation.per_query.items():
            columns = [np.char.mod("%.6g", scores.get(m, np.full(len(keys), np.nan))) for m in measures]
            for j, key in enumerate(keys):
                handle.write("\t".join([setting, key, *(col[j] for col in columns)]) + "\n")
    with atomic_write(out / "report.md") as handle:
        handle.write(render_report(evaluation.metrics))
    write_json(out / "metrics.json", evaluation.metrics)  # last: its presence marks a complete evaluation
    return out


def write_trec_run(path: Path, run: Run, tag: str) -> None:
    """`qid Q0 docid rank score tag`, the top k of each query."""
    doc_ids = np.array(run.doc_ids, dtype=object)
    with atomic_write(path) as handle:
        for qid, row, scores in zip(run.query_ids, run.doc_index, run.scores, strict=True):
            keep = row >= 0
            ids, vals = doc_ids[row[keep]], np.char.mod("%.6f", scores[keep])
            handle.write("".join(f"{qid} Q0 {d} {r} {v} {tag}\n"
                                 for r, (d, v) in enumerate(zip(ids, vals, strict=True), start=1)))


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def render_report(metrics: dict) -> str:
    wanted = ("map", "success@1", "success@5", "success@10") if metrics.get("kind") == "image-text" \
        else ("map", "recall@1", "recall@10")
    measures = [m for m in wanted if m in metrics["measures"]]
    names = metrics.get("setting_names", {})
    lines = [f"# {metrics['benchmark']}", ""]
    if metrics.get("model"):
        lines += [f"Model: `{metrics['model']}`", ""]
    lines += ["| setting | " + " | ".join(measures) + " | queries | rank distance |",
              "|---|" + "---|" * (len(measures) + 2)]
    for setting in SETTINGS:
        block = metrics.get(setting)
        if block is None:
            lines.append(f"| {names.get(setting, setting)} | " + " | ".join("absent" for _ in measures) + " | 0 | – |")
            continue
        lines.append(f"| {names.get(setting, setting)} | " + " | ".join(_fmt(block.get(m)) for m in measures)
                     + f" | {block['queries']} | {_fmt(block.get('rank_distance'))} |")
    lines.append("")
    per_lang = sorted(set((metrics.get("monolingual") or {}).get("per_language", {}))
                      | set((metrics.get("multilingual") or {}).get("per_language", {})))
    if per_lang:
        lines += ["## Per query language (mAP)", "",
                  "| lang | monolingual | cross-lingual (mean over targets) | multilingual | rank distance "
                  "| own language in top 10 |", "|---|---|---|---|---|---|"]
        cross = (metrics.get("crosslingual") or {}).get("per_pair", {})
        for lang in per_lang:
            mono = ((metrics.get("monolingual") or {}).get("per_language", {}).get(lang) or {}).get("map")
            multi = (metrics.get("multilingual") or {}).get("per_language", {}).get(lang) or {}
            targets = [v["map"] for k, v in cross.items() if k.split("-", 1)[0] == lang]
            xmean = sum(targets) / len(targets) if targets else None
            lines.append(f"| {lang} | {_fmt(mono)} | {_fmt(xmean)} | {_fmt(multi.get('map'))} | "
                         f"{_fmt(multi.get('rank_distance'))} | {_fmt(multi.get('own_language_top10'))} |")
        lines.append("")
    if metrics.get("timing"):
        t = metrics["timing"]
        lines += [f"Encoding {t['texts']} texts took {t['encode_s']:.1f} s; search and metrics "
                  f"{t['score_s']:.1f} s.", ""]
    lines += ["mAP is exact over complete rankings (trec_eval's `map`); recall@k is trec_eval's `recall_k` "
              "(share of the relevant items in the top k). Rank distance: per query, the maximum minus the "
              "minimum pooled rank of its relevant items, averaged per query language, then macro-averaged "
              "(lower is better).", ""]
    return "\n".join(lines)
