"""The fast CPU inference path against fp32: speed and the mAP it costs.

    HYBRIDBATCH_LAREQA_DIR=../shared/data/lareqa .venv/bin/python benchmarks/bench_fast_path.py \
        --model me5-small --kind onnx-int8 --benchmark xquad-r:test --repeats 3 \
        --out benchmarks/results/fast_path_me5-small_onnx-int8.json

`--kind` is a `make_fast` kind: onnx-int8 (ONNX Runtime, fused graph, outlier-aware rewrites, int8
per-channel weights), onnx (fp32 ONNX Runtime), int8 (torch dynamic quantization), bf16, fp16. The time to build the
fast copy (ONNX export, fusion, quantization; once per model into the cache) is `make_fast_s`, not counted
in the encoding speed.

Speed: the same fixed sample of the benchmark's texts (language-stratified by a seeded draw, with the
model's prefixes) is encoded by the fp32 model and by `make_fast(model)` alternately, `--repeats` times
each, in this process; the best time of each counts (texts/s from wall time, and from this process's CPU
time, which is steadier when other jobs load the cores). Target: fast / fp32 >= 2.
Accuracy: the benchmark is evaluated with both models (`evaluate_model`, the same prefixes and maximum
length); prints mAP per setting for both, the absolute differences and whether each is <= 0.005.
Writes a JSON (default benchmarks/results/fast_path_<model>.json).

`--limit N` is a quick check: N texts timed, and about N queries (whole parallel groups) evaluated against
a corpus of their relevant candidates plus distractors (the first candidates of each language) up to N.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

SETTINGS = ("monolingual", "crosslingual", "multilingual")
TOLERANCE = 0.005


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="me5-small")
    parser.add_argument("--benchmark", default="xquad-r:test", help="a spec as in configs: xquad-r:test@en,de")
    parser.add_argument("--kind", default="onnx-int8", help="fast-path kind for make_fast (onnx-int8, onnx, int8, bf16, fp16)")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sample", type=int, default=800, help="texts timed (a fixed seeded sample)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None,
                        help="quick check: time this many texts; evaluate about this many queries and candidates")
    parser.add_argument("--data-dir", default=None, help="LAReQA folder (default: $HYBRIDBATCH_LAREQA_DIR)")
    parser.add_argument("--skip-eval", action="store_true", help="time only")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/fast_path_<model>.json)")
    args = parser.parse_args()

    from hybridbatch.data.names import resolve_benchmark
    from hybridbatch.evaluation.run import evaluate_model
    from hybridbatch.models.registry import load_sentence_transformer, resolve_model
    from hybridbatch.retrieval.encode import encode_texts, set_threads
    from hybridbatch.retrieval.fast_encode import make_fast

    threads = set_threads(args.threads)
    bench = resolve_benchmark(args.benchmark, data_dir=args.data_dir)
    if args.limit is not None:
        bench = limit_queries(bench, args.limit)
    resolved = resolve_model(args.model)
    model = load_sentence_transformer(args.model)
    model.max_seq_length = args.max_seq_length
    t = time.perf_counter()
    fast = make_fast(model, args.kind)
    make_fast_s = time.perf_counter() - t
    models = {"fp32": model, args.kind: fast}

    texts = [resolved.query_prefix + q.text for q in bench.queries] + \
            [resolved.passage_prefix + c.text for c in bench.corpus]
    n_sample = min(args.sample if args.limit is None else min(args.sample, args.limit), len(texts))
    rng = np.random.default_rng(0)
    sample = [texts[i] for i in np.sort(rng.choice(len(texts), size=n_sample, replace=False))]

    wall: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    emb: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, encoder in models.items():
            w, c = time.perf_counter(), time.process_time()
            emb[name] = encode_texts(encoder, sample, "", args.batch_size, show_progress=False)
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
            print(f"  {name}: {n_sample / wall[name][-1]:.1f} texts/s (wall)", flush=True)
    cosine = np.sum(emb["fp32"] * emb[args.kind], axis=1)
    speed = {name: {"texts_per_s_wall": round(n_sample / min(wall[name]), 2),
                    "texts_per_s_cpu": round(n_sample / min(cpu[name]), 2),
                    "wall_s": [round(x, 2) for x in wall[name]], "cpu_s": [round(x, 2) for x in cpu[name]]}
             for name in models}
    ratio_wall = min(wall["fp32"]) / min(wall[args.kind])
    ratio_cpu = min(cpu["fp32"]) / min(cpu[args.kind])

    result: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"torch threads {threads}, load average {os.getloadavg()[0]:.1f} at start",
        "model": args.model, "kind": args.kind, "benchmark": args.benchmark, "limit": args.limit,
        "max_seq_length": args.max_seq_length, "batch_size": args.batch_size,
        "make_fast_s": round(make_fast_s, 2),
        "speed": {"sample_texts": n_sample, "repeats": args.repeats, **speed,
                  "ratio_wall": round(ratio_wall, 3), "ratio_cpu": round(ratio_cpu, 3),
                  "target": 2.0, "min_cosine": round(float(cosine.min()), 6),
                  "mean_cosine": round(float(cosine.mean()), 6)},
    }
    print(f"speed ({n_sample} texts, best of {args.repeats}): fp32 {speed['fp32']['texts_per_s_wall']} "
          f"texts/s, {args.kind} {speed[args.kind]['texts_per_s_wall']} texts/s -> x{ratio_wall:.2f} wall, "
          f"x{ratio_cpu:.2f} CPU time (target >= 2); cosine min {cosine.min():.4f}", flush=True)

    if not args.skip_eval:
        result["accuracy"] = compare_accuracy(bench, models, args.kind, resolved, args.batch_size,
                                              evaluate_model)
        result["evaluation_texts"] = len(bench.queries) + len(bench.corpus)
        result["queries"] = len(bench.queries)
    out = Path(args.out or Path(__file__).parent / "results" / f"fast_path_{_safe(args.model)}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


def compare_accuracy(bench, models: dict, kind: str, resolved, batch_size: int, evaluate_model) -> dict:
    """mAP (and rank distance) per setting for both models, their differences and the verdicts."""
    found: dict[str, dict] = {}
    for name, encoder in models.items():
        t = time.perf_counter()
        evaluation = evaluate_model(encoder, bench, query_prefix=resolved.query_prefix,
                                    passage_prefix=resolved.passage_prefix, batch_size=batch_size,
                                    show_progress=False)
        found[name] = {"metrics": evaluation.metrics, "eval_s": round(time.perf_counter() - t, 1)}
    table: dict = {}
    print(f"{'setting':<14}{'fp32 mAP':>10}{kind + ' mAP':>10}{'|diff|':>9}  <= {TOLERANCE}")
    for setting in SETTINGS:
        base, other = found["fp32"]["metrics"].get(setting), found[kind]["metrics"].get(setting)
        if base is None or other is None:
            table[setting] = None
            print(f"{setting:<14}{'n/a':>10}")
            continue
        diff = abs(other["map"] - base["map"])
        table[setting] = {"fp32_map": round(base["map"], 5), f"{kind}_map": round(other["map"], 5),
                          "abs_diff": round(diff, 5), "within_tolerance": bool(diff <= TOLERANCE)}
        if "rank_distance" in base:
            table[setting]["fp32_rank_distance"] = round(base["rank_distance"], 2)
            table[setting][f"{kind}_rank_distance"] = round(other["rank_distance"], 2)
        print(f"{setting:<14}{base['map']:>10.4f}{other['map']:>10.4f}{diff:>9.4f}  "
              f"{'yes' if diff <= TOLERANCE else 'NO'}")
    verdicts = [row["within_tolerance"] for row in table.values() if row is not None]
    return {"tolerance": TOLERANCE, "settings": table, "all_within_tolerance": bool(verdicts) and all(verdicts),
            "eval_s": {name: found[name]["eval_s"] for name in found},
            "encode_s": {name: found[name]["metrics"]["timing"]["encode_s"] for name in found}}


def limit_queries(bench, limit: int):
    """About `limit` queries (whole parallel groups: the same question in every language, in order) and a
    corpus of their relevant candidates plus the first candidates of each language, at least `limit` in all."""
    from hybridbatch.data.benchmark import Benchmark

    group_of = {q.id: bench.query_groups.get(q.id, q.id) for q in bench.queries}
    keep_groups: set[str] = set()
    per_group = max(1, len(bench.query_languages))
    for q in bench.queries:
        if len(keep_groups) * per_group >= limit:
            break
        keep_groups.add(group_of[q.id])
    queries = [q for q in bench.queries if group_of[q.id] in keep_groups]
    keep_c = {cid for q in queries for cid in bench.qrels.get(q.id, {})}
    by_lang: dict[str, list[str]] = {}
    for c in bench.corpus:
        by_lang.setdefault(c.lang, []).append(c.id)
    position = 0
    while len(keep_c) < min(limit, len(bench.corpus)):
        for ids in by_lang.values():
            if position < len(ids):
                keep_c.add(ids[position])
        position += 1
    corpus = [c for c in bench.corpus if c.id in keep_c]
    qrels = {q.id: bench.qrels[q.id] for q in queries if q.id in bench.qrels}
    groups = {q.id: bench.query_groups[q.id] for q in queries if q.id in bench.query_groups}
    return Benchmark(f"{bench.name} (first {len(queries)} queries, {len(corpus)} candidates)", queries, corpus,
                     qrels, groups, dict(bench.skipped))


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(name).name or name)


if __name__ == "__main__":
    main()
