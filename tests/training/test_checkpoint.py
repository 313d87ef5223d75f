"""Checkpoints: round trip, manifest verification, corrupt/incomplete ones skipped, pruning, RNG."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch

from hybridbatch.training.checkpoint import (
    CheckpointState,
    CorruptCheckpoint,
    capture_rng,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    verify_checkpoint,
)


def make_state(step: int) -> CheckpointState:
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (s + 1))
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    return CheckpointState(step, model.state_dict(), optimizer.state_dict(), scheduler.state_dict(),
                           [capture_rng()], {"steps_done": step, "early_stopping": {"best": 1.5}})


def test_round_trip(tmp_path):
    saved = make_state(3)
    path = save_checkpoint(tmp_path, saved, keep_last=2)
    assert path.name == "step-000003"
    loaded = load_checkpoint(path)
    assert loaded.step == 3 and loaded.state == saved.state
    for key, value in saved.model.items():
        assert torch.equal(loaded.model[key], value)
    assert loaded.optimizer["state"][0]["exp_avg"].equal(saved.optimizer["state"][0]["exp_avg"])
    assert loaded.scheduler["last_epoch"] == 1
    manifest = verify_checkpoint(path)
    assert set(manifest["files"]) == {"model.pt", "optimizer.pt", "scheduler.pt", "rng.pt", "state.json"}


def test_keeps_last_k(tmp_path):
    for step in (2, 4, 6, 8):
        save_checkpoint(tmp_path, make_state(step), keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000006", "step-000008"]


def test_corrupt_checkpoint_is_skipped(tmp_path, caplog):
    save_checkpoint(tmp_path, make_state(2), keep_last=3)
    newest = save_checkpoint(tmp_path, make_state(4), keep_last=3)
    data = bytearray((newest / "model.pt").read_bytes())
    data[-20] ^= 0xFF
    (newest / "model.pt").write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpoint, match="model.pt does not match"):
        load_checkpoint(newest)
    with caplog.at_level(logging.WARNING):
        assert latest_checkpoint(tmp_path).name == "step-000002"
    assert "skipping checkpoint" in caplog.text


def test_incomplete_checkpoints_are_ignored(tmp_path):
    save_checkpoint(tmp_path, make_state(2), keep_last=3)
    newest = save_checkpoint(tmp_path, make_state(4), keep_last=3)
    (newest / "manifest.json").unlink()  # as if killed before the manifest was written
    leftover = tmp_path / "checkpoints" / ".step-000006.abc.tmp"  # a temporary folder of a killed writer
    leftover.mkdir()
    assert latest_checkpoint(tmp_path).name == "step-000002"
    (tmp_path / "checkpoints" / "step-000002" / "rng.pt").unlink()
    assert latest_checkpoint(tmp_path) is None


def test_rewriting_a_step_replaces_it(tmp_path):
    save_checkpoint(tmp_path, make_state(2), keep_last=2)
    again = make_state(2)
    again.state["marker"] = "second"
    path = save_checkpoint(tmp_path, again, keep_last=2)
    assert load_checkpoint(path).state["marker"] == "second"
    assert not list((tmp_path / "checkpoints").glob(".step-*"))


def test_rng_states_restore(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    path = save_checkpoint(tmp_path, CheckpointState(1, {}, {}, {}, [capture_rng()]), keep_last=1)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng(load_checkpoint(path).rng[0])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
