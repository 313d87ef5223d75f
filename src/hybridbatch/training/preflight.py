"""Checks before a training run starts, so that what can be foreseen fails in seconds.

A run that dies at its first checkpoint because its folder is read-only, or after an hour because the disk
is full, or a grid that evaluates its zero-shot rows before finding that `batch_size` exceeds the training
groups, loses work that one look ahead would have saved. The checks here look ahead:

- the output folder is a run folder or a new one, never the current folder or a folder of other files
  (`rundir.check_output_folder`), and can be written (a probe file is created and removed);
- the disk holding it has room for what the run writes: `keep_last + 1` checkpoints (weights plus the two
  AdamW moments of every trainable parameter; one more is written before the oldest is pruned), the final
  model, the best weights when early stopping keeps them, and a margin for tokenizer files and logs;
- `data.languages` are valid language codes, each listed once after normalization (`EN` and `en` are one);
- every `eval.benchmarks` entry loads (a misspelt one was found only after the last step, and lost the run).

This module knows one training run; a compare grid applies these checks across its runs in
`hybridbatch.experiments.grid_preflight`, which also checks that the data fits each run's sampler
(nothing here imports `experiments` or `training.data`, which imports this module).

Errors are `PreflightError`, a `ConfigError`, so the commands report them like a bad config: one line
naming the folder or the key, exit code 2, nothing trained. Disk-full that cannot be foreseen (another
process filling the disk) is still safe: every file is written atomically (`hybridbatch.io.atomic_write`,
checkpoints through a temporary folder), so an `OSError` leaves the previous files intact.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from hybridbatch.data.languages import normalize_lang
from hybridbatch.training.config import ConfigError, TrainConfig

if TYPE_CHECKING:
    import torch


MIB = 1 << 20
CHECKPOINT_EXTRA = 4 * MIB  # scheduler, RNG states of a few processes, state.json, manifest
RUN_MARGIN = 256 * MIB  # tokenizer and config files of the final model, metrics, batch log, evaluations


class PreflightError(ConfigError):
    """A run that would fail later for a reason visible now (unwritable folder, too little disk, bad data)."""


# --------------------------------------------------------------------------------------------- folders
def _existing_ancestor(folder: Path) -> Path:
    """`folder` itself, or the nearest folder above it that exists (where it would be created)."""
    current = folder.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def check_writable(folder: str | Path) -> None:
    """`PreflightError` unless files can be created in `folder` (or, if it does not exist yet, where it
    would be created). Probes with a real file: permission bits alone say nothing about read-only mounts,
    and nothing to root."""
    folder = Path(folder)
    target = _existing_ancestor(folder)
    if not target.is_dir():
        raise PreflightError(f"output folder {folder} cannot be created: {target} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".preflight.", dir=target)
    except OSError as exc:
        where = folder if target == folder.absolute() else f"{folder} (to be created in {target})"
        raise PreflightError(f"output folder {where} is not writable: {exc.strerror or exc}") from exc
    os.close(fd)
    os.unlink(probe)


def free_bytes(folder: str | Path) -> int:
    """Free bytes on the file system that holds (or would hold) `folder`."""
    return shutil.disk_usage(_existing_ancestor(Path(folder))).free


# --------------------------------------------------------------------------------------------- disk space
def model_bytes(model: torch.nn.Module) -> tuple[int, int]:
    """(bytes of every parameter and buffer, bytes of the trainable parameters) of a loaded model."""
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return weights, trainable


def checkpoint_bytes(weights: int, trainable: int) -> int:
    """Size of one checkpoint: the weights, AdamW's two moments per trainable parameter, small state."""
    return weights + 2 * trainable + CHECKPOINT_EXTRA


def bytes_needed(config: TrainConfig, weights: int, trainable: int) -> int:
    """Disk a run needs at its peak: its checkpoints, the final model, the best weights, a margin."""
    every = config.checkpoint.every
    n_checkpoints = min(config.checkpoint.keep_last + 1, math.ceil(config.steps / every)) if every else 0
    best = weights if config.early_stopping.patience else 0
    return n_checkpoints * checkpoint_bytes(weights, trainable) + weights + best + RUN_MARGIN


def check_free_space(folder: str | Path, needed: int) -> None:
    free = free_bytes(folder)
    if free < needed:
        raise PreflightError(f"output folder {folder}: about {needed / MIB:.0f} MiB needed for checkpoints and "
                             f"the final model, {free / MIB:.0f} MiB free; free space, lower "
                             "checkpoint.keep_last, or choose another output_dir")


# --------------------------------------------------------------------------------------------- config and data
def check_languages(config: TrainConfig) -> tuple[str, ...]:
    """`data.languages` normalized; a malformed or unknown code, or one listed twice, is a `PreflightError`."""
    languages = []
    for code in config.data.languages:
        try:
            languages.append(normalize_lang(code))
        except ValueError as exc:
            raise PreflightError(f"data.languages: {exc}") from None
    twice = sorted(lang for lang, n in Counter(languages).items() if n > 1)
    if twice:
        raise PreflightError(f"data.languages lists {twice} twice (after normalization): {config.data.languages}")
    return tuple(languages)


def check_benchmarks(specs: list[str], data_dir: str | None) -> None:
    """`PreflightError` naming the first `eval.benchmarks` entry that does not load. Loads each as
    `evaluation.run.load_benchmark` does (a generic-layout folder, else a LAReQA spec), through the data
    loaders themselves: that module imports torch, and a dry run must not (about 0.6 s per LAReQA set)."""
    from hybridbatch.data.beir_layout import is_generic_layout, load_generic
    from hybridbatch.data.errors import InputError
    from hybridbatch.data.lareqa import load_lareqa

    for spec in specs:
        try:
            if is_generic_layout(spec):
                load_generic(spec)
            else:
                load_lareqa(str(spec), data_dir=data_dir)
        except (InputError, ValueError, OSError) as exc:
            raise PreflightError(f"eval.benchmarks: {spec!r} cannot be loaded: {exc}") from None


def preflight_training(config: TrainConfig, model: torch.nn.Module | None = None) -> None:
    """Before a run: languages valid, output folder a run folder (or new) and writable, benchmarks loadable;
    with the loaded model, enough free disk."""
    from hybridbatch.training.rundir import check_output_folder

    check_languages(config)
    check_output_folder(config.run_dir)
    check_writable(config.run_dir)
    check_benchmarks(config.eval.benchmarks, config.data.data_dir)
    if model is not None:
        check_free_space(config.run_dir, bytes_needed(config, *model_bytes(model)))
