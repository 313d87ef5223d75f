"""Checkpoints that are either complete and verified or ignored.

A checkpoint is a folder `RUN/checkpoints/step-000120/` holding the model weights, optimizer, scheduler,
RNG states of every process, and `state.json` (sampler position, early stopping, metrics so far). It is
written into a temporary folder beside its final name, every file fsynced, then `manifest.json` (SHA256
of every file) written last, then the folder renamed into place. A process killed at any point leaves
either the previous checkpoints untouched or a temporary folder that is never read; a file damaged later
fails its checksum, and `latest_checkpoint` falls back to the previous one with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hybridbatch.io import atomic_folder

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
MANIFEST = "manifest.json"
FORMAT = 1
_NAME = re.compile(r"^step-(\d{6,})$")


class CorruptCheckpoint(RuntimeError):
    """A checkpoint folder whose manifest is missing or whose files do not match it."""


@dataclass
class CheckpointState:
    """Everything needed to continue a run exactly where it stopped."""

    step: int  # optimizer steps done
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: list[dict[str, Any]]  # one entry per process, by rank
    state: dict[str, Any] = field(default_factory=dict)  # JSON: sampler position, early stopping, metrics


# --------------------------------------------------------------------------------------------- RNG
def capture_rng() -> dict[str, Any]:
    """Python, numpy and torch RNG states as plain types (loadable with `weights_only=True`)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    out: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(saved: dict[str, Any]) -> None:
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss_np = saved["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss_np))
    torch.set_rng_state(saved["torch"])
    if "cuda" in saved and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda"])


# --------------------------------------------------------------------------------------------- writing
def nonfinite_tensors(named: list[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the tensors holding a NaN or an infinity (one float32 sum per tensor: NaN and inf propagate;
    a sum overflows only for weights near 1e38 / size, which are as unusable). No such weights are saved
    as a trained model (the trainers check after every update and before the final save)."""
    if not named:
        return []
    with torch.no_grad():
        sums = torch.stack([t.detach().sum(dtype=torch.float32) for _, t in named])
        bad = (~torch.isfinite(sums)).nonzero().flatten().tolist()
    return [named[i][0] for i in bad]


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def save_checkpoint(run_dir: str | Path, ckpt: CheckpointState, keep_last: int) -> Path:
    """Write `ckpt` atomically as `step-NNNNNN`, then delete all but the newest `keep_last`."""
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{ckpt.step:06d}"
    with atomic_folder(final) as tmp:  # a step re-reached on resume: the old one is kept until the rename
        writers: dict[str, Callable[[Path], None]] = {
            "model.pt": lambda p: torch.save(ckpt.model, p),
            "optimizer.pt": lambda p: torch.save(ckpt.optimizer, p),
            "scheduler.pt": lambda p: torch.save(ckpt.scheduler, p),
            "rng.pt": lambda p: torch.save(ckpt.rng, p),
            "state.json": lambda p: p.write_text(json.dumps(ckpt.state, indent=1), encoding="utf-8"),
        }
        digests = {}
        for name, write in writers.items():
            write(tmp / name)
            _fsync(tmp / name)
            digests[name] = sha256_file(tmp / name)
        manifest = {"format": FORMAT, "step": ckpt.step, "files": digests}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        _fsync(tmp / MANIFEST)
        _fsync(tmp)
    _fsync(root)
    prune_checkpoints(run_dir, keep_last)
    return final


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints and any leftover temporary folders."""
    root = checkpoint_dir(run_dir)
    for leftover in root.glob(".step-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------- reading
def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoint folders by step, oldest first (not verified)."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def verify_checkpoint(path: str | Path) -> dict[str, Any]:
    """The manifest, after checking every listed file against its SHA256; `CorruptCheckpoint` if not."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CorruptCheckpoint(f"{path}: no readable {MANIFEST} ({exc})") from exc
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise CorruptCheckpoint(f"{path}: unknown manifest format {manifest.get('format')!r}")
    for name, expected in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise CorruptCheckpoint(f"{path}: {name} is missing")
        if sha256_file(file) != expected:
            raise CorruptCheckpoint(f"{path}: {name} does not match its SHA256 in the manifest")
    return manifest


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint that verifies; corrupt or incomplete ones are skipped with a warning."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            verify_checkpoint(path)
        except CorruptCheckpoint as exc:
            log.warning("skipping checkpoint: %s", exc)
            continue
        return path
    return None


def load_checkpoint(path: str | Path) -> CheckpointState:
    """Verify, then load (tensors only: `weights_only=True`, so a checkpoint cannot run code)."""
    path = Path(path)
    manifest = verify_checkpoint(path)

    def load(name: str) -> Any:
        return torch.load(path / name, map_location="cpu", weights_only=True)

    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    return CheckpointState(manifest["step"], load("model.pt"), load("optimizer.pt"), load("scheduler.pt"),
                           load("rng.pt"), state)
