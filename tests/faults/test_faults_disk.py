"""Disk full and unwritable output folders: a clear error before work starts where it can be foreseen, and
no partial file left behind where it cannot.

ENOSPC is simulated where the kernel reports it: in the middle of a `write` (the file handle of
`hybridbatch.io.atomic_write`, or `torch.save` inside a checkpoint) and at `fsync` (where delayed
allocation and network file systems report it). The preflight checks of `training/preflight.py` are
tested against real folders and a real checkpoint's size.
"""

from __future__ import annotations

import errno
import os
import re
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from hybridbatch import io as hio
from hybridbatch.training import checkpoint as ckpt
from hybridbatch.training import preflight
from hybridbatch.training import trainer as trainer_module
from hybridbatch.training.config import config_from_dict
from hybridbatch.training.preflight import PreflightError

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FillingHandle:
    """A file handle on a disk with `room` bytes left: writes past it fail with ENOSPC after a partial write."""

    def __init__(self, handle, room: int):
        self._handle, self._room = handle, room

    def write(self, data):
        if len(data) > self._room:
            self._handle.write(data[: self._room])
            self._handle.flush()
            self._room = 0
            raise ENOSPC
        self._room -= len(data)
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._handle.__exit__(*exc)


@contextmanager
def disk_with_room(monkeypatch, room: int):
    """Every file `atomic_write` opens can take `room` more bytes."""
    real = os.fdopen
    with monkeypatch.context() as patch:
        patch.setattr(hio.os, "fdopen", lambda *a, **k: FillingHandle(real(*a, **k), room))
        yield


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------------------------- atomic_write
@pytest.mark.parametrize("room", [0, 10, 5000])
def test_enospc_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, room):
    target = tmp_path / "summary.json"
    hio.write_json(target, {"old": True})
    before = target.read_bytes()
    with disk_with_room(monkeypatch, room), pytest.raises(OSError) as err:
        hio.write_json(target, {"new": "x" * 10_000})
    assert err.value.errno == errno.ENOSPC
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_enospc_at_fsync_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "batches.jsonl"
    target.write_text("old\n")
    real_fsync = os.fsync

    def fsync(fd):
        raise ENOSPC

    monkeypatch.setattr(hio.os, "fsync", fsync)
    with pytest.raises(OSError, match="No space left"), hio.atomic_write(target) as handle:
        handle.write("new\n" * 1000)
    monkeypatch.setattr(hio.os, "fsync", real_fsync)
    assert target.read_text() == "old\n" and leftovers(tmp_path) == []


def test_a_file_that_never_existed_is_not_created_half(tmp_path, monkeypatch):
    with disk_with_room(monkeypatch, 100), pytest.raises(OSError):
        hio.write_json(tmp_path / "new.json", {"x": "y" * 1000})
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------- checkpoints
def small_state(step: int) -> ckpt.CheckpointState:
    model = torch.nn.Linear(64, 32)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 64)).sum().backward()
    optimizer.step()
    return ckpt.CheckpointState(step, model.state_dict(), optimizer.state_dict(), {"last_epoch": step},
                                [ckpt.capture_rng()], {"steps_done": step})


@pytest.mark.parametrize("failing", ["model.pt", "optimizer.pt", "state.json", "manifest.json"])
def test_enospc_in_a_checkpoint_keeps_the_previous_one_verified(tmp_path, monkeypatch, failing):
    ckpt.save_checkpoint(tmp_path, small_state(2), keep_last=2)
    real_save, real_fsync = ckpt.torch.save, ckpt._fsync

    def save(obj, target, *args, **kwargs):
        if Path(target).name == failing:  # a torn write: some bytes land, then the disk is full
            Path(target).write_bytes(b"\x80\x02partial")
            raise ENOSPC
        return real_save(obj, target, *args, **kwargs)

    def fsync(path):
        if Path(path).name == failing:
            raise ENOSPC
        return real_fsync(path)

    monkeypatch.setattr(ckpt.torch, "save", save)
    monkeypatch.setattr(ckpt, "_fsync", fsync)
    with pytest.raises(OSError) as err:
        ckpt.save_checkpoint(tmp_path, small_state(4), keep_last=2)
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-000002"]
    assert ckpt.verify_checkpoint(tmp_path / "checkpoints" / "step-000002")["step"] == 2
    assert not list((tmp_path / "checkpoints").glob(".step-*"))  # the temporary folder is gone
    assert ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path)).step == 2


