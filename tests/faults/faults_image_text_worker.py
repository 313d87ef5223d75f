"""An image-text training process that SIGKILLs itself at a chosen point inside `save_checkpoint`.

    python faults_image_text_worker.py CONFIG.yaml STAGE STEP

runs `hybridbatch train-vl CONFIG.yaml` (one thread, deterministic kernels) with the kill points of
`faults_train_worker.install` (`model-half-written`, `before-rename`, `before-prune`): train-vl writes its
checkpoints with the same `training/checkpoint.py`, so the same patches apply.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    import torch
    from faults_train_worker import install

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    config, stage, step = argv[0], argv[1], int(argv[2])
    install(stage, step, None)
    from hybridbatch.cli import main_train_vl

    return main_train_vl([config])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
