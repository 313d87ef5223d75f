"""What this CPU gives in bf16 and int8: GEMM rates, encoding speed and accuracy per fast path, a training step.

    HYBRIDBATCH_LAREQA_DIR=../shared/data/lareqa nice -n 5 .venv/bin/python benchmarks/bench_cpu_precision.py \
        --model me5-small --kinds bf16,autocast,onnx-int8,int8 --eval --train-step --profile \
        --out benchmarks/results/cpu_precision_me5-small_<cpu kind>.json

Every section alternates its variants in one process (the cores may be shared: ratios in one run are what
counts; best of `--repeats`), and the JSON carries `hardware.cpu_features()` and the load average.

- GEMM: a 2048 x 2048 matrix multiply, fp32 vs bf16 (torch, `--threads`), GFLOP/s best of `--repeats`.
- Encoding: a fixed seeded sample of the benchmark's texts (`--sample`, with the model's prefixes) encoded by
  fp32 torch and by each kind in `--kinds` (a `make_fast` kind, or `autocast`: the fp32 model under
  `torch.autocast(bfloat16)`); texts/s (wall; and the ratio of process CPU time, steadier under load), real tokens/s, and the achieved GFLOP/s (2 x linear parameters per
  token + 4 x layers x hidden x length for attention, real tokens only) as a fraction of the measured GEMM
  rate of the path's arithmetic; cosine to fp32.
- `--eval`: the full benchmark evaluated once per path (`evaluate_model`), mAP per setting against fp32
  (bound 0.005) and each path's encoding time.
- `--train-step`: one training step of the model as hybridbatch's trainer computes it (`training.step.encode`
  in length-sorted chunks of 16, InfoNCE at temperature 0.05, backward, clipping, AdamW) on `--train-batch`
  XQuAD-R train queries + their positives, length 128, fp32 vs bf16 (`training.precision.autocast_forward`),
  alternating, median of `--steps` after one warm-up; `--profile`: torch profiler's top ops of one step each;
  `--freeze-word-embeddings` as the demo trains (AdamW then skips the 96M-parameter embedding table),
  `--fused-adamw` for torch's fused CPU AdamW.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

SETTINGS = ("monolingual", "crosslingual", "multilingual")
TOLERANCE = 0.005


def gemm_rates(n: int, repeats: int) -> dict:
    """GFLOP/s of an n x n matmul, fp32 and bf16 alternately, best of `repeats` (5 products each)."""
    best = {"fp32": 0.0, "bf16": 0.0}
    operands = {name: (torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype))
                for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    for a, b in operands.values():
        a @ b
    for _ in range(repeats):
        for name, (a, b) in operands.items():
            t = time.perf_counter()
            for _ in range(5):
                a @ b
            best[name] = max(best[name], 2 * n ** 3 * 5 / (time.perf_counter() - t) / 1e9)
    out = {f"{k}_gflops": round(v, 1) for k, v in best.items()}
    out["bf16_over_fp32"] = round(best["bf16"] / best["fp32"], 2)
    out["n"] = n
    return out


def flops_per_text(model, lengths: np.ndarray) -> np.ndarray:
    """Forward FLOPs per text: 2 x encoder linear parameters per token + attention (4 x L x d x n per token)."""
    hf = model[0].auto_model
    linear = sum(m.weight.numel() for m in hf.modules() if isinstance(m, torch.nn.Linear))
    layers, hidden = hf.config.num_hidden_layers, hf.config.hidden_size
    return lengths * (2.0 * linear + 4.0 * layers * hidden * lengths)


class Autocast:
    """The fp32 model encoded under bf16 autocast (for the encoding comparison only)."""

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name):
        return getattr(self.model, name)


def encode_with(encoder, texts, batch_size):
    from hybridbatch.retrieval.encode import encode_texts

    if isinstance(encoder, Autocast):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return encode_texts(encoder.model, texts, "", batch_size, show_progress=False)
    return encode_texts(encoder, texts, "", batch_size, show_progress=False)


def evaluate_with(encoder, bench, resolved, batch_size):
    from hybridbatch.evaluation.run import evaluate_model

    kwargs = {"query_prefix": resolved.query_prefix, "passage_prefix": resolved.passage_prefix,
              "batch_size": batch_size, "show_progress": False}
    if isinstance(encoder, Autocast):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return evaluate_model(encoder.model, bench, **kwargs)
    return evaluate_model(encoder, bench, **kwargs)


def train_step_bench(model_name: str, args, data_dir) -> dict:
    from hybridbatch.data.names import resolve_benchmark
    from hybridbatch.losses import info_nce
    from hybridbatch.models.registry import load_sentence_transformer, resolve_model
    from hybridbatch.training.precision import autocast_forward
    from hybridbatch.training.step import ChunkEncoder, encode

    resolved = resolve_model(model_name)
    model = load_sentence_transformer(model_name)
    model.max_seq_length = args.max_seq_length
    model.train()
    bench = resolve_benchmark("xquad-r:train", data_dir=data_dir)
    text_of = {c.id: c.text for c in bench.corpus}
    rng = np.random.default_rng(1)
    picked = [bench.queries[i] for i in rng.choice(len(bench.queries), args.train_batch, replace=False)]
    queries = [resolved.query_prefix + q.text for q in picked]
    positives = [resolved.passage_prefix + text_of[next(iter(bench.qrels[q.id]))] for q in picked]
    if args.freeze_word_embeddings:
        model[0].auto_model.get_input_embeddings().weight.requires_grad_(False)
    encoder = ChunkEncoder(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5, **({"fused": True} if args.fused_adamw else {}))
    target = torch.arange(len(queries))

    def step(variant: str) -> float:
        precision, _, chunk = variant.partition(":")
        t = time.perf_counter()
        with autocast_forward(model, precision):
            emb = encode(encoder, model, queries + positives, torch.device("cpu"), int(chunk or 16))
            loss = info_nce(emb[:len(queries)], emb[len(queries):], target, 0.05)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    times: dict[str, list[float]] = {variant: [] for variant in args.train_variants.split(",")}
    for precision in times:
        step(precision)  # warm-up
    for _ in range(args.steps):
        for precision in times:
            times[precision].append(step(precision))
            print(f"  train step {precision}: {times[precision][-1]:.2f} s", flush=True)
    tokens = sum(int(x) for x in model.preprocess(queries + positives)["attention_mask"].sum(dim=1))
    out = {"batch": f"{len(queries)} queries + {len(positives)} positives", "real_tokens": tokens,
           "trainable_parameters": sum(p.numel() for p in trainable),
           "freeze_word_embeddings": args.freeze_word_embeddings, "fused_adamw": args.fused_adamw,
           "steps_each": args.steps, **{f"{k}_s": [round(x, 3) for x in v] for k, v in times.items()},
           **{f"{k}_median_s": round(statistics.median(v), 3) for k, v in times.items()}}
    if "fp32_median_s" in out and "bf16_median_s" in out:
        out["speedup_median"] = round(out["fp32_median_s"] / out["bf16_median_s"], 3)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        out["profile"] = {}
        for precision in times:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                step(precision)
            table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_rows)
            total = sum(e.self_cpu_time_total for e in prof.key_averages())
            top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:args.profile_rows]
            out["profile"][precision] = {
                "self_cpu_total_ms": round(total / 1e3, 1),
                "top_ops": [{"op": e.key, "self_ms": round(e.self_cpu_time_total / 1e3, 1),
                             "share": round(e.self_cpu_time_total / total, 3), "calls": e.count} for e in top]}
            print(f"--- profile {precision}\n{table}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="me5-small")
    parser.add_argument("--benchmark", default="xquad-r:test")
    parser.add_argument("--kinds", default="bf16,autocast,onnx-int8,int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sample", type=int, default=800)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--gemm-n", type=int, default=2048)
    parser.add_argument("--eval", action="store_true", help="full benchmark evaluation per path (minutes each)")
    parser.add_argument("--eval-skip", default="autocast", help="paths not evaluated in full (comma-separated)")
    parser.add_argument("--no-encode", action="store_true", help="skip the encoding section")
    parser.add_argument("--train-step", action="store_true")
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--freeze-word-embeddings", action="store_true", help="as the demo trains")
    parser.add_argument("--fused-adamw", action="store_true", help="torch.optim.AdamW(fused=True)")
    parser.add_argument("--train-variants", default="fp32,bf16",
                        help="precision[:encode chunk size] per variant, e.g. fp32,bf16,bf16:0 (default chunk 16)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--profile-rows", type=int, default=12)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from hybridbatch.hardware import cpu_features
    from hybridbatch.retrieval.encode import set_threads

    threads = set_threads(args.threads)
    features = cpu_features()
    result: dict = {"cpu": features.as_dict(), "torch": torch.__version__, "threads": threads,
                    "load_average_start": [round(x, 2) for x in os.getloadavg()], "model": args.model,
                    "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    print(f"CPU: {features.model_name}, kind {features.kind}, flags {' '.join(features.flags)}, "
          f"torch {features.torch_capability}; load {os.getloadavg()[0]:.1f}", flush=True)
    result["gemm"] = gemm_rates(args.gemm_n, args.repeats)
    print(f"GEMM {args.gemm_n}: {result['gemm']}", flush=True)

    if not args.no_encode:
        result["encoding"] = encoding_section(args, result["gemm"])
    if args.train_step:
        result["train_step"] = train_step_bench(args.model, args, args.data_dir)
        ts = result["train_step"]
        print("train step medians: " + ", ".join(f"{k[:-9]} {v} s" for k, v in ts.items() if k.endswith("_median_s")))
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out or Path(__file__).parent / "results" / f"cpu_precision_{args.model}_{features.kind}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    from hybridbatch.io import atomic_write

    with atomic_write(out) as handle:
        handle.write(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def encoding_section(args, gemm: dict) -> dict:
    from hybridbatch.data.names import resolve_benchmark
    from hybridbatch.models.registry import load_sentence_transformer, resolve_model
    from hybridbatch.retrieval.fast_encode import make_fast

    bench = resolve_benchmark(args.benchmark, data_dir=args.data_dir)
    resolved = resolve_model(args.model)
    model = load_sentence_transformer(args.model)
    model.max_seq_length = args.max_seq_length
    models = {"fp32": model}
    build_s = {}
    for kind in [k for k in args.kinds.split(",") if k]:
        t = time.perf_counter()
        models[kind] = Autocast(model) if kind == "autocast" else make_fast(model, kind)
        build_s[kind] = round(time.perf_counter() - t, 1)
    texts = [resolved.query_prefix + q.text for q in bench.queries] + \
            [resolved.passage_prefix + c.text for c in bench.corpus]
    rng = np.random.default_rng(0)
    sample = [texts[i] for i in np.sort(rng.choice(len(texts), size=min(args.sample, len(texts)), replace=False))]
    lengths = model.preprocess(sample)["attention_mask"].sum(dim=1).numpy().astype(np.float64)
    flops = float(flops_per_text(model, lengths).sum())
    wall = {name: [] for name in models}
    cpu = {name: [] for name in models}
    emb = {}
    for _ in range(args.repeats):
        for name, encoder in models.items():
            t, c = time.perf_counter(), time.process_time()
            emb[name] = encode_with(encoder, sample, args.batch_size)
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
            print(f"  {name}: {len(sample) / wall[name][-1]:.1f} texts/s", flush=True)
    rows = {}
    for name in models:
        best = min(wall[name])
        cosine = np.sum(emb[name] * emb["fp32"], axis=1)
        arithmetic = "bf16" if name in ("bf16", "autocast") else "fp32"
        achieved = flops / best / 1e9
        rows[name] = {"texts_per_s": round(len(sample) / best, 1), "tokens_per_s": round(lengths.sum() / best),
                      "wall_s": [round(x, 2) for x in wall[name]],
                      "speedup": round(min(wall["fp32"]) / best, 3),
                      "cpu_s": [round(x, 2) for x in cpu[name]],
                      "speedup_cpu_time": round(min(cpu["fp32"]) / min(cpu[name]), 3),
                      "cosine_min": round(float(cosine.min()), 6), "cosine_mean": round(float(cosine.mean()), 6),
                      "achieved_gflops": round(achieved, 1),
                      "fraction_of_gemm": {k: round(achieved / gemm[f"{k}_gflops"], 3) for k in ("fp32", "bf16")},
                      "gemm_of_its_arithmetic": arithmetic}
    out = {"sample_texts": len(sample), "real_tokens": int(lengths.sum()), "repeats": args.repeats,
           "batch_size": args.batch_size, "max_seq_length": args.max_seq_length, "build_s": build_s,
           "gflop_per_pass": round(flops / 1e9, 1), "paths": rows}
    for name, row in rows.items():
        print(f"{name:>10}: {row['texts_per_s']} texts/s x{row['speedup']} cos min {row['cosine_min']:.5f} "
              f"{row['achieved_gflops']} GFLOP/s", flush=True)
    if args.eval:
        skip = set(args.eval_skip.split(","))
        out["accuracy"] = accuracy_section({k: v for k, v in models.items() if k == "fp32" or k not in skip},
                                           bench, resolved, args.batch_size)
    return out


def accuracy_section(models: dict, bench, resolved, batch_size: int) -> dict:
    found = {}
    for name, encoder in models.items():
        t = time.perf_counter()
        evaluation = evaluate_with(encoder, bench, resolved, batch_size)
        found[name] = {"map": {s: (None if evaluation.metrics[s] is None else round(evaluation.metrics[s]["map"], 5))
                               for s in SETTINGS},
                       "rank_distance": round(evaluation.metrics["multilingual"]["rank_distance"], 2)
                       if evaluation.metrics.get("multilingual") else None,
                       "encode_s": evaluation.metrics["timing"]["encode_s"],
                       "eval_s": round(time.perf_counter() - t, 1)}
        print(f"  eval {name}: mAP {found[name]['map']} encode {found[name]['encode_s']:.1f} s", flush=True)
    base = found["fp32"]["map"]
    for row in found.values():
        diffs = [abs(row["map"][s] - base[s]) for s in SETTINGS if base[s] is not None]
        row["max_abs_diff"] = round(max(diffs), 5)
        row["within_tolerance"] = bool(max(diffs) <= TOLERANCE)
        row["encode_speedup"] = round(found["fp32"]["encode_s"] / row["encode_s"], 3)
    return {"benchmark_texts": len(bench.queries) + len(bench.corpus), "tolerance": TOLERANCE, "paths": found}


if __name__ == "__main__":
    main()
