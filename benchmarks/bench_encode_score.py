"""Encoding and scoring cost on XQuAD-R, against sentence-transformers' own `encode` in the same run.

    python benchmarks/bench_encode_score.py --model me5-small --sample 1500

Encoding: the same texts (a language-stratified sample of XQuAD-R's questions and candidates, with the
model's prefixes) are encoded by `SentenceTransformer.encode` and by hybridbatch's `encode_texts`,
alternately, `--repeats` times each; the best time of each counts. Prints sentences/s and the ratio
ours/theirs (target >= 1.0) and checks that the embeddings agree.
Scoring: search + metrics of the full XQuAD-R grid (13,090 queries x 13,014 candidates, all three
settings) on embeddings of the model's size, against the full encoding time projected from the measured
rate (target: well under 10%). With --full the full benchmark is encoded for real instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="me5-small")
    parser.add_argument("--sample", type=int, default=1500, help="texts to encode (stratified)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--full", action="store_true", help="encode all of XQuAD-R for the scoring ratio")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    from hybridbatch.data.names import resolve_benchmark
    from hybridbatch.evaluation.settings import evaluate_embeddings
    from hybridbatch.models.registry import load_sentence_transformer, resolve_model
    from hybridbatch.retrieval.encode import encode_texts, set_threads

    threads = set_threads()
    bench = resolve_benchmark("xquad-r", args.data_dir)
    resolved = resolve_model(args.model)
    model = load_sentence_transformer(args.model)
    rng = np.random.default_rng(0)
    texts = [resolved.query_prefix + q.text for q in bench.queries] + \
            [resolved.passage_prefix + c.text for c in bench.corpus]
    sample = [texts[i] for i in rng.choice(len(texts), size=min(args.sample, len(texts)), replace=False)]

    ours_s, theirs_s = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        theirs = model.encode(sample, batch_size=args.batch_size, normalize_embeddings=True,
                              convert_to_numpy=True, show_progress_bar=False)
        theirs_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        ours = encode_texts(model, sample, "", args.batch_size, show_progress=False)
        ours_s.append(time.perf_counter() - t)
    agreement = float(np.min(np.sum(ours * theirs, axis=1)))
    rate_ours, rate_theirs = len(sample) / min(ours_s), len(sample) / min(theirs_s)

    n_total = len(texts)
    if args.full:
        t = time.perf_counter()
        q_emb = encode_texts(model, [resolved.query_prefix + q.text for q in bench.queries], show_progress=False)
        c_emb = encode_texts(model, [resolved.passage_prefix + c.text for c in bench.corpus], show_progress=False)
        encode_full_s = time.perf_counter() - t
        encode_label = "measured"
    else:
        dim = model.get_embedding_dimension()
        q_emb = rng.normal(size=(len(bench.queries), dim)).astype(np.float32)
        c_emb = rng.normal(size=(len(bench.corpus), dim)).astype(np.float32)
        q_emb /= np.linalg.norm(q_emb, axis=1, keepdims=True)
        c_emb /= np.linalg.norm(c_emb, axis=1, keepdims=True)
        encode_full_s = n_total / rate_ours
        encode_label = "projected from the measured rate"
    t = time.perf_counter()
    evaluate_embeddings(bench, q_emb, c_emb)
    score_s = time.perf_counter() - t

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {threads}",
        "model": args.model, "sample_texts": len(sample), "batch_size": args.batch_size,
        "ours_texts_per_s": round(rate_ours, 1), "sentence_transformers_texts_per_s": round(rate_theirs, 1),
        "ratio_ours_over_st": round(rate_ours / rate_theirs, 3),
        "min_cosine_ours_vs_st": round(agreement, 6),
        "xquad_r_texts": n_total, "encode_full_s": round(encode_full_s, 1), "encode_full": encode_label,
        "score_full_grid_s": round(score_s, 2),
        "score_over_encode": round(score_s / encode_full_s, 4),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
