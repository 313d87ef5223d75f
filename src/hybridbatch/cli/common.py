"""What the commands' parsers share: the global flags, registering a command, shared arguments and their checks.

Knows no command. Imports nothing heavy: `hybridbatch --help` must not load torch, so choices that live in
torch modules (`--fast`) are read only when an argument is checked.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path


def add_global_flags(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """-v on the top parser and on every command's, so `hybridbatch -v train` and `hybridbatch train C -v` agree.

    A command's parser leaves `verbose` unset when -v is absent (SUPPRESS): it must not undo a -v given
    before the command name.
    """
    parser.add_argument("-v", "--verbose", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="debug logging; errors also print their traceback")


def add_command(sub, name: str, func: Callable | None = None, **kwargs) -> argparse.ArgumentParser:
    """A command's parser under `sub` (with the global flags); `func(args)` runs it and returns its exit code."""
    parser = sub.add_parser(name, **kwargs)
    add_global_flags(parser)
    if func is not None:
        parser.set_defaults(func=func)
    return parser


def add_command_group(sub, name: str, help: str) -> argparse._SubParsersAction:
    """`hybridbatch data ...`, `hybridbatch models ...`: a command whose first argument names a subcommand."""
    return add_command(sub, name, help=help).add_subparsers(dest=f"{name}_cmd", required=True)


def add_overrides(parser: argparse.ArgumentParser, example: str) -> None:
    """`key=value ...` after a config file; main() also collects those given after options (`C --dry-run k=v`)."""
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help=f"dotted overrides, values read as YAML: {example}")


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder holding xquad-r/ and mlqa-r/ (else $HYBRIDBATCH_LAREQA_DIR, "
                                      "else the cache)")
    p.add_argument("--download", action="store_true", help="fetch the public LAReQA files if missing")


class _FastKinds:
    """`--fast` choices, read from hybridbatch.retrieval.fast_encode (torch) only when an argument is checked."""

    def _kinds(self) -> tuple[str, ...]:
        from hybridbatch.retrieval.fast_encode import KINDS

        return KINDS

    def __contains__(self, kind: object) -> bool:
        return kind in self._kinds()

    def __iter__(self):
        return iter(self._kinds())


def add_fast_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fast", choices=_FastKinds(), metavar="KIND", default=None,
                   help="faster CPU encoding: auto (the fastest path for this CPU; says which), bf16 (native-bf16 "
                        "CPUs), onnx (ONNX Runtime fp32, same numbers), onnx-int8 (outlier-aware int8), int8 (torch), "
                        "fp16; a lossy path is refused (exit 2) when it drifts from fp32 on this model's check texts; "
                        "measured in benchmarks/README.md")
    p.add_argument("--dim", type=int, default=None, help="Matryoshka truncation of the embeddings to N values, "
                                                         "re-normalized (EmbeddingGemma: 512, 256 or 128)")


COUNTS = ("batch_size", "shard_size", "max_seq_length", "depth", "threads")  # whole numbers >= 1 when given


def check_shared_arguments(args: argparse.Namespace) -> None:
    """The checks every command's arguments share: counts >= 1, a finite positive memory budget, an `--out` /
    `--embeddings` that is a folder (or not there yet). Bad ones are an `InputError` (exit 2) before any model
    is loaded, not an IndexError after encoding."""
    from hybridbatch.data.errors import InputError, path_problem

    for name in COUNTS:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    memory = getattr(args, "memory_mb", None)
    if memory is not None and not (math.isfinite(memory) and memory > 0):
        raise InputError(f"--memory-mb must be a positive number, got {memory}")
    for name in ("out", "embeddings"):
        value = getattr(args, name, None)
        if value and (Path(value).exists() or Path(value).is_symlink()):
            problem = path_problem(value, want="folder")
            if problem:
                raise InputError(f"--{name} {problem}", path=value)
