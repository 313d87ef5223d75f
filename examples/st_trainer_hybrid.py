"""Train with hybrid batches through sentence-transformers' own `SentenceTransformerTrainer`.

    python examples/st_trainer_hybrid.py --model me5-small --languages en,de,es,zh \
        --sampler hybrid --alpha 0.5 --steps 200 --batch-size 32 --output-dir runs/st-hybrid
    accelerate launch --num_processes 2 examples/st_trainer_hybrid.py ...   # same batches, 2 processes

The data is the XQuAD-R train half (`--data xquad-r:train`, the default) or a parallel JSONL file. The
batches come from `hybridbatch.integrations.sentence_transformers.HybridBatches`, so they are the batches
hybridbatch's own trainer draws for the same seed; `OUTPUT_DIR/batches.jsonl` lists them. The model's query /
passage prefixes (e5: "query: " / "passage: ") go in through the trainer's `prompts` argument.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hybridbatch.batching.samplers import SAMPLERS
from hybridbatch.integrations.sentence_transformers import HybridBatches
from hybridbatch.models.registry import load_sentence_transformer, resolve_model
from hybridbatch.training.training_data import read_groups


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="me5-small", help="registered name, local folder or hub id")
    parser.add_argument("--data", default="xquad-r:train", help="xquad-r:train, mlqa-r or a parallel JSONL")
    parser.add_argument("--data-dir", help="folder holding xquad-r/ (default: $HYBRIDBATCH_LAREQA_DIR)")
    parser.add_argument("--languages", default="ar,de,el,en,es,hi,ru,th,tr,vi,zh", help="comma-separated")
    parser.add_argument("--sampler", default="hybrid", choices=sorted(SAMPLERS))
    parser.add_argument("--alpha", type=float, default=0.5, help="hybrid: probability of a mono batch")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32, help="global batch size (all processes)")
    parser.add_argument("--hard-negatives", type=int, default=0)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/st-hybrid"))
    return parser.parse_args(argv)


def build_trainer(args: argparse.Namespace):
    """(trainer, plan): everything but `trainer.train()`, so tests can look at the batches."""
    import torch
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch / torchrun
    plan = HybridBatches(read_groups(args.data, args.data_dir), args.languages.split(","), args.sampler,
                         batch_size=args.batch_size, seed=args.seed, alpha=args.alpha,
                         hard_negatives=args.hard_negatives, max_steps=args.steps)
    resolved = resolve_model(args.model)
    model = load_sentence_transformer(args.model)
    model.max_seq_length = args.max_seq_length
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(args.output_dir),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size // world,
        batch_sampler=plan.batch_sampler,  # <- the plug-in
        prompts=plan.prompts(resolved.query_prefix, resolved.passage_prefix),
        learning_rate=args.lr,
        warmup_steps=max(1, args.steps // 10),
        seed=args.seed,
        use_cpu=not torch.cuda.is_available(),
        logging_steps=max(1, args.steps // 20),
        save_strategy="no",
        report_to="none",
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=training_args,
        train_dataset=plan.dataset,
        loss=MultipleNegativesRankingLoss(model, gather_across_devices=world > 1),
        callbacks=[plan.batch_log_callback(args.output_dir / "batches.jsonl")],
    )
    return trainer, plan


def _close_process_group() -> None:
    """Under torchrun / accelerate launch: a gloo group left alive at interpreter exit can abort."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    trainer, plan = build_trainer(args)
    trainer.train()
    if trainer.is_world_process_zero():
        trainer.model.save(str(args.output_dir / "final"))
        print(f"{len(plan.groups)} groups ({plan.n_dropped} dropped), {args.steps} steps of {args.sampler} "
              f"batches; model in {args.output_dir / 'final'}, batch log in {args.output_dir}/batches.jsonl")
    _close_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
