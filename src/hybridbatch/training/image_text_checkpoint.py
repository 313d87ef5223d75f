"""Checkpoints of an image-text run, on the text trainer's machinery (`training/checkpoint.py`).

Same guarantees as the text trainer: a checkpoint folder `RUN/checkpoints/step-NNNNNN/` is written into a
temporary folder, every file fsynced and listed with its SHA256 in `manifest.json` (written last), then renamed
into place; `--resume` takes the newest one that verifies (a damaged one is skipped with a warning) and
continues the same batch plan, optimizer, schedule and RNG streams, so a resumed run ends with the weights of
an uninterrupted one.

What is saved of the model: the parameters that train and every buffer. Frozen parameters (the word
embeddings, a locked image tower) are rebuilt identically from the config on resume, so they are not copied
into every checkpoint (for me5-small that is 384 MB of word embeddings).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from hybridbatch.training import checkpoint as ckpt
from hybridbatch.training.config import ConfigError, config_differences

log = logging.getLogger(__name__)

RESUMABLE_CHANGES = ("eval.", "checkpoint.")  # keys that may change on resume: they do not change what trains


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state entries a checkpoint keeps: parameters with gradients and all buffers (detached, on CPU)."""
    keep = {name for name, p in model.named_parameters() if p.requires_grad}
    keep |= {name for name, _ in model.named_buffers()}
    return {name: t.detach().cpu().clone() for name, t in model.state_dict().items() if name in keep}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    """Load `trainable_state` output; every trainable parameter must be in it and nothing unknown."""
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in frozen]
    if missing or result.unexpected_keys:
        raise ConfigError(f"{where}: the checkpoint does not fit the configured model (missing {missing[:5]}, "
                          f"unexpected {list(result.unexpected_keys)[:5]})")


def check_same_config(run_dir: Path, config) -> None:
    """Refuse to resume a run with a config that trains differently from the one it started with."""
    from hybridbatch.training.image_text_config import load_image_text_config

    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    changed = [k for k in config_differences(load_image_text_config(saved), config)
               if not k.startswith(RESUMABLE_CHANGES)]
    if changed:
        raise ConfigError(f"cannot resume {run_dir}: the config differs from {saved} in {changed}")


def save_image_text_checkpoint(run_dir: Path, step: int, model, optimizer, scheduler, sampler,
                               keep_last: int, extra: dict[str, Any] | None = None) -> Path:
    """Checkpoint after `step` optimizer steps (atomic, checksummed; older ones pruned to `keep_last`)."""
    epoch, epoch_step = sampler.position(step)
    state = {"steps_done": step, "epoch": epoch, "epoch_step": epoch_step, **(extra or {})}
    return ckpt.save_checkpoint(run_dir, ckpt.CheckpointState(
        step, trainable_state(model), optimizer.state_dict(), scheduler.state_dict(), [ckpt.capture_rng()],
        state), keep_last)


def latest_image_text_state(run_dir: Path) -> ckpt.CheckpointState | None:
    """The newest checkpoint that verifies, loaded; None (with a warning) when there is none."""
    path = ckpt.latest_checkpoint(run_dir)
    if path is None:
        log.warning("%s: no usable checkpoint; starting from step 0", run_dir)
        return None
    log.info("resuming from %s", path)
    return ckpt.load_checkpoint(path)


def restore_image_text_state(state: ckpt.CheckpointState, model, optimizer, scheduler, run_dir: Path) -> int:
    """Put a loaded checkpoint into the model, optimizer, scheduler and RNGs; returns the steps done."""
    load_trainable_state(model, state.model, ckpt.checkpoint_dir(run_dir) / f"step-{state.step:06d}")
    optimizer.load_state_dict(state.optimizer)
    scheduler.load_state_dict(state.scheduler)
    ckpt.restore_rng(state.rng[0])
    return state.step
