"""Evaluate a model on a benchmark: encode every text once, search once, score all settings, write files.

Knows no benchmark name (`data/names.py` turns names into benchmarks) and no training."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from hybridbatch.data.benchmark import Benchmark
from hybridbatch.data.names import resolve_benchmark
from hybridbatch.evaluation.metrics import DEFAULT_MEASURES
from hybridbatch.evaluation.settings import Evaluation, evaluate_embeddings
from hybridbatch.hardware import timing_record
from hybridbatch.retrieval.encode import encode_texts

log = logging.getLogger(__name__)


# the name the commands and the trainer's evaluator import; every benchmark name is resolved in data/names.py
load_benchmark = resolve_benchmark


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
        from hybridbatch.evaluation.outputs import write_evaluation

        write_evaluation(evaluation, out_dir)
    return evaluation
