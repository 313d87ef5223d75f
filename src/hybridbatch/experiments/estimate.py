"""About how long a compare grid's tasks take on 2 CPU cores: the arithmetic behind `--dry-run`.

Calibrated on the two kinds of 2-core machine this project ran on, both "AMD EPYC" with AVX-512 BF16 and no AMX,
told apart by their flags (`timing.cpu` in every metrics.json): Zen 5 (family 26, `avx_vnni`; the demo's
measurements and the CPU-kinds benchmarks) and Zen 4 class (no `avx_vnni`: the paper grids of issue 18, and
family 25 / model 17 re-measured idle on 2026-12-04). me5-small, length 128. Each constant lies between the two
(benchmarks/README.md "Estimate calibration"):
- training, fp32, word embeddings frozen: 0.047 (Zen 5, demo) to 0.050-0.063 (Zen 4, paper step / demo step) s
  per text of a step (queries + positives + negatives); training the word embeddings (the paper recipe) adds ~7 s
  a step (me5-small's 250,037 x 384 table: its dense gradient and AdamW update; Zen 4 22.2 s vs 15.0 s for the same
  100 + 100 + 100 step; the paper grids' steps took 20 s median); bf16 (`precision: auto|bf16`) makes the per-text
  part x1.5 (Zen 4) to x2.0 (Zen 5) faster, the embedding update not at all (fp32 AdamW);
- evaluation, fp32: 66-83 (Zen 4) to 99-129 (Zen 5) texts/s; bf16 (`eval.fast: auto|bf16`): 134-190 texts/s on
  Zen 4 (145: median of the paper grids' 60 evaluations), ~320 in the demo's benchmark on Zen 5.
Checked against whole runs (tests/experiments/test_grid.py): the demo 7 min 53 s fp32 and 3 min 46 s bf16 (Zen 5),
6 min 04 s bf16 (Zen 4); seeds 1-2 of the α grid's α .25 / .75 (4 trainings, 8 evaluations) 29 min 55 s (Zen 4).
Expect +-30% on another CPU. Other base models are scaled by their measured cost (`BASE_MODEL_COST`); one not
measured is counted at me5-small's cost, and the estimate's line says so.
This module knows no grid layout: `config` is a grid.CompareConfig and `tasks` its pending
tasks, read by attribute and position.
"""

from __future__ import annotations

from typing import Any

from hybridbatch.experiments.grid_spec import load_benchmark_spec

TRAIN_S_PER_TEXT = 0.05  # fp32, me5-small, 2 cores: seconds per text of a training step (queries + positives + negatives)
WORD_EMBEDDING_STEP_S = 7.0  # fp32, per step, when the word embeddings are trained (me5-small's table)
EVAL_TEXTS_PER_S = 90.0  # fp32 encoding, me5-small, length 128, 2 cores
BF16_TRAIN_SPEEDUP = 1.7  # precision bf16 on a native-bf16 CPU, per-text part (x1.5 Zen 4, x2.0 Zen 5)
BF16_EVAL_SPEEDUP = 1.7  # --fast bf16 on a native-bf16 CPU (~150 texts/s in the paper grids)
OVERHEAD_S = 60.0  # loading data and models, the report's figures and tests
# Other base models: (training, encoding) cost as a multiple of me5-small's, measured on the same 2 cores.
# EmbeddingGemma-300M, Zen 4 class, 2026-12-04: a paper-recipe step 99-135 s (gradient-cached, chunks of 16) vs
# me5-small's 15-22 s; encoding bf16 34 texts/s (all of MLQA-R, idle) vs ~145.
BASE_MODEL_COST = {"me5-small": (1.0, 1.0), "embeddinggemma-300m": (5.5, 4.3)}


def model_cost(model: str) -> tuple[float, float]:
    """(training, encoding) cost of a base model as a multiple of me5-small's; 1 where not measured."""
    return BASE_MODEL_COST.get(str(model), (1.0, 1.0))


def step_seconds(texts: int, word_embeddings_trained: bool, bf16: bool = False, model: str = "me5-small") -> float:
    """One optimizer step over `texts` texts (queries + positives + negatives, all micro-batches)."""
    per_text = TRAIN_S_PER_TEXT / (BF16_TRAIN_SPEEDUP if bf16 else 1.0)
    return (texts * per_text + (WORD_EMBEDDING_STEP_S if word_embeddings_trained else 0.0)) * model_cost(model)[0]


