"""Training throughput with 1 and 2 CPU processes (gloo): same global batch, same plan, same loss curve.

    HYBRIDBATCH_LAREQA_DIR=../shared/data/lareqa .venv/bin/python benchmarks/bench_train_processes.py \
        --model minilm-en --steps 24 --batch-size 32

Runs `hybridbatch train` twice on one config (XQuAD-R train half, `--languages`, hybrid α 0.5, no
checkpoints, no evaluation), in this command:
  1. one process with `--threads` torch threads (OMP_NUM_THREADS);
  2. `torchrun --standalone --nproc_per_node 2` with `--threads // 2` threads per process: each process
     encodes half of every global batch and the in-batch negatives are gathered across processes (the
     loss is the global batch's; gradients all-reduced by DDP).
Reported per mode: examples/s from the trainer's own per-step wall time (`step_s` of RUN/metrics.jsonl,
steps after the first `--warmup` only) and the command's wall time (start-up, model load and save
included). Then: the two `batches.jsonl` must be identical line by line (same plan), and the loss curves
are compared step by step (max and mean |Δloss|; the first step's loss is compared separately because
nothing has been updated yet). Dropout is active in training, and two processes draw their dropout masks
from their own generators, so the curves agree up to that noise, not bit for bit;
tests/training/test_distributed.py checks exact agreement of loss and gradient in eval mode.
On a 2-core machine the 2-process run cannot be faster than one process with 2 threads (same cores, plus
the all-gather and all-reduce); the figure shows what the distribution costs and that it scales the
same work, not a speed-up. Prints one JSON object and writes it to `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def train_config(args: argparse.Namespace, out: Path) -> dict:
    return {
        "model": args.model,
        "data": {"source": "xquad-r:train", "languages": args.languages.split(","), "hard_negatives": 0},
        "sampler": {"name": "hybrid", "alpha": 0.5},
        "batch_size": args.batch_size, "steps": args.steps, "lr": args.lr, "warmup_steps": 0,
        "freeze_word_embeddings": True, "max_seq_length": args.max_seq_length, "seed": args.seed,
        "output_dir": str(out), "eval": {"every": 0, "benchmarks": [], "final": False},
        "checkpoint": {"every": 0},
    }


def run_mode(args: argparse.Namespace, work: Path, processes: int) -> dict:
    run_dir = work / f"p{processes}"
    config = work / f"p{processes}.yaml"
    config.write_text(yaml.safe_dump(train_config(args, run_dir)))
    threads = args.threads if processes == 1 else max(1, args.threads // processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    hybridbatch = str(Path(sys.executable).with_name("hybridbatch"))
    if processes == 1:
        command = [hybridbatch, "train", str(config)]
    else:
        torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
        command = [torchrun, "--standalone", "--nproc_per_node", str(processes), hybridbatch, "train", str(config)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{processes}-process run failed ({done.returncode}):\n{done.stderr[-4000:]}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    timed = [r["step_s"] for r in steps[args.warmup:]]
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"processes": summary["processes"], "threads_per_process": threads, "command_wall_s": round(wall, 1),
            "timed_steps": len(timed), "step_s_median": round(statistics.median(timed), 3),
            "step_s_total": round(sum(timed), 2),
            "examples_per_s": round(args.batch_size * len(timed) / sum(timed), 2),
            "losses": [r["loss"] for r in steps], "batches": (run_dir / "batches.jsonl").read_text()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-en")
    parser.add_argument("--languages", default="en,de,es,zh")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--warmup", type=int, default=2, help="first steps run but not timed")
    parser.add_argument("--batch-size", type=int, default=32, help="the global batch, whatever the processes")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in all (split over processes)")
    parser.add_argument("--out", default=None, help="JSON file (default benchmarks/results/train_processes_MODEL.json)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-train-processes-") as tmp:
        one = run_mode(args, Path(tmp), 1)
        two = run_mode(args, Path(tmp), 2)
    diffs = [abs(a - b) for a, b in zip(one["losses"], two["losses"], strict=True)]
    result = {
        "benchmark": "train_processes", "model": args.model, "languages": args.languages,
        "global_batch": args.batch_size, "steps": args.steps, "warmup_steps_untimed": args.warmup,
        "max_seq_length": args.max_seq_length,
        "same_plan": one["batches"] == two["batches"],
        "one_process": {k: v for k, v in one.items() if k not in ("losses", "batches")},
        "two_processes": {k: v for k, v in two.items() if k not in ("losses", "batches")},
        "ratio_examples_per_s_two_over_one": round(two["examples_per_s"] / one["examples_per_s"], 3),
        "loss_first_step": [one["losses"][0], two["losses"][0]],
        "loss_abs_diff_max": round(max(diffs), 5), "loss_abs_diff_mean": round(statistics.fmean(diffs), 5),
        "loss_mean_one": round(statistics.fmean(one["losses"]), 5),
        "loss_mean_two": round(statistics.fmean(two["losses"]), 5),
        "losses_one": [round(x, 5) for x in one["losses"]], "losses_two": [round(x, 5) for x in two["losses"]],
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                    "platform": platform.platform(), "python": platform.python_version()},
    }
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"train_processes_{args.model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("losses_")}, indent=2))
    return 0 if result["same_plan"] else 1


if __name__ == "__main__":
    sys.exit(main())
