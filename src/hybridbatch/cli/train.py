"""`hybridbatch train` and `hybridbatch train-vl`: the only place training prints.

`train CONFIG [key=value ...] [--dry-run] [--resume [--force]]` trains a text retriever. `--dry-run` writes the
plan into RUN/, or into RUN.dry-run/ beside it when RUN holds a run (it never rewrites a run's config.yaml or
batches.jsonl). `--resume` refuses a config that changes what is trained; with `--force` it continues anyway
and appends the changed keys to RUN/config_changes.jsonl.

`train-vl CONFIG [key=value ...] [--dry-run] [--resume]` trains an image-text dual encoder.

Exit codes (hybridbatch.cli.exit_codes): 0 done, 1 internal error, 2 bad config or data (nothing was trained),
3 stopped on a non-finite loss, 4 the run folder is in use or already holds a run, 5 disk full / permission.
Argument handling and printing only: configs and training are hybridbatch.training's.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from hybridbatch.cli.common import add_command, add_overrides


def _dry_run_written(run_dir: Path) -> int:
    print(f"dry run: wrote {run_dir / 'config.yaml'} and {run_dir / 'batches.jsonl'}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from hybridbatch.training.config import load_config

    config = load_config(args.config, args.overrides)
    if args.dry_run:
        from hybridbatch.training.training_data import dry_run

        return _dry_run_written(dry_run(config))
    from hybridbatch.training.trainer import train

    run_dir = train(config, resume=args.resume, force=args.force)
    if os.environ.get("RANK", "0") == "0":  # one line per run, not per process
        print(f"trained: {run_dir} (model in {run_dir / 'model'})")
    return 0


def _force_needs_resume(args: argparse.Namespace) -> str | None:
    return "--force only applies to --resume" if args.force and not args.resume else None


def _train_vl(args: argparse.Namespace) -> int:
    from hybridbatch.training.image_text import dry_run_image_text, train_image_text
    from hybridbatch.training.image_text_config import load_image_text_config

    config = load_image_text_config(args.config, args.overrides)
    if args.dry_run:
        return _dry_run_written(dry_run_image_text(config))
    run_dir = train_image_text(config, resume=args.resume)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    print(json.dumps({"run": str(run_dir), "model": str(run_dir / "model"),
                      "evaluations": summary.get("evaluations", {})}, indent=2))
    return 0


def add_commands(sub) -> None:
    p = add_command(sub, "train", _train, help="train a text retriever from a YAML config",
                    description="`hybridbatch train CONFIG [key=value ...] [--dry-run] [--resume [--force]]`: "
                                "the only place training prints.")
    p.add_argument("config", help="YAML training config (see configs/)")
    add_overrides(p, "sampler.alpha=0.3 steps=100")
    p.add_argument("--dry-run", action="store_true",
                   help="write RUN/config.yaml and RUN/batches.jsonl without loading a model "
                        "(RUN.dry-run/ if RUN holds a run)")
    p.add_argument("--resume", action="store_true", help="continue from the newest valid checkpoint")
    p.add_argument("--force", action="store_true",
                   help="with --resume: continue even if the sampler, data or other trained keys changed "
                        "(recorded in RUN/config_changes.jsonl)")
    p.set_defaults(usage_problem=_force_needs_resume, log_progress=True)

    p = add_command(sub, "train-vl", _train_vl, help="train an image-text dual encoder from a YAML config",
                    description="`hybridbatch train-vl CONFIG [key=value ...] [--dry-run] [--resume]`: "
                                "train an image-text dual encoder.")
    p.add_argument("config", help="YAML image-text config (see configs/train-vl/emoji-hybrid.yaml)")
    add_overrides(p, "sampler.name=mono steps=100")
    p.add_argument("--dry-run", action="store_true",
                   help="write RUN/config.yaml and RUN/batches.jsonl without loading a model")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in output_dir from its newest verified checkpoint "
                        "(checkpoint.every); only eval. and checkpoint. keys may differ")
    p.set_defaults(log_progress=True)
