"""A training process that SIGKILLs itself at a chosen point inside `save_checkpoint`.

    python faults_train_worker.py CONFIG.yaml STAGE STEP [HOLD_DIR]

runs `hybridbatch train CONFIG.yaml` (one thread, deterministic kernels, like tests/training/test_resume.py)
and, while the checkpoint of optimizer step STEP is being written, kills itself with SIGKILL at STAGE:

- `model-half-written`: half of model.pt's bytes are in the checkpoint's temporary folder (a torn file);
- `before-rename`: every file and the manifest are written and fsynced, the folder is not yet in place;
- `before-prune`: the new checkpoint is in place, older ones are not pruned yet.

With HOLD_DIR, the process first creates HOLD_DIR/at-kill-point and waits (holding the run lock, mid-write)
until HOLD_DIR/release exists, so a test can act on the run folder while the writer is alive.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from pathlib import Path


def die(hold: Path | None) -> None:
    if hold is not None:
        (hold / "at-kill-point").touch()
        deadline = time.monotonic() + 1800  # a loaded machine can be very slow
        while not (hold / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    os.kill(os.getpid(), signal.SIGKILL)


def install(stage: str, step: int, hold: Path | None) -> None:
    """Patch the checkpoint module of this process so that writing step `step` dies at `stage`."""
    from hybridbatch.training import checkpoint as ckpt

    prefix = f".step-{step:06d}."  # the temporary folder of that checkpoint
    real_save, real_fsync, real_prune = ckpt.torch.save, ckpt._fsync, ckpt.prune_checkpoints

    def save(obj, target, *args, **kwargs):
        path = Path(target) if isinstance(target, (str, os.PathLike)) else None
        if stage == "model-half-written" and path is not None and path.name == "model.pt" \
                and path.parent.name.startswith(prefix):
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            with open(path, "wb") as handle:
                handle.write(data[: len(data) // 2])
                handle.flush()
                os.fsync(handle.fileno())
            die(hold)
        return real_save(obj, target, *args, **kwargs)

    def fsync(path: Path) -> None:
        real_fsync(path)
        if stage == "before-rename" and Path(path).is_dir() and Path(path).name.startswith(prefix):
            die(hold)  # the last call before os.replace(tmp, final): the temporary folder itself

    def prune(run_dir, keep_last):
        if stage == "before-prune" and (ckpt.checkpoint_dir(run_dir) / f"step-{step:06d}").is_dir():
            die(hold)
        return real_prune(run_dir, keep_last)

    ckpt.torch.save, ckpt._fsync, ckpt.prune_checkpoints = save, fsync, prune


def main(argv: list[str]) -> int:
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    config, stage, step = argv[0], argv[1], int(argv[2])
    hold = Path(argv[3]) if len(argv) > 3 else None
    install(stage, step, hold)
    from hybridbatch.cli import main_train

    return main_train([config])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
