"""`hybridbatch train-vl CONFIG [key=value ...] [--dry-run] [--resume]`: train an image-text dual encoder.

Exit codes (hybridbatch.exit_codes): 0 done, 1 internal error, 2 bad config or data (nothing was trained),
3 stopped on a non-finite loss, 4 the run folder is in use or already holds a run, 5 disk full / permission.
"""

from __future__ import annotations

import argparse
import json
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hybridbatch train-vl", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="YAML image-text config (see configs/emoji-hybrid.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides, values read as YAML: sampler.name=mono steps=100")
    parser.add_argument("--dry-run", action="store_true",
                        help="write RUN/config.yaml and RUN/batches.jsonl without loading a model")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in output_dir from its newest verified checkpoint "
                             "(checkpoint.every); only eval. and checkpoint. keys may differ")
    return parser


def main_train_vl(argv: list[str]) -> int:
    args = build_parser().parse_intermixed_args(argv)
    from hybridbatch.exit_codes import report_error
    from hybridbatch.training.image_text import dry_run_image_text, train_image_text
    from hybridbatch.training.image_text_config import load_image_text_config

    try:
        config = load_image_text_config(args.config, args.overrides)
        if args.dry_run:
            run_dir = dry_run_image_text(config)
            print(f"dry run: wrote {run_dir / 'config.yaml'} and {run_dir / 'batches.jsonl'}")
            return 0
        run_dir = train_image_text(config, resume=args.resume)
    except Exception as exc:  # noqa: BLE001 - one table maps every exception to its exit code
        return report_error(exc)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    print(json.dumps({"run": str(run_dir), "model": str(run_dir / "model"),
                      "evaluations": summary.get("evaluations", {})}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main_train_vl(sys.argv[1:]))
