"""The training application: config, batch plan, loop, checkpoints.

`train` and the checkpoint helpers pull in torch and the model libraries, so they are imported on first
use; `dry_run` and the config need neither (a batch plan can be checked on a machine without torch).
"""

from __future__ import annotations

from typing import Any

from hybridbatch.training.config import ConfigError, TrainConfig, load_config
from hybridbatch.training.training_data import dry_run

__all__ = ["ConfigError", "TrainConfig", "dry_run", "latest_checkpoint", "load_config", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from hybridbatch.training.trainer import train

        return train
    if name == "latest_checkpoint":
        from hybridbatch.training.checkpoint import latest_checkpoint

        return latest_checkpoint
    raise AttributeError(f"module 'hybridbatch.training' has no attribute {name!r}")
