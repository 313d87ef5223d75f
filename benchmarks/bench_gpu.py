"""Encoding and training throughput on an accelerator: the one prepared script for a lent GPU.

    HYBRIDBATCH_LAREQA_DIR=../shared/data/lareqa python benchmarks/bench_gpu.py --device cuda \
        --out benchmarks/results/gpu_<device>.json

Measures, on `--device` (cuda by default; `--device cpu` runs the same code here, as the test does):

1. Encoding: a seeded sample of `--sample` XQuAD-R test texts (11 languages, the model's prefixes), encoded
   with hybridbatch's `encode_texts` per dtype (`--dtypes`: fp32, fp16, bf16: the weights cast) and batch
   size (`--batch-sizes`), best of `--repeats`; texts/s, the device's peak memory, and each dtype's cosine
   to fp32. Then the full XQuAD-R test evaluation (all three settings) once in fp32 on the device, with its
   mAP, which must equal the CPU's (me5-small: .8378 / .7006 / .3431; benchmarks/README.md) up to float noise.
2. Training: `hybridbatch train` (XQuAD-R train half, 11 languages, hybrid alpha 0.5, global batch
   `--train-batch`, `--train-steps` steps, no evaluation) once per precision (`--precisions`: no, bf16;
   accelerate's mixed precision via ACCELERATE_MIXED_PRECISION); examples/s from the trainer's step times
   after `--warmup` steps.

Prints one JSON object and writes it to `--out`, labelled with the device's name. Sized to finish in a few
minutes on one H100/H200 (me5-small); the whole device lease is 15 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_mb(device: str) -> float | None:
    import torch

    if device.startswith("cuda"):
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return None


def bench_encoding(args, bench, resolved) -> dict:
    import torch

    from hybridbatch.models.registry import load_sentence_transformer
    from hybridbatch.retrieval.encode import encode_texts

    texts = [resolved.query_prefix + q.text for q in bench.queries] + \
            [resolved.passage_prefix + c.text for c in bench.corpus]
    rng = np.random.default_rng(0)
    sample = [texts[i] for i in np.sort(rng.choice(len(texts), size=min(args.sample, len(texts)), replace=False))]
    rows, reference = [], None
    for dtype in args.dtypes:
        model = load_sentence_transformer(args.model, device=args.device)
        model.max_seq_length = args.max_seq_length
        model.to(getattr(torch, DTYPES[dtype]))
        for batch_size in args.batch_sizes:
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            encode_texts(model, sample[: batch_size * 2], "", batch_size, show_progress=False)  # warm-up
            best, emb = float("inf"), None
            for _ in range(args.repeats):
                _sync(args.device)
                t = time.perf_counter()
                emb = encode_texts(model, sample, "", batch_size, show_progress=False)
                _sync(args.device)
                best = min(best, time.perf_counter() - t)
            if reference is None:
                reference = emb
            cosine = np.sum(emb * reference, axis=1)
            rows.append({"dtype": dtype, "batch_size": batch_size, "texts_per_s": round(len(sample) / best, 1),
                         "peak_mb": _peak_mb(args.device), "cosine_to_fp32_min": round(float(cosine.min()), 5)})
            print(json.dumps(rows[-1]), flush=True)
        del model
    return {"sample_texts": len(sample), "repeats": args.repeats, "rows": rows}


def bench_evaluation(args, bench, resolved) -> dict:
    from hybridbatch.evaluation.run import evaluate_model
    from hybridbatch.models.registry import load_sentence_transformer

    model = load_sentence_transformer(args.model, device=args.device)
    model.max_seq_length = args.max_seq_length
    t = time.perf_counter()
    evaluation = evaluate_model(model, bench, query_prefix=resolved.query_prefix,
                                passage_prefix=resolved.passage_prefix, batch_size=max(args.batch_sizes),
                                show_progress=False)
    m = evaluation.metrics
    return {"wall_s": round(time.perf_counter() - t, 2), "encode_s": m["timing"]["encode_s"],
            "score_s": m["timing"]["score_s"], "texts": m["timing"]["texts"],
            "map": {s: round(m[s]["map"], 5) for s in ("monolingual", "crosslingual", "multilingual") if m[s]},
            "rank_distance": round(m["multilingual"]["rank_distance"], 2) if m["multilingual"] else None}


def bench_training(args, work: Path) -> list[dict]:
    import yaml

    rows = []
    for precision in args.precisions:
        run_dir = work / f"train-{precision}"
        config = {
            "model": args.model,
            "data": {"source": "xquad-r:train", "languages": args.languages, "hard_negatives": 0},
            "sampler": {"name": "hybrid", "alpha": 0.5},
            "batch_size": args.train_batch, "steps": args.train_steps, "lr": 5e-5, "warmup_steps": 0,
            "max_seq_length": args.max_seq_length, "seed": 0, "output_dir": str(run_dir),
            "eval": {"every": 0, "benchmarks": [], "final": False}, "checkpoint": {"every": 0},
        }
        path = work / f"train-{precision}.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {**os.environ, "ACCELERATE_MIXED_PRECISION": precision, "TOKENIZERS_PARALLELISM": "false",
               "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                                os.environ.get("PYTHONPATH")]))}
        if args.device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "hybridbatch.cli", "train", str(path)], env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - t
        if done.returncode != 0:
            rows.append({"precision": precision, "error": done.stderr[-2000:]})
            continue
        steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        steps = [r for r in steps if "loss" in r]
        timed = [r["step_s"] for r in steps[args.warmup:]]
        rows.append({"precision": precision, "global_batch": args.train_batch, "steps": len(steps),
                     "timed_steps": len(timed), "step_s_median": round(statistics.median(timed), 4),
                     "examples_per_s": round(args.train_batch * len(timed) / sum(timed), 1),
                     "loss_first_last": [round(steps[0]["loss"], 4), round(steps[-1]["loss"], 4)],
                     "command_wall_s": round(wall, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="me5-small")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--benchmark", default="xquad-r:test")
    parser.add_argument("--languages", default="ar,de,el,en,es,hi,ru,th,tr,vi,zh")
    parser.add_argument("--sample", type=int, default=4000)
    parser.add_argument("--batch-sizes", default="64,256")
    parser.add_argument("--dtypes", default="fp32,fp16,bf16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--skip-eval", action="store_true", help="no full-benchmark evaluation")
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--precisions", default="no,bf16", help="accelerate mixed precision per training run")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    args.batch_sizes = [int(x) for x in args.batch_sizes.split(",")]
    args.dtypes = [x for x in args.dtypes.split(",") if x]
    args.precisions = [x for x in args.precisions.split(",") if x]
    args.languages = args.languages.split(",")
    unknown = set(args.dtypes) - set(DTYPES)
    if unknown:
        parser.error(f"unknown dtypes {sorted(unknown)}; expected {', '.join(DTYPES)}")
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here; run with --device cpu to check the script", file=sys.stderr)
        return 2

    from hybridbatch.data.names import resolve_benchmark
    from hybridbatch.models.registry import resolve_model

    bench = resolve_benchmark(args.benchmark)
    resolved = resolve_model(args.model)
    result = {"benchmark": "gpu", "device": args.device, "device_name": device_name(args.device),
              "torch": torch.__version__, "cuda": torch.version.cuda, "model": args.model,
              "max_seq_length": args.max_seq_length, "encoding": bench_encoding(args, bench, resolved)}
    if not args.skip_eval:
        result["evaluation"] = bench_evaluation(args, bench, resolved)
        print(json.dumps({"evaluation": result["evaluation"]}), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        result["training"] = bench_training(args, Path(tmp))
    name = "".join(ch if ch.isalnum() else "-" for ch in result["device_name"]).strip("-").lower()
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"gpu_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "encoding"}, indent=2))
    return 0 if all("error" not in r for r in result["training"]) else 1


if __name__ == "__main__":
    sys.exit(main())
