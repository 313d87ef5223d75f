"""The paper's training step on this machine: batch 100 + 100 positives + 100 hard negatives, plain vs
gradient-cached, peak memory and wall time per optimizer step.

    nice -n 5 python benchmarks/bench_paper_step.py --model me5-small --modes plain cached --steps 2
    python benchmarks/bench_paper_step.py --modes cached --freeze-word-embeddings --autocast-bf16

Each mode runs in its own child process (so peak memory is that mode's alone): it loads the model as the
trainer does (`load_model`, `max_seq_length`, optional frozen word embeddings), builds the XQuAD-R train
half plan (11 languages, hybrid alpha 0.5, `--hard-negatives` per example), and runs `--warmup` + `--steps`
full optimizer steps exactly as `Trainer._train_step` does them (`global_batch_loss`, backward, gradient
norm, AdamW step, zero_grad). The same planned batches in every mode.

Memory: the child's peak resident set (VmHWM) measured over the training steps only: the peak is reset
(`/proc/self/clear_refs` 5) after the model and optimizer are loaded, so `peak_step_rss_mb` is the most the
process held during the steps, and `extra_over_loaded_mb` what the steps added on top of the loaded model
(activations, gradients, AdamW states from the first step on). tracemalloc cannot see torch's allocations.
Time: wall (`perf_counter`) and process CPU time per measured step; wall well above CPU time / threads
means the process was descheduled (the cores are shared). Results are printed as JSON, one line per mode.

Measured 2026-12-03 (AMD EPYC, Zen 5, AVX-512 BF16 and VNNI, no AMX; 2 cores shared with other jobs, load
average 6-11, so wall times are inflated; CPU times are the steadier figure), me5-small, batch 100 + 100
positives + ~98 hard negatives, max_seq_length 128, fp32, 2 threads, median of 2 steps after 1 warm-up:

| step | CPU s / step | wall s / step | peak RSS during steps (loaded model 0.89 GB) |
|---|---|---|---|
| plain, chunks of 16, word embeddings trained | 101 | 140 | 9.0 GB |
| cached, mini-batches of 32, trained | 110 | 334 | 6.6 GB |
| cached 32, trained, torch.autocast bf16 | 134 | 299 | 6.5 GB |
| cached 32, word embeddings frozen | 101 | 181 | 4.4 GB |
| cached 8, frozen (1 step, no warm-up) | 164 | 221 | 1.8 GB |

Activations cost ~0.6-0.85 MB per token: the cached peak is set by its longest mini-batch (the first of the
length-sorted order), the plain peak by all tokens of the batch.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

LANGS = ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(args: argparse.Namespace, mode: str) -> dict:
    import math
    from contextlib import nullcontext

    import torch

    from hybridbatch.training.components import load_model, make_accelerator, make_optimizer
    from hybridbatch.training.config import config_from_dict
    from hybridbatch.training.step import ChunkEncoder, LossSettings, global_batch_loss
    from hybridbatch.training.training_data import build_sampler, prepare_data

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = config_from_dict({
        "model": args.model, "output_dir": "unused", "batch_size": args.batch_size, "steps": 1000, "seed": 0,
        "lr": 3e-5, "weight_decay": 0.01, "max_seq_length": args.max_seq_length,
        "freeze_word_embeddings": args.freeze_word_embeddings, "mask_same_group": True,
        "encode_chunk_size": args.chunk,
        "data": {"source": "xquad-r:train", "languages": args.languages, "hard_negatives": args.hard_negatives,
                 "data_dir": args.data_dir},
        "sampler": {"name": "hybrid", "alpha": 0.5},
    })
    data = prepare_data(config)
    sampler = build_sampler(config, data)
    acc = make_accelerator()
    loaded = load_model(config, data, acc)
    model = loaded.model
    model.train()
    encoder = ChunkEncoder(model)
    optimizer = make_optimizer(model, config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    settings = LossSettings(loaded.query_prefix, loaded.passage_prefix, config.temperature, False, True,
                            args.chunk, args.grad_cache_chunk if mode == "cached" else 0)
    loaded_mb = _rss_mb("VmRSS")
    reset = _reset_peak()
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if args.autocast_bf16 else nullcontext())
    walls, cpus, losses, texts = [], [], [], []
    for k in range(args.warmup + args.steps):
        batch = sampler.batch_at(*sampler.position(k))
        t0, c0 = time.perf_counter(), time.process_time()
        with autocast:
            loss = global_batch_loss(encoder, model, batch, data.train, settings)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, math.inf)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if k >= args.warmup:
            walls.append(wall)
            cpus.append(cpu)
        losses.append(round(float(loss.detach()), 5))
        texts.append(2 * len(batch) + sum(len(n) for n in batch.negatives))
    peak = _rss_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "model": args.model, "batch_size": args.batch_size, "hard_negatives": args.hard_negatives,
            "texts_per_step": texts, "max_seq_length": args.max_seq_length, "encode_chunk_size": args.chunk,
            "grad_cache_chunk": settings.grad_cache_chunk, "freeze_word_embeddings": args.freeze_word_embeddings,
            "autocast_bf16": args.autocast_bf16, "threads": args.threads, "losses": losses,
            "wall_s_per_step": [round(w, 2) for w in walls], "median_wall_s": round(statistics.median(walls), 2),
            "median_cpu_s": round(statistics.median(cpus), 2), "loaded_rss_mb": round(loaded_mb),
            "peak_step_rss_mb": round(peak), "extra_over_loaded_mb": round(peak - loaded_mb),
            "peak_reset": reset, "trainable_params": sum(p.numel() for p in trainable)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="me5-small")
    parser.add_argument("--modes", nargs="+", default=["plain", "cached"], choices=["plain", "cached"])
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--hard-negatives", type=int, default=1)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--languages", nargs="+", default=LANGS)
    parser.add_argument("--chunk", type=int, default=16, help="encode_chunk_size (length-sorted chunks)")
    parser.add_argument("--grad-cache-chunk", type=int, default=32)
    parser.add_argument("--freeze-word-embeddings", action="store_true")
    parser.add_argument("--autocast-bf16", action="store_true", help="torch.autocast(cpu, bfloat16) forward")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--child", choices=["plain", "cached"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        from hybridbatch.hardware import machine_record

        result = child(args, args.child)
        result["cpu"], result["load_average_start"] = machine_record(), list(os.getloadavg())
        print(json.dumps(result), flush=True)
        return
    for mode in args.modes:
        argv = [a for a in sys.argv[1:]]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false")
        out = subprocess.run([sys.executable, __file__, *argv, "--child", mode], env=env, check=True,
                             capture_output=True, text=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
