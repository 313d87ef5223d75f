"""Training-step cost: hybridbatch's trainer against sentence-transformers' trainer, in one process run.

    OMP_NUM_THREADS=2 python benchmarks/bench_train_step.py --model minilm-en --steps 8 --warmup 2 --threads 2
    python benchmarks/bench_train_step.py --model me5-small --freeze-word-embeddings --rounds 2

The XQuAD-R files come from `--data-dir`, else $HYBRIDBATCH_LAREQA_DIR, else hybridbatch's cache.

Both sides train the same model folder (`--model`, resolved through hybridbatch's registry) on the same
data (the XQuAD-R train half, restricted to `--languages`), with the same batches (hybridbatch's plan: our
trainer draws it itself, sentence-transformers gets the identical plan through
`hybridbatch.integrations.sentence_transformers.HybridBatches` as its `batch_sampler`; the script checks
that the two plans agree), batch size, max_seq_length, AdamW (torch's, same lr, weight decay, betas,
no decay on biases/LayerNorm), linear schedule without warm-up, gradient clipping at 1.0, no hard
negatives, temperature 0.05 = `MultipleNegativesRankingLoss(scale=20)`, the model's prefixes (prompts),
word embeddings frozen on both sides or on neither (`--freeze-word-embeddings`), and the same
`torch.set_num_threads(--threads)`. Checkpoints, evaluation and logging are off on both sides.

What is timed: the wall time between the ends of consecutive optimizer steps (`time.perf_counter()`),
i.e. everything one step costs and nothing else: drawing the planned batch, building its texts,
tokenizing (sentence-transformers: its dataloader fetch and collator), forward, loss, backward, gradient
clipping, optimizer and scheduler step, plus each trainer's per-step bookkeeping (our metrics line and
progress bar; their callbacks and progress bar). Ours: the end of `Trainer._train_step` (a subclass
records it); theirs: `TrainerCallback.on_step_end`. The first `--warmup` steps are run but not counted;
the reported figure is the median of the `--steps` measured steps, pooled over `--rounds` rounds (each
round runs ours then theirs, each with a freshly loaded model). Our trainer's own `step_s` field of
`RUN/metrics.jsonl` (the same work minus the metrics line and progress bar) is reported as a cross-check.
The process's CPU time (`time.process_time()`, all threads) over the same intervals is reported too
(`*_cpu_s_per_step`, `cpu_ratio_ours_over_theirs`): wall well above CPU time means the process waited
(descheduled by other jobs); CPU time well above one thread's share means OpenMP threads spun waiting
for each other. Batches differ in cost (mono vs cross-lingual, text lengths) and step i is the same planned
batch on both sides, so `ratio_total` (sum over the measured steps) and `ratio_paired_median` (median of
the per-step ratios) are steadier than the ratio of the two medians when there are few steps.
On a 2-core machine busy with other jobs, `--threads 2` makes every parallel op wait for a descheduled
thread: steps then cost 2-3x the single-thread time and the comparison counts ops rather than work
(our default `encode_chunk_size` 16 makes 4 forward chunks of a batch where MNRL makes 2).

The sampler's own cost per batch is timed separately: `sampler.batch_at` (the plan) plus
`hybridbatch.training.step.batch_texts` (texts from the plan), over `--sampler-batches` batches; and, for
the sentence-transformers side, `PlanRows.resolve` (the dataset transform that turns plan slots into rows).

Target: ours/theirs <= 1.05 (our step may cost at most 5% more than sentence-transformers').
Prints one JSON object: the numbers, the machine (cores, load, torch threads) and the arguments. On a
machine busy with other jobs the numbers are noisy; compare the ratio across a few runs (`--rounds`).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_RATIO = 1.05


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-en", help="registered name (minilm-en, me5-small) or folder")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="measured optimizer steps per side and round")
    parser.add_argument("--warmup", type=int, default=2, help="steps run first and not counted (>= 1)")
    parser.add_argument("--rounds", type=int, default=1, help="ours, theirs, ours, theirs, ...")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for both sides")
    parser.add_argument("--languages", default="en,de,es")
    parser.add_argument("--sampler", default="hybrid")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--freeze-word-embeddings", action="store_true")
    parser.add_argument("--encode-chunk-size", type=int, default=16,
                        help="our trainer's encode_chunk_size (its default; 0 = one forward per batch)")
    parser.add_argument("--sampler-batches", type=int, default=100, help="batches for the sampler cost")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="LAReQA folder (default: $HYBRIDBATCH_LAREQA_DIR)")
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error("--warmup must be >= 1 (a step's time is measured from the end of the previous one)")
    if args.steps < 1 or args.rounds < 1 or args.threads < 1:
        parser.error("--steps, --rounds and --threads must be >= 1")
    return args


# --------------------------------------------------------------------------------------------- ours
def our_config(args: argparse.Namespace, output_dir: Path):
    from hybridbatch.training.config import config_from_dict

    return config_from_dict({
        "model": args.model,
        "data": {"source": "xquad-r:train", "languages": args.languages.split(","), "hard_negatives": 0,
                 "data_dir": args.data_dir},
        "sampler": {"name": args.sampler, "alpha": args.alpha, "language_weighting": "uniform"},
        "batch_size": args.batch_size,
        "steps": args.warmup + args.steps,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "warmup_steps": 0,
        "grad_accum": 1,
        "max_grad_norm": 1.0,  # the HF trainer's default, so both clip
        "temperature": 0.05,  # = MultipleNegativesRankingLoss scale 20
        "symmetric": False,
        "mask_same_group": False,
        "freeze_word_embeddings": args.freeze_word_embeddings,
        "max_seq_length": args.max_seq_length,
        "encode_chunk_size": args.encode_chunk_size,
        "seed": args.seed,
        "output_dir": str(output_dir),
        "eval": {"every": 0, "benchmarks": [], "final": False},
        "early_stopping": {"patience": 0, "val_fraction": 0.0},
        "checkpoint": {"every": 0},
        "log_every": 1,
    }, "bench_train_step")


def run_ours(args: argparse.Namespace, output_dir: Path) -> dict[str, Any]:
    from hybridbatch.training.components import make_accelerator
    from hybridbatch.training.rundir import METRICS, read_metrics
    from hybridbatch.training.trainer import Trainer

    marks: list[tuple[float, float]] = []

    class TimedTrainer(Trainer):
        def _train_step(self):
            record = super()._train_step()
            marks.append((time.perf_counter(), time.process_time()))
            return record

    config = our_config(args, output_dir)
    trainer = TimedTrainer(config, make_accelerator())
    trainer.run()
    threads = _threads()
    records = [r for r in read_metrics(output_dir / METRICS) if "step_s" in r]
    del trainer
    gc.collect()
    return {**_measured(marks, args.warmup),
            "trainer_step_s": [r["step_s"] for r in records[args.warmup:]],
            "trainer_sampler_s": [r["sampler_s"] for r in records[args.warmup:]],
            "torch_threads": threads}


# --------------------------------------------------------------------------------------------- theirs
def run_theirs(args: argparse.Namespace, groups, output_dir: Path) -> dict[str, Any]:
    import torch
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import TrainerCallback

    from hybridbatch.integrations.sentence_transformers import HybridBatches
    from hybridbatch.models.registry import load_sentence_transformer, resolve_model

    total = args.warmup + args.steps
    plan = HybridBatches(groups, args.languages.split(","), args.sampler, batch_size=args.batch_size,
                         seed=args.seed, alpha=args.alpha, hard_negatives=0, max_steps=total)
    resolved = resolve_model(args.model)
    model = load_sentence_transformer(args.model)
    model.max_seq_length = args.max_seq_length
    if args.freeze_word_embeddings:
        _embedding_weight(model).requires_grad_(False)
    marks: list[tuple[float, float]] = []

    class StepTimes(TrainerCallback):
        def on_step_end(self, *_, **__):
            marks.append((time.perf_counter(), time.process_time()))

    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(output_dir),
        max_steps=total,
        per_device_train_batch_size=args.batch_size,
        batch_sampler=plan.batch_sampler,
        prompts=plan.prompts(resolved.query_prefix, resolved.passage_prefix) or None,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        lr_scheduler_type="linear",
        warmup_steps=0,
        optim="adamw_torch",  # torch.optim.AdamW with its defaults, as ours (not the fused variant)
        max_grad_norm=1.0,
        seed=args.seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=False,
        logging_strategy="no",
        logging_steps=10**9,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
    )
    trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=plan.dataset,
                                         loss=MultipleNegativesRankingLoss(model, scale=20.0),
                                         callbacks=[StepTimes()])
    with contextlib.redirect_stdout(sys.stderr):  # the trainer prints its final metrics dict
        trainer.train()
    threads = _threads()
    optimizer = type(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer")
                     else trainer.optimizer).__name__
    del trainer, model
    gc.collect()
    return {**_measured(marks, args.warmup), "torch_threads": threads, "optimizer": optimizer}


def _embedding_weight(model):
    try:
        return model[0].auto_model.embeddings.word_embeddings.weight
    except AttributeError:
        return model.transformers_model.get_input_embeddings().weight


# --------------------------------------------------------------------------------------------- sampler
def sampler_cost(args: argparse.Namespace, groups) -> dict[str, Any]:
    """Per batch: our plan (`batch_at`) + texts (`batch_texts`), and the ST dataset transform."""
    from hybridbatch.integrations.sentence_transformers import PlanRows
    from hybridbatch.models.registry import resolve_model
    from hybridbatch.training.step import batch_texts
    from hybridbatch.training.training_data import build_sampler, prepare_data

    config = our_config(args, Path(tempfile.gettempdir()) / "bench-train-step-plan")  # never written
    data = prepare_data(config)
    sampler = build_sampler(config, data)
    resolved = resolve_model(args.model)
    plan_us, texts_us, rows_us = [], [], []
    rows = PlanRows(sampler, 0)
    for g in range(args.sampler_batches):
        t0 = time.perf_counter()
        batch = sampler.batch_at(*sampler.position(g))
        t1 = time.perf_counter()
        batch_texts(batch, data.train, resolved.query_prefix, resolved.passage_prefix)
        t2 = time.perf_counter()
        rows.resolve(batch)
        t3 = time.perf_counter()
        plan_us.append((t1 - t0) * 1e6)
        texts_us.append((t2 - t1) * 1e6)
        rows_us.append((t3 - t2) * 1e6)
    total = [a + b for a, b in zip(plan_us, texts_us, strict=True)]
    return {
        "batches": args.sampler_batches,
        "batch_at_us_median": round(statistics.median(plan_us), 1),
        "batch_texts_us_median": round(statistics.median(texts_us), 1),
        "ours_per_batch_us_median": round(statistics.median(total), 1),
        "ours_per_batch_us_mean": round(statistics.fmean(total), 1),
        "st_plan_rows_resolve_us_median": round(statistics.median(rows_us), 1),
        "train_groups": len(data.train),
        "steps_per_epoch": sampler.steps_per_epoch,
    }, sampler


def same_plan(sampler, groups, args: argparse.Namespace) -> bool:
    """Our trainer's plan and the one HybridBatches hands sentence-transformers: identical batches?"""
    from hybridbatch.integrations.sentence_transformers import HybridBatches

    total = args.warmup + args.steps
    theirs = HybridBatches(groups, args.languages.split(","), args.sampler, batch_size=args.batch_size,
                           seed=args.seed, alpha=args.alpha, max_steps=total).plan
    return all(sampler.batch_at(*sampler.position(g)) == theirs.batch_at(*theirs.position(g))
               for g in range(total))