def encode_texts_per_s(bf16: bool = False, model: str = "me5-small") -> float:
    return EVAL_TEXTS_PER_S * (BF16_EVAL_SPEEDUP if bf16 else 1.0) / model_cost(model)[1]


def estimate_seconds(config: Any, tasks: list, native_bf16: bool | None = None) -> dict[str, float]:
    """Wall time of `tasks`: fp32 (`total_s`) and as configured on this CPU (`configured_s`: bf16 speed-ups where
    the config asks for bf16 or auto and the CPU has native bf16; `native_bf16` overrides the CPU check)."""
    if native_bf16 is None:
        from hybridbatch.hardware import cpu_features

        native_bf16 = cpu_features().kind in ("amx", "avx512-bf16")
    train_bf16 = native_bf16 and str(getattr(config.train, "get", lambda *_: None)("precision")) in ("bf16", "auto")
    eval_bf16 = native_bf16 and getattr(config.eval, "fast", None) in ("bf16", "auto")
    texts = {}
    for spec in {b for kind, _, b in tasks if kind == "eval"}:
        bench = load_benchmark_spec(spec, config.data_dir)
        texts[spec] = len(bench.queries) + len(bench.corpus)
    train_steps = train_texts = embedding_steps = eval_texts = 0
    train_s = eval_s = configured = 0.0
    for kind, run, bench in tasks:
        model = str(getattr(run, "model", ""))
        if kind == "train":
            per_example = 2 + getattr(getattr(run.train, "data", None), "hard_negatives", 0)
            step_texts = run.train.batch_size * per_example * run.train.grad_accum
            trained = not getattr(run.train, "freeze_word_embeddings", True)
            train_steps += run.train.steps
            train_texts += run.train.steps * step_texts
            embedding_steps += run.train.steps if trained else 0
            train_s += run.train.steps * step_seconds(step_texts, trained, False, model)
            configured += run.train.steps * step_seconds(step_texts, trained, train_bf16, model)
        elif kind == "eval":
            eval_texts += texts[bench]
            eval_s += texts[bench] / encode_texts_per_s(False, model)
            configured += texts[bench] / encode_texts_per_s(eval_bf16, model)
    overhead = OVERHEAD_S if tasks else 0.0
    models = sorted({str(getattr(run, "model", "")) for _, run, _ in tasks})
    return {"train_steps": train_steps, "train_texts": train_texts, "embedding_steps": embedding_steps,
            "train_s": train_s, "eval_texts": eval_texts, "eval_s": eval_s, "total_s": train_s + eval_s + overhead,
            "configured_s": configured + overhead, "models": models}


def describe_estimate(estimate: dict) -> str:
    models = estimate.get("models") or ["me5-small"]
    costs = [f"{m} x{BASE_MODEL_COST[m][0]:g} training / x{BASE_MODEL_COST[m][1]:g} encoding" for m in models
             if m in BASE_MODEL_COST and m != "me5-small"]
    unknown = [m for m in models if m not in BASE_MODEL_COST]
    scaled = f"; {', '.join(costs)} of me5-small's cost" if costs else ""
    line = (f"estimated wall time on 2 CPU cores: {estimate['total_s'] / 60:.0f} min in fp32 "
            f"({estimate['train_steps']:.0f} training steps, {estimate['train_texts']:.0f} texts x "
            f"{TRAIN_S_PER_TEXT} s" + (f" + {estimate['embedding_steps']:.0f} word-embedding updates x "
                                      f"{WORD_EMBEDDING_STEP_S:.0f} s" if estimate["embedding_steps"] else "")
            + f"{scaled and ' (scaled)'} = {estimate['train_s']:.0f} s; {estimate['eval_texts']:.0f} texts to "
            f"encode / {EVAL_TEXTS_PER_S:.0f} per s = {estimate['eval_s']:.0f} s; overhead ~{OVERHEAD_S:.0f} s"
            f"{scaled})")
    if estimate["configured_s"] < estimate["total_s"] - 1:
        line += f"; ~{estimate['configured_s'] / 60:.0f} min with this CPU's native bf16 as configured"
    if unknown:
        line += f"; {', '.join(unknown)} not measured: counted at me5-small's cost"
    return line + "; +-30% between the CPUs measured"
