"""SIGKILL inside an image-text checkpoint write: `train-vl --resume` ends exactly like an uninterrupted run.

A worker process (faults_image_text_worker) trains the tiny image-text model of tests/training and kills itself
while writing the step-8 checkpoint: with model.pt half written (resume falls back to step 4), or after the
step-8 checkpoint is in place but before older ones are pruned (resume from step 8). In both cases the
per-step losses and loss terms, the final weights and the batch log equal those of an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from helpers.training_toys import PYTHON, subprocess_env
from helpers.vl_toys import vl_config
from hybridbatch.cli import main_train_vl
from hybridbatch.training import checkpoint as ckpt

WORKER = Path(__file__).with_name("faults_image_text_worker.py")
STEPS, EVERY, KILL_STEP = 12, 4, 8


def _write_config(vl_assets, tmp: Path, name: str) -> Path:
    config = vl_config(vl_assets, tmp / name, steps=STEPS, warmup_steps=2, eval={"benchmarks": []},
                     checkpoint={"every": EVERY, "keep_last": 2})
    path = tmp / f"{name}.yaml"
    path.write_text(config.to_yaml(), encoding="utf-8")
    return path


@pytest.fixture
def one_thread(monkeypatch, tmp_path):
    """Deterministic kernels and one thread here as in the worker; a private feature cache for both."""
    monkeypatch.setenv("HYBRIDBATCH_CACHE", str(tmp_path / "cache"))
    before = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    yield
    torch.use_deterministic_algorithms(before[0])
    torch.set_num_threads(before[1])


def _same_run(got: Path, ref: Path) -> None:
    from hybridbatch.models.image_text_dual_encoder import ImageTextDualEncoder

    def metrics(run):
        return [{k: v for k, v in json.loads(line).items() if k != "step_s"}
                for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert metrics(got) == metrics(ref)  # each step once, with the same loss terms
    assert (got / "batches.jsonl").read_text() == (ref / "batches.jsonl").read_text()
    a, b = ImageTextDualEncoder.load(got / "model").state_dict(), ImageTextDualEncoder.load(ref / "model").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("stage", "resumed_from", "on_disk"), [
    ("model-half-written", "step-000004", ["step-000004"]),
    ("before-prune", "step-000008", ["step-000004", "step-000008"]),
])
def test_sigkill_while_checkpointing_then_resume_equals_uninterrupted(vl_assets, tmp_path, one_thread, caplog,
                                                                      stage, resumed_from, on_disk):
    ref_cfg = _write_config(vl_assets, tmp_path, "reference")
    assert main_train_vl([str(ref_cfg)]) == 0

    cfg = _write_config(vl_assets, tmp_path, "victim")
    victim = subprocess.run([PYTHON, str(WORKER), str(cfg), stage, str(KILL_STEP)], env=subprocess_env(1),
                            capture_output=True, text=True, timeout=1800)
    assert victim.returncode == -signal.SIGKILL, victim.stdout[-2000:] + victim.stderr[-2000:]
    run_dir = tmp_path / "victim"
    assert not (run_dir / "model").exists() and not (run_dir / "summary.json").exists()
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == on_disk
    ckpt.verify_checkpoint(run_dir / "checkpoints" / resumed_from)

    assert main_train_vl([str(cfg)]) == 4  # a started run is not overwritten without --resume
    with caplog.at_level(logging.INFO, logger="hybridbatch.training"):
        assert main_train_vl([str(cfg), "--resume"]) == 0
    assert f"resuming from {run_dir / 'checkpoints' / resumed_from}" in caplog.text
    assert not list((run_dir / "checkpoints").glob(".step-*")), "a killed writer's temporary folder was kept"
    _same_run(run_dir, tmp_path / "reference")