# --------------------------------------------------------------------------------------------- helpers
def _measured(marks: list[tuple[float, float]], warmup: int) -> dict[str, list[float]]:
    """Seconds of each step after the warm-up (end of step i minus end of step i-1): wall time, and the
    process's CPU time (all threads), which other jobs on a shared machine disturb much less."""
    pairs = list(zip(marks[warmup - 1:-1], marks[warmup:], strict=True))
    return {"step_s": [round(b[0] - a[0], 4) for a, b in pairs],
            "cpu_s": [round(b[1] - a[1], 4) for a, b in pairs]}


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def load_train_groups(data_dir: str | None):
    from hybridbatch.data.lareqa import load_lareqa_articles, split_articles
    from hybridbatch.data.parallel import groups_from_lareqa

    return groups_from_lareqa(split_articles(load_lareqa_articles("xquad-r", data_dir), "train"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import logging

    import torch

    torch.set_num_threads(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    load_before = os.getloadavg()

    groups = load_train_groups(args.data_dir)
    sampler_info, sampler = sampler_cost(args, groups)
    identical = same_plan(sampler, groups, args)
    if not identical:
        raise SystemExit("the two trainers would not see the same batches; not comparing")

    ours_runs: list[dict[str, Any]] = []
    theirs_runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-train-step-") as tmp:
        for r in range(args.rounds):
            ours_runs.append(run_ours(args, Path(tmp) / f"ours-{r}"))
            theirs_runs.append(run_theirs(args, groups, Path(tmp) / f"theirs-{r}"))

    ours = [s for run in ours_runs for s in run["step_s"]]
    theirs = [s for run in theirs_runs for s in run["step_s"]]
    ratio = statistics.median(ours) / statistics.median(theirs)
    ours_cpu = [s for run in ours_runs for s in run["cpu_s"]]
    # Step i of a round is the same planned batch on both sides: pair them (batches differ in cost).
    paired = [a / b for o, t in zip(ours_runs, theirs_runs, strict=True)
              for a, b in zip(o["step_s"], t["step_s"], strict=True)]
    theirs_cpu = [s for run in theirs_runs for s in run["cpu_s"]]
    result = {
        "benchmark": "train_step",
        "measured": "wall seconds between the ends of consecutive optimizer steps (plan, texts, tokenization, "
                    "forward, loss, backward, clipping, optimizer/scheduler, per-step bookkeeping), "
                    f"median over {args.steps} steps x {args.rounds} round(s) after {args.warmup} warm-up step(s); "
                    "cpu_s: the process's CPU time over the same intervals",
        "ours_s_per_step": _median(ours),
        "theirs_s_per_step": _median(theirs),
        "ratio_ours_over_theirs": round(ratio, 4),
        "target_ratio_max": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
        "ratio_total": round(sum(ours) / sum(theirs), 4),
        "ratio_paired_median": round(statistics.median(paired), 4),
        "ours_cpu_s_per_step": _median(ours_cpu),
        "theirs_cpu_s_per_step": _median(theirs_cpu),
        "cpu_ratio_ours_over_theirs": round(statistics.median(ours_cpu) / statistics.median(theirs_cpu), 4),
        "ours": {"step_s": [run["step_s"] for run in ours_runs],
                 "cpu_s": [run["cpu_s"] for run in ours_runs],
                 "trainer_step_s_median": _median([s for run in ours_runs for s in run["trainer_step_s"]]),
                 "trainer_sampler_ms_median": round(1e3 * statistics.median(
                     [s for run in ours_runs for s in run["trainer_sampler_s"]]), 3),
                 "torch_threads": [run["torch_threads"] for run in ours_runs]},
        "theirs": {"step_s": [run["step_s"] for run in theirs_runs],
                   "cpu_s": [run["cpu_s"] for run in theirs_runs],
                   "loss": "MultipleNegativesRankingLoss(scale=20)",
                   "optimizer": theirs_runs[0]["optimizer"],
                   "torch_threads": [run["torch_threads"] for run in theirs_runs]},
        "sampler": sampler_info,
        "same_plan": identical,
        "machine": {"cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
                    "torch_threads": args.threads, "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "python": platform.python_version(),
                    "torch": torch.__version__, "sentence_transformers": _version("sentence_transformers"),
                    "transformers": _version("transformers"), "cuda": torch.cuda.is_available()},
        "args": vars(args),
    }
    print(json.dumps(result, indent=2))
    return 0


def _version(module: str) -> str:
    import importlib

    return getattr(importlib.import_module(module), "__version__", "?")


if __name__ == "__main__":
    raise SystemExit(main())