# --------------------------------------------------------------------------------------------- preflight
def test_writable_check_probes_without_creating_anything(tmp_path):
    preflight.check_writable(tmp_path / "a" / "b")  # would be created in tmp_path: fine
    assert list(tmp_path.iterdir()) == []
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PreflightError, match=r"cannot be created: .*file is not a folder"):
        preflight.check_writable(blocker / "run")


def test_unwritable_folder_is_named(tmp_path, monkeypatch):
    """A read-only mount (EROFS) or missing permission (EACCES) is refused naming the folder. Root ignores
    permission bits, so the refusal of the probe file is simulated where root would run the test."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
    else:
        def refuse(*args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(preflight.tempfile, "mkstemp", refuse)
    try:
        with pytest.raises(PreflightError, match=rf"output folder {re.escape(str(folder))}.* is not writable: "):
            preflight.check_writable(folder / "run")
    finally:
        folder.chmod(0o700)


def test_free_space_estimate_covers_a_real_checkpoint(tmp_path):
    """The per-checkpoint estimate is at least what save_checkpoint writes, and not wildly more."""
    model = torch.nn.Sequential(torch.nn.Embedding(500, 64), torch.nn.Linear(64, 64))
    model[0].weight.requires_grad_(False)  # frozen word embeddings: no optimizer moments for them
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    model[1](torch.ones(2, 64)).sum().backward()
    optimizer.step()
    path = ckpt.save_checkpoint(tmp_path, ckpt.CheckpointState(1, model.state_dict(), optimizer.state_dict(), {},
                                                               [ckpt.capture_rng()]), keep_last=1)
    written = sum(f.stat().st_size for f in path.iterdir())
    weights, trainable = preflight.model_bytes(model)
    assert (weights, trainable) == (4 * (500 * 64 + 64 * 64 + 64), 4 * (64 * 64 + 64))
    estimate = preflight.checkpoint_bytes(weights, trainable)
    assert written <= estimate <= written + preflight.CHECKPOINT_EXTRA


def test_free_space_check_refuses_before_training(tmp_path, toy_data, monkeypatch):
    config = config_from_dict({"model": "m", "data": {"source": str(toy_data), "languages": ["en", "de"]},
                               "batch_size": 4, "steps": 100, "output_dir": str(tmp_path / "run"),
                               "checkpoint": {"every": 10, "keep_last": 3}})
    needed = preflight.bytes_needed(config, weights=400 * 2**20, trainable=300 * 2**20)
    assert needed == 4 * (400 + 600 + 4) * 2**20 + 400 * 2**20 + preflight.RUN_MARGIN  # keep_last + 1 copies
    monkeypatch.setattr(preflight, "free_bytes", lambda folder: needed - 1)
    with pytest.raises(PreflightError, match=r"run: about \d+ MiB needed .* MiB free"):
        preflight.check_free_space(config.run_dir, needed)
    preflight.check_free_space(config.run_dir, needed - 1)


def test_an_unwritable_run_folder_stops_train_before_the_model_is_loaded(tmp_path, toy_data, monkeypatch):
    """A run folder that cannot be created: `train` stops in its preflight, before the lock, the data or the
    model are touched, naming the folder (the app exits 2)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    config = config_from_dict({"model": "m", "data": {"source": str(toy_data), "languages": ["en", "de"]},
                               "batch_size": 4, "steps": 2, "output_dir": str(blocker / "run")})
    monkeypatch.setattr(trainer_module, "load_model", lambda *a: pytest.fail("the model was loaded"))
    with pytest.raises(PreflightError, match="is not a folder"):
        preflight.preflight_training(config)
    with pytest.raises(PreflightError, match="is not a folder"):
        trainer_module.train(config)  # train() runs the preflight before the lock, the data and the model
