"""`hybridbatch eval`, `encode`, `score` and `eval-vl`: evaluate a model, write embedding stores, score a TREC run.

Argument handling and printing only: loading, encoding, searching and scoring are the library's
(evaluation/, retrieval/, models/). Imports nothing heavy at import time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

from hybridbatch.cli.common import add_command, add_data_args, add_fast_arg


def _benchmark_and_model(args: argparse.Namespace):
    """eval / encode: (benchmark, resolved model name with its prefixes, model) as the arguments ask."""
    from hybridbatch.evaluation.run import load_benchmark
    from hybridbatch.models.registry import load_sentence_transformer, resolve_model
    from hybridbatch.retrieval.encode import set_threads

    set_threads(args.threads)
    bench = load_benchmark(args.benchmark, data_dir=args.data_dir, download=args.download)
    resolved = resolve_model(args.model)
    model = load_sentence_transformer(args.model)
    if args.max_seq_length:
        model.max_seq_length = args.max_seq_length
    return bench, resolved, _truncate(_maybe_fast(model, args.fast, args.model), args.dim)


def _eval(args: argparse.Namespace) -> int:
    from hybridbatch.evaluation.run import evaluate_model

    t0 = time.perf_counter()
    bench, resolved, model = _benchmark_and_model(args)
    evaluation = evaluate_model(model, bench, args.out, resolved.query_prefix, resolved.passage_prefix,
                                batch_size=args.batch_size, k=args.depth, memory_mb=args.memory_mb,
                                extra={"model": args.model, "skipped": bench.skipped},
                                embeddings_dir=args.embeddings)
    m = evaluation.metrics
    summary = {s: (None if m[s] is None else round(m[s]["map"], 4))
               for s in ("monolingual", "crosslingual", "multilingual")}
    if m["multilingual"] is not None and m["multilingual"]["rank_distance"] == m["multilingual"]["rank_distance"]:
        summary["rank_distance"] = round(m["multilingual"]["rank_distance"], 2)  # NaN (MIRACL: not parallel): none
    if bench.name.startswith("miracl"):  # MIRACL's own measure
        summary["ndcg@10"] = {s: None if m[s] is None else round(m[s]["ndcg@10"], 4) for s in ("monolingual", "multilingual")}
    summary["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({"out": str(args.out), "map": summary}, indent=2))
    return 0


def _encode(args: argparse.Namespace) -> int:
    """Embedding stores DIR/queries and DIR/corpus; under torchrun / accelerate launch each process a shard."""
    from pathlib import Path

    from hybridbatch.retrieval import embeddings as store
    from hybridbatch.retrieval.encode import model_signature

    t0 = time.perf_counter()
    bench, resolved, model = _benchmark_and_model(args)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    signature = model_signature(model)  # once for both stores
    for name in ("queries", "corpus"):  # refuse a folder in the way before encoding either store
        store.check_destination(Path(args.out) / name)
    out = {}
    for name, texts, prefix in (("queries", bench.queries, resolved.query_prefix),
                                ("corpus", bench.corpus, resolved.passage_prefix)):
        folder = Path(args.out) / name
        reused = store.ensure_store(model, texts, folder, prefix, args.batch_size, args.dtype, args.shard_size,
                                    model_name=args.model, show_progress=True, force=args.force,
                                    distributed=distributed, model_sig=signature)
        out[name] = {"store": str(folder), "count": len(texts), "reused": reused}
    if args.index and os.environ.get("RANK", "0") == "0":  # an ANN index for serving the corpus
        from hybridbatch.retrieval.faiss_index import index_from_store, write_index

        t = time.perf_counter()
        path = write_index(index_from_store(Path(args.out) / "corpus", args.index), Path(args.out) /
                           f"corpus.{args.index}.faiss")
        out["index"] = {"file": str(path), "kind": args.index, "build_s": round(time.perf_counter() - t, 1)}
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({**out, "wall_s": round(time.perf_counter() - t0, 1)}, indent=2))
    return 0


def _truncate(model, dim: int | None):
    """`--dim N`: Matryoshka truncation to the first N values, re-normalized."""
    from hybridbatch.models.matryoshka import truncate_embeddings

    return truncate_embeddings(model, dim)


def _maybe_fast(model, kind: str | None, name: str = ""):
    """`--fast KIND`: the opt-in faster CPU copy of the model (hybridbatch.retrieval.fast_encode)."""
    if not kind:
        return model
    from hybridbatch.models.embeddinggemma import check_precision

    check_precision(name, kind, model)
    from hybridbatch.retrieval.fast_encode import make_fast

    t = time.perf_counter()
    fast = make_fast(model, kind)
    logging.getLogger("hybridbatch").info("fast path %s ready in %.1f s", kind, time.perf_counter() - t)
    return fast


def _score(args: argparse.Namespace) -> int:
    from hybridbatch.evaluation.score_run import score_run

    print(json.dumps(score_run(args.qrels, args.run, args.corpus, args.queries), indent=2))
    return 0


def _eval_vl(args: argparse.Namespace) -> int:
    from hybridbatch.evaluation.image_text import evaluate_image_text
    from hybridbatch.evaluation.outputs import write_evaluation
    from hybridbatch.models.vl_baselines import load_baseline_model
    from hybridbatch.retrieval.encode import set_threads
    from hybridbatch.training.image_text import load_caption_source

    set_threads(args.threads)
    cs = load_caption_source(args.benchmark)
    model = load_baseline_model(args.model)  # a train-vl folder, or a CLIP / BLIP-2 checkpoint
    evaluation = evaluate_image_text(model, cs, args.languages or None, batch_size=args.batch_size)
    evaluation.metrics.update({"model": args.model, "skipped": cs.skipped})
    write_evaluation(evaluation, args.out)
    m = evaluation.metrics
    print(json.dumps({"out": str(args.out), "map": {s: None if m[s] is None else round(m[s]["map"], 4)
                                                    for s in ("monolingual", "crosslingual", "multilingual")},
                      "rank_distance": (m["multilingual"] or {}).get("rank_distance"),
                      "settings": m["setting_names"]}, indent=2))
    return 0


def add_commands(sub) -> None:
    p = add_command(sub, "eval", _eval,
                    help="evaluate a model in the monolingual, cross-lingual and multilingual settings")
    p.add_argument("--model", required=True, help="me5-small, minilm-en, a sentence-transformers folder or hub id")
    p.add_argument("--benchmark", required=True,
                   help="xquad-r, xquad-r:train, xquad-r:test, mlqa-r, mlqa-r:train, mlqa-r:test, "
                        "miracl:ROOT[@de,fr][#split] (split: dev by default), or a folder in the generic layout")
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-seq-length", type=int, default=None)
    p.add_argument("--depth", type=int, default=100, help="run depth written to the TREC files")
    p.add_argument("--memory-mb", type=float, default=512.0, help="memory budget of one search chunk")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--embeddings", default=None, help="embedding stores from `hybridbatch encode` (reused when "
                                                      "current, else written there)")
    add_fast_arg(p)
    add_data_args(p)

    p = add_command(sub, "encode", _encode,
                    help="write embedding stores (npy shards + ids + languages) for a benchmark; "
                         "runs sharded under torchrun / accelerate launch")
    p.add_argument("--model", required=True)
    p.add_argument("--benchmark", required=True)
    p.add_argument("--out", required=True, help="DIR: writes DIR/queries and DIR/corpus")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=100_000)
    p.add_argument("--max-seq-length", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--force", action="store_true", help="re-encode even if the stores are current")
    p.add_argument("--index", choices=["flat", "ivf", "hnsw", "ivfpq"], default=None,
                   help="also write a faiss index of the corpus store to DIR/corpus.KIND.faiss (row i = the "
                        "store's row i in DIR/corpus/ids.txt; needs faiss-cpu)")
    add_fast_arg(p)
    add_data_args(p)

    p = add_command(sub, "score", _score, help="score an existing TREC run")
    p.add_argument("--qrels", required=True, help="BEIR tsv or TREC qrels")
    p.add_argument("--run", required=True, help="TREC run")
    p.add_argument("--corpus", help="corpus.jsonl with 'lang' fields (for rank distance)")
    p.add_argument("--queries", help="queries.jsonl with 'lang' fields (for rank distance)")

    p = add_command(sub, "eval-vl", _eval_vl,
                    help="evaluate an image-text model: text->image per language, caption X->Y, "
                         "image->pooled multilingual captions")
    p.add_argument("--model", required=True, help="a train-vl model folder, or a CLIP / BLIP-2 name or folder")
    p.add_argument("--benchmark", required=True, help="emoji-cldr:test, openclipart:test, xm3600:ROOT, "
                                                      "multi30k:ROOT, mmmu:ROOT, xmmmu:ROOT, or a caption JSONL file")
    p.add_argument("--languages", nargs="*", default=None, help="caption languages (default: all)")
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=None)
