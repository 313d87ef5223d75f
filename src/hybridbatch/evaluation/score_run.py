"""Score an existing TREC run (from any system) against qrels, with rank distance where languages are known."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from hybridbatch.data.beir_layout import read_qrels, read_texts
from hybridbatch.data.errors import InputError
from hybridbatch.evaluation.metrics import DEFAULT_MEASURES, mean_scores, pytrec_eval_scores
from hybridbatch.evaluation.rank_distance import macro_average


def read_trec_run(path: str | Path) -> dict[str, dict[str, float]]:
    """`qid Q0 docid rank score tag` lines -> {qid: {docid: score}}."""
    run: dict[str, dict[str, float]] = {}
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise InputError(f"expected 6 columns (qid Q0 docid rank score tag), got {len(parts)}",
                                 path=path, line=line_no)
            try:
                score = float(parts[4])
            except ValueError as exc:
                raise InputError(f"score {parts[4]!r} is not a number", path=path, line=line_no,
                                 field="score") from exc
            if not np.isfinite(score):
                raise InputError("score is not finite", path=path, line=line_no, field="score")
            run.setdefault(parts[0], {})[parts[2]] = score
    return run


def ranked_ids(docs: dict[str, float]) -> list[str]:
    """trec_eval's order: score decreasing, ties broken by the larger docno first."""
    return [d for d, _ in sorted(docs.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]


def score_run(qrels_path: str | Path, run_path: str | Path, corpus_path: str | Path | None = None,
              queries_path: str | Path | None = None,
              measures: tuple[str, ...] = DEFAULT_MEASURES) -> dict:
    skipped: Counter = Counter()
    qrels = read_qrels(Path(qrels_path), None, None, set(), skipped)
    run = read_trec_run(run_path)
    per_query = pytrec_eval_scores(qrels, run, measures)
    result: dict = {**mean_scores(per_query, measures), "queries": len(per_query)}
    missing = sorted(set(qrels) - set(run))
    if missing:
        result["queries_without_run"] = len(missing)
    if corpus_path and queries_path:
        result.update(_rank_distance(qrels, run, Path(corpus_path), Path(queries_path)))
    if skipped:
        result["skipped"] = dict(skipped)
    return result


def _rank_distance(qrels, run, corpus_path: Path, queries_path: Path) -> dict:
    skipped: Counter = Counter()
    query_lang = {t.id: t.lang for t in read_texts(queries_path, skipped, "query")}
    doc_lang = {t.id: t.lang for t in read_texts(corpus_path, skipped, "corpus")}
    distances, langs, incomplete = [], [], 0
    for qid, rels in qrels.items():
        if qid not in run or len(rels) < 2:
            continue
        position = {d: i + 1 for i, d in enumerate(ranked_ids(run[qid]))}
        ranks = [position.get(d) for d in rels]
        if any(r is None for r in ranks):
            incomplete += 1  # a relevant item is beyond the run's depth: no exact distance
            continue
        if qid not in query_lang:
            raise InputError(f"query {qid!r} of the qrels is not in the queries file", path=queries_path)
        distances.append(max(ranks) - min(ranks))
        langs.append(query_lang[qid])
    macro, per_lang = macro_average(np.array(distances, dtype=float), langs)
    return {"rank_distance": macro, "rank_distance_per_language": per_lang,
            "rank_distance_queries": len(distances), "rank_distance_incomplete_queries": incomplete,
            "corpus_languages": sorted(set(doc_lang.values()))}
