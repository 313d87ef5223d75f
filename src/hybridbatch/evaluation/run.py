"""Evaluate a model on a benchmark: encode every text once, search once, score all settings, write files.

Knows no benchmark name (`data/names.py` turns names into benchmarks) and no training."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hybridbatch.data.benchmark import Benchmark
from hybridbatch.data.names import resolve_benchmark
from hybridbatch.evaluation.metrics import DEFAULT_MEASURES
from hybridbatch.evaluation.settings import Evaluation, evaluate_embeddings, evaluate_store
from hybridbatch.hardware import timing_record
from hybridbatch.retrieval.embeddings import DEFAULT_SHARD_SIZE, encode_to_store, ensure_store, load_or_encode
from hybridbatch.retrieval.encode import encode_texts
from hybridbatch.retrieval.store_format import check_destination

log = logging.getLogger(__name__)


# the name the commands and the trainer's evaluator import; every benchmark name is resolved in data/names.py
load_benchmark = resolve_benchmark


def evaluate_model(model, benchmark: Benchmark, out_dir: str | Path | None = None, query_prefix: str = "",
                   passage_prefix: str = "", batch_size: int = 64, k: int = 100,
                   measures: tuple[str, ...] = DEFAULT_MEASURES, memory_mb: float = 512.0,
                   show_progress: bool = True, extra: dict | None = None,
                   embeddings_dir: str | Path | None = None, shard_size: int = DEFAULT_SHARD_SIZE) -> Evaluation:
    """Encode queries and corpus of `benchmark` with `model` (a SentenceTransformer), evaluate, write.

    With `embeddings_dir`, the embeddings are read from (or first written to) the stores
    `embeddings_dir/queries` and `embeddings_dir/corpus` (`hybridbatch encode`), reused while their
    fingerprint (texts, prefix, model weights) matches, so a rerun encodes nothing.

    A corpus streamed from disk (not a list: `data.miracl.StreamedCorpus`) is never held: it is encoded
    `shard_size` passages at a time into the store `embeddings_dir/corpus` (without `embeddings_dir`, into a
    temporary store inside `out_dir`, or the system's temporary folder, removed after) and searched shard by
    shard (`settings.evaluate_store`): memory holds the queries' top k and one shard, never the corpus.
    """
    t0 = time.perf_counter()
    if not isinstance(benchmark.corpus, list):  # streamed from disk (MIRACL): searched from a store
        with _corpus_store(embeddings_dir, out_dir) as store:
            q_emb = _query_embeddings(model, benchmark, embeddings_dir, query_prefix, batch_size, show_progress)
            if embeddings_dir is None:  # a store for this run only: no fingerprint (a pass over the corpus)
                encode_to_store(model, benchmark.corpus, store, passage_prefix, batch_size, shard_size=shard_size,
                                show_progress=show_progress, fingerprint="temporary store, never reused")
            else:
                ensure_store(model, benchmark.corpus, store, passage_prefix, batch_size, shard_size=shard_size,
                             show_progress=show_progress)
            t1 = time.perf_counter()
            evaluation = evaluate_store(benchmark, q_emb, store, k=k, measures=measures, memory_mb=memory_mb)
    else:
        _refuse_folders_in_the_way(embeddings_dir)
        q_emb = _query_embeddings(model, benchmark, embeddings_dir, query_prefix, batch_size, show_progress)
        if embeddings_dir is None:
            c_emb = encode_texts(model, [c.text for c in benchmark.corpus], passage_prefix, batch_size,
                                 show_progress=show_progress, desc="candidates")
        else:
            c_emb = load_or_encode(model, benchmark.corpus, Path(embeddings_dir) / "corpus", passage_prefix,
                                   batch_size, show_progress=show_progress)[2]
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


def _query_embeddings(model, benchmark: Benchmark, embeddings_dir, prefix: str, batch_size: int,
                      show_progress: bool):
    if embeddings_dir is None:
        return encode_texts(model, [q.text for q in benchmark.queries], prefix, batch_size,
                            show_progress=show_progress, desc="queries")
    return load_or_encode(model, benchmark.queries, Path(embeddings_dir) / "queries", prefix, batch_size,
                          show_progress=show_progress)[2]


@contextmanager
def _corpus_store(embeddings_dir, out_dir) -> Iterator[Path]:
    """`embeddings_dir/corpus` (kept), or a store in a temporary folder removed after."""
    if embeddings_dir is not None:
        _refuse_folders_in_the_way(embeddings_dir)
        yield Path(embeddings_dir) / "corpus"
        return
    if out_dir is not None:  # beside the outputs: the system's temporary folder may be small, or in memory
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".corpus-store-", dir=out_dir) as tmp:
        yield Path(tmp) / "corpus"


def _refuse_folders_in_the_way(embeddings_dir) -> None:
    """Before encoding either store, refuse a folder in the way of the other."""
    if embeddings_dir is not None:
        for part in ("queries", "corpus"):
            check_destination(Path(embeddings_dir) / part)
