"""Score an existing TREC run (from any system) against qrels, with rank distance where languages are known."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from hybridbatch.data.beir_layout import read_qrels, read_texts
from hybridbatch.data.errors import InputError, require_path
from hybridbatch.data.jsonl import trec_run_lines, utf8_lines
from hybridbatch.evaluation.metrics import DEFAULT_MEASURES, mean_scores, pytrec_eval_scores
from hybridbatch.evaluation.rank_distance import macro_average


def read_trec_run(path: str | Path) -> dict[str, dict[str, float]]:
    """`qid Q0 docid rank score tag` lines -> {qid: {docid: score}}.

    Errors name the file and line: not UTF-8, a wrong column count, a score that is not a finite number,
    a (qid, docid) pair listed twice (which score would count is not defined, so neither is guessed), no
    line at all. A UTF-8 byte order mark at the start is ignored.
    """
    run: dict[str, dict[str, float]] = {}
    first_line: dict[tuple[str, str], int] = {}
    with open(require_path(path, "run file"), "rb") as handle:
        for line_no, parts in trec_run_lines(utf8_lines(handle, Path(path)), path):
            try:
                score = float(parts[4])
            except ValueError as exc:
                raise InputError(f"score {parts[4]!r} is not a number", path=path, line=line_no,
                                 field="score") from exc
            if not np.isfinite(score):
                raise InputError("score is not finite", path=path, line=line_no, field="score")
            earlier = first_line.setdefault((parts[0], parts[2]), line_no)
            if earlier != line_no:
                raise InputError(f"query {parts[0]!r} lists document {parts[2]!r} again (first at line {earlier})",
                                 path=path, line=line_no)
            run.setdefault(parts[0], {})[parts[2]] = score
    if not run:
        raise InputError("the run is empty (no `qid Q0 docid rank score tag` line)", path=path)
    return run


def ranked_ids(docs: dict[str, float]) -> list[str]:
    """trec_eval's order: score decreasing, ties broken by the larger docno first."""
    return [d for d, _ in sorted(docs.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]


def score_run(qrels_path: str | Path, run_path: str | Path, corpus_path: str | Path | None = None,
              queries_path: str | Path | None = None,
              measures: tuple[str, ...] = DEFAULT_MEASURES) -> dict:
    skipped: Counter = Counter()
    if bool(corpus_path) != bool(queries_path):
        raise InputError("--corpus and --queries go together (rank distance needs the languages of both)")
    qrels = read_qrels(Path(qrels_path), None, None, set(), skipped)
    if not qrels:
        raise InputError("the qrels judge no item relevant (no line with a score > 0)", path=qrels_path)
    run = read_trec_run(run_path)
    per_query = pytrec_eval_scores(qrels, run, measures)
    if not per_query:
        raise InputError(f"none of the run's {len(run)} queries is in the qrels ({qrels_path}): nothing to score",
                         path=run_path)
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
