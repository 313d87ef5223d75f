"""The `hybridbatch` command: one parser registering every command, thin wrappers over the library.

Each command family has its module (evaluate: eval / encode / score / eval-vl; data; models; train: train /
train-vl; compare: compare / demo; explore), which adds its commands to the parser here and handles their
arguments; every command runs through one table from exceptions to exit codes (exit_codes.py). Nothing heavy is
imported before a command runs: `hybridbatch --help` does not load torch.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from hybridbatch.cli import compare, data, evaluate, explore, models, train
from hybridbatch.cli.common import add_global_flags, check_shared_arguments

COMMAND_FAMILIES = (evaluate, data, models, train, compare, explore)  # each: add_commands(subparsers)


def _build() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="hybridbatch", description=__doc__.splitlines()[0])
    add_global_flags(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True)
    for family in COMMAND_FAMILIES:
        family.add_commands(sub)
    return parser, sub.choices


def build_parser() -> argparse.ArgumentParser:
    """The parser of every `hybridbatch` command."""
    return _build()[0]


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse a command line; `key=value` overrides may also follow options (`train C --dry-run steps=3`)."""
    parser, commands = _build()
    args, rest = parser.parse_known_args(argv)
    command = commands[args.command]
    if rest and isinstance(getattr(args, "overrides", None), list):
        unknown = [arg for arg in rest if arg.startswith("-")]
        if unknown:
            command.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.overrides += rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    usage_problem = getattr(args, "usage_problem", None)
    if usage_problem and (problem := usage_problem(args)):
        command.error(problem)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (hybridbatch.cli.exit_codes). Usage errors exit 2 via argparse."""
    from hybridbatch.cli.exit_codes import run_command

    args = parse_args(sys.argv[1:] if argv is None else argv)
    default_level = logging.INFO if getattr(args, "log_progress", False) else logging.WARNING  # training: progress
    logging.basicConfig(level=logging.DEBUG if args.verbose else default_level,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings from the tokenizers

    def run(args: argparse.Namespace) -> int:
        check_shared_arguments(args)
        return args.func(args)

    return run_command(run, args)


# `hybridbatch <command> ARGV` from Python (scripts, tests): the same parser, checks and exit codes.
def main_train(argv: list[str]) -> int:
    return main(["train", *argv])


def main_train_vl(argv: list[str]) -> int:
    return main(["train-vl", *argv])


def main_compare(argv: list[str]) -> int:
    return main(["compare", *argv])


def main_demo(argv: list[str]) -> int:
    return main(["demo", *argv])
