"""Evaluate a model on a benchmark: encode every text once, search once, score all settings, write files."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from hybridbatch.data.benchmark import Benchmark
from hybridbatch.evaluation.metrics import DEFAULT_MEASURES
from hybridbatch.evaluation.settings import Evaluation, evaluate_embeddings
from hybridbatch.hardware import timing_record
from hybridbatch.retrieval.encode import encode_texts

log = logging.getLogger(__name__)


def load_benchmark(spec: str | Path, data_dir: str | Path | None = None, download: bool = False) -> Benchmark:
    """`xquad-r`, `xquad-r:train`, `xquad-r:test`, `mlqa-r` (and its halves), `miracl:ROOT[@langs][#split]`, or a
    folder in the generic layout."""
    from hybridbatch.data.beir_layout import load_generic
    from hybridbatch.data.errors import InputError, path_problem
    from hybridbatch.data.lareqa import is_lareqa_spec, load_lareqa

    if str(spec).startswith("miracl:"):
        from hybridbatch.data.miracl import load_miracl

        return load_miracl(str(spec))
    if is_lareqa_spec(str(spec)):
        return load_lareqa(str(spec), data_dir=data_dir, download=download)
    problem = path_problem(spec, want="folder")
    if problem == "does not exist":
        raise InputError("unknown benchmark: not xquad-r[:train|:test], mlqa-r[:train|:test] or miracl:ROOT, and no "
                         "folder of that name (a folder in the generic layout: corpus.jsonl, queries.jsonl, "
                         "qrels/test.tsv)", path=spec)
    if problem:
        raise InputError(f"benchmark {problem} (a folder in the generic layout, or xquad-r / mlqa-r)", path=spec)
    return load_generic(spec)  # names each missing or unreadable file of the layout


def evaluate_model(model, benchmark: Benchmark, out_dir: str | Path | None = None, query_prefix: str = "",
                   passage_prefix: str = "", batch_size: int = 64, k: int = 100,
                   measures: tuple[str, ...] = DEFAULT_MEASURES, memory_mb: float = 512.0,
                   show_progress: bool = True, extra: dict | None = None,
                   embeddings_dir: str | Path | None = None) -> Evaluation:
    """Encode queries and corpus of `benchmark` with `model` (a SentenceTransformer), evaluate, write.

    With `embeddings_dir`, the embeddings are read from (or first written to) the stores
    `embeddings_dir/queries` and `embeddings_dir/corpus` (`hybridbatch encode`), reused while their
    fingerprint (texts, prefix, model weights) matches, so a rerun encodes nothing.
    """
    t0 = time.perf_counter()
    if embeddings_dir is not None:
        from hybridbatch.retrieval.embeddings import load_or_encode
        from hybridbatch.retrieval.store_format import check_destination

        for part in ("queries", "corpus"):  # refuse a folder in the way before encoding either store
            check_destination(Path(embeddings_dir) / part)
        q_emb = load_or_encode(model, benchmark.queries, Path(embeddings_dir) / "queries", query_prefix, batch_size,
                               show_progress=show_progress)[2]
        c_emb = load_or_encode(model, benchmark.corpus, Path(embeddings_dir) / "corpus", passage_prefix,
                               batch_size, show_progress=show_progress)[2]
    else:
        q_emb = encode_texts(model, [q.text for q in benchmark.queries], query_prefix, batch_size,
                             show_progress=show_progress, desc="queries")
        c_emb = encode_texts(model, [c.text for c in benchmark.corpus], passage_prefix, batch_size,
                             show_progress=show_progress, desc="candidates")
    t1 = time.perf_counter()
    evaluation = evaluate_embeddings(benchmark, q_emb, c_emb, k=k, measures=measures, memory_mb=memory_mb)
    t2 = time.perf_counter()
    evaluation.metrics["timing"] = {"encode_s": round(t1 - t0, 3), "score_s": round(t2 - t1, 3),
                                    "texts": len(benchmark.queries) + len(benchmark.corpus)}
    evaluation.metrics["timing"].update(timing_record(model))  # the CPU and fast path behind the times
    if extra:
        evaluation.metrics.update(extra)
    log.info("%s: encoded in %.1fs, scored in %.1fs", benchmark.name, t1 - t0, t2 - t1)
    if out_dir is not None:
        from hybridbatch.evaluation.report import write_evaluation

        write_evaluation(evaluation, out_dir)
    return evaluation
