"""About how long a compare grid's tasks take on 2 CPU cores with me5-small: the arithmetic behind `--dry-run`.

Measured on 2 idle cores of an AMD EPYC Zen 5 (AVX-512 BF16, no AMX), me5-small, length 128 (README, demo and
paper-recipe sections): training costs ~0.047 s per text of a step in fp32 (the demo's 30 steps x 64 texts: ~90
s a run; the paper recipe's batch 100 + 100 positives + 100 hard negatives: ~15 s a step), evaluation encodes
~105 texts/s in fp32. With native bf16 (`precision: auto|bf16`, `eval.fast: auto|bf16` on an AMX or AVX-512
BF16 CPU) training was x2.0 faster (47 s vs 97 s per demo run) and encoding x3.2 (14.6 s vs 47.5 s for 4,712
texts). Other base models scale with their size (EmbeddingGemma-300M: ~7x me5-small). This module knows no grid
layout: `config` is a grid.CompareConfig and `tasks` its pending tasks, read by attribute and position.
"""

from __future__ import annotations

from typing import Any

from hybridbatch.experiments.grid_spec import load_benchmark_spec

TRAIN_S_PER_TEXT = 0.047  # fp32, me5-small, 2 cores: seconds per text of a training step (queries + positives + negatives)
EVAL_TEXTS_PER_S = 105.0  # fp32 encoding, me5-small, length 128, 2 cores
BF16_TRAIN_SPEEDUP = 2.0  # precision bf16 on a native-bf16 CPU (the demo's training runs)
BF16_EVAL_SPEEDUP = 3.2  # --fast bf16 on a native-bf16 CPU (the demo's benchmark)
OVERHEAD_S = 60.0  # loading data and models, the report's figures and tests


def estimate_seconds(config: Any, tasks: list, native_bf16: bool | None = None) -> dict[str, float]:
    """Wall time of `tasks`: fp32 (`total_s`) and as configured on this CPU (`configured_s`: bf16 speed-ups where
    the config asks for bf16 or auto and the CPU has native bf16; `native_bf16` overrides the CPU check)."""
    texts = {}
    for spec in {b for kind, _, b in tasks if kind == "eval"}:
        bench = load_benchmark_spec(spec, config.data_dir)
        texts[spec] = len(bench.queries) + len(bench.corpus)
    train_steps = train_texts = 0
    for kind, run, _ in tasks:
        if kind == "train":
            steps = run.train.steps * run.train.grad_accum
            per_example = 2 + getattr(getattr(run.train, "data", None), "hard_negatives", 0)
            train_steps += steps
            train_texts += steps * run.train.batch_size * per_example
    eval_texts = sum(texts[b] for kind, _, b in tasks if kind == "eval")
    train_s, eval_s = train_texts * TRAIN_S_PER_TEXT, eval_texts / EVAL_TEXTS_PER_S
    overhead = OVERHEAD_S if tasks else 0.0
    if native_bf16 is None:
        from hybridbatch.hardware import cpu_features

        native_bf16 = cpu_features().kind in ("amx", "avx512-bf16")
    train_bf16 = native_bf16 and str(getattr(config.train, "get", lambda *_: None)("precision")) in ("bf16", "auto")
    eval_bf16 = native_bf16 and getattr(config.eval, "fast", None) in ("bf16", "auto")
    configured = (train_s / (BF16_TRAIN_SPEEDUP if train_bf16 else 1.0)
                  + eval_s / (BF16_EVAL_SPEEDUP if eval_bf16 else 1.0) + overhead)
    return {"train_steps": train_steps, "train_texts": train_texts, "train_s": train_s, "eval_texts": eval_texts,
            "eval_s": eval_s, "total_s": train_s + eval_s + overhead, "configured_s": configured}


def describe_estimate(estimate: dict[str, float]) -> str:
    line = (f"estimated wall time on 2 CPU cores (me5-small): {estimate['total_s'] / 60:.0f} min in fp32 "
            f"({estimate['train_steps']:.0f} training steps, {estimate['train_texts']:.0f} texts x "
            f"{TRAIN_S_PER_TEXT} s = {estimate['train_s']:.0f} s; {estimate['eval_texts']:.0f} texts to encode / "
            f"{EVAL_TEXTS_PER_S:.0f} per s = {estimate['eval_s']:.0f} s; overhead ~{OVERHEAD_S:.0f} s)")
    if estimate["configured_s"] < estimate["total_s"] - 1:
        line += f"; ~{estimate['configured_s'] / 60:.0f} min with this CPU's native bf16 as configured"
    return line
