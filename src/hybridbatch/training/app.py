"""`hybridbatch train CONFIG [key=value ...] [--dry-run] [--resume [--force]]`: the only place training prints.

`--dry-run` writes the plan into RUN/, or into RUN.dry-run/ beside it when RUN holds a run (it never rewrites
a run's config.yaml or batches.jsonl). `--resume` refuses a config that changes what is trained; with
`--force` it continues anyway and appends the changed keys to RUN/config_changes.jsonl.

Exit codes (hybridbatch.exit_codes): 0 done, 1 internal error, 2 bad config or data (nothing was trained),
3 stopped on a non-finite loss, 4 the run folder is in use or already holds a run, 5 disk full / permission.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

log = logging.getLogger("hybridbatch.train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hybridbatch train", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="YAML training config (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides, values read as YAML: sampler.alpha=0.3 steps=100")
    parser.add_argument("--dry-run", action="store_true",
                        help="write RUN/config.yaml and RUN/batches.jsonl without loading a model "
                             "(RUN.dry-run/ if RUN holds a run)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest valid checkpoint")
    parser.add_argument("--force", action="store_true",
                        help="with --resume: continue even if the sampler, data or other trained keys changed "
                             "(recorded in RUN/config_changes.jsonl)")
    return parser


def main_train(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    if args.force and not args.resume:
        parser.error("--force only applies to --resume")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from hybridbatch.exit_codes import report_error
    from hybridbatch.training.config import load_config

    try:
        config = load_config(args.config, args.overrides)
        if args.dry_run:
            from hybridbatch.training.data import dry_run

            run_dir = dry_run(config)
            print(f"dry run: wrote {run_dir / 'config.yaml'} and {run_dir / 'batches.jsonl'}")
            return 0
        from hybridbatch.training.trainer import train

        run_dir = train(config, resume=args.resume, force=args.force)
    except Exception as exc:  # noqa: BLE001 - one table maps every exception to its exit code
        return report_error(exc)
    if os.environ.get("RANK", "0") == "0":  # one line per run, not per process
        print(f"trained: {run_dir} (model in {run_dir / 'model'})")
    return 0


if __name__ == "__main__":
    sys.exit(main_train(sys.argv[1:]))
