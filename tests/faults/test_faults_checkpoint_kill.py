"""SIGKILL inside checkpoint writing, and a torn newest checkpoint: resume falls back and ends exactly right.

A worker process (faults_train_worker) trains the tiny model and kills itself while writing the step-8
checkpoint: with model.pt half written, or after the new checkpoint is in place but before old ones are
pruned. Separately, the newest checkpoint is damaged after the fact (a file cut short, as a power loss can
leave unsynced data). In every case the previous complete checkpoint still matches the SHA256 sums of its
manifest, `--resume` continues from the newest intact one, and the final weights, per-step losses,
validation losses and batch log equal those of an uninterrupted run. A checkpoint write that fails with
ENOSPC inside the trainer leaves the same state and resumes the same way.
"""

from __future__ import annotations

import errno
import logging
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers.training_toys import PYTHON, base_config, subprocess_env, write_config
from hybridbatch.cli import main_train
from hybridbatch.training import checkpoint as ckpt
from hybridbatch.training.config import load_config
from hybridbatch.training.rundir import read_metrics
from hybridbatch.training.trainer import train

WORKER = Path(__file__).with_name("faults_train_worker.py")
STEPS, EVERY, KILL_STEP = 12, 4, 8


def run_config(tmp: Path, name: str, model: Path, data: Path) -> Path:
    raw = base_config(model, data, tmp / name, steps=STEPS, checkpoint={"every": EVERY, "keep_last": 2},
                      early_stopping={"val_fraction": 0.2, "every": 4})
    return write_config(tmp / f"{name}.yaml", raw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, toy_data, tiny_model) -> Path:
    """An uninterrupted run with the same settings (deterministic kernels, one thread)."""
    tmp = tmp_path_factory.mktemp("reference")
    before = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        assert main_train([str(run_config(tmp, "run", tiny_model, toy_data))]) == 0
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.set_num_threads(before[1])
    return tmp / "run"


def assert_same_run(got: Path, ref: Path) -> None:
    """Per-step losses, validation losses, final weights and the batch log equal the reference run's."""
    ref_metrics, got_metrics = read_metrics(ref / "metrics.jsonl"), read_metrics(got / "metrics.jsonl")
    for key in ("loss", "val_loss"):
        expected = [(r["step"], r[key]) for r in ref_metrics if key in r]
        actual = [(r["step"], r[key]) for r in got_metrics if key in r]
        assert [s for s, _ in actual] == [s for s, _ in expected], key  # every step once, none lost or doubled
        assert max(abs(a - b) for (_, a), (_, b) in zip(expected, actual, strict=True)) <= 1e-6, key
    ref_weights, got_weights = load_file(ref / "model" / "model.safetensors"), load_file(got / "model" /
                                                                                         "model.safetensors")
    assert ref_weights.keys() == got_weights.keys()
    for name, value in ref_weights.items():
        torch.testing.assert_close(got_weights[name], value, rtol=0, atol=1e-6, msg=name)
    assert (got / "batches.jsonl").read_text() == (ref / "batches.jsonl").read_text()


def resume_and_check(run_cfg: Path, run_dir: Path, expected: str, reference: Path, caplog) -> None:
    """The intact checkpoint verifies against its manifest; --resume starts there and ends like the reference."""
    ckpt.verify_checkpoint(run_dir / "checkpoints" / expected)  # raises CorruptCheckpoint if damaged
    with caplog.at_level(logging.INFO, logger="hybridbatch.training"):
        assert main_train([str(run_cfg), "--resume"]) == 0
    assert f"resuming from {run_dir / 'checkpoints' / expected}" in caplog.text
    assert_same_run(run_dir, reference)
    assert not list((run_dir / "checkpoints").glob(".step-*")), "a killed writer's temporary folder was kept"


def kill_while_writing(tmp_path: Path, cfg: Path, stage: str) -> Path:
    """Run the worker until it SIGKILLs itself at `stage` of the step-8 checkpoint; returns the run folder."""
    victim = subprocess.run([PYTHON, str(WORKER), str(cfg), stage, str(KILL_STEP)], env=subprocess_env(1),
                            capture_output=True, text=True, timeout=1800)  # ~10 s idle; generous when loaded
    assert victim.returncode == -signal.SIGKILL, victim.stdout + victim.stderr
    run_dir = tmp_path / "victim"
    assert not (run_dir / "model").exists() and not (run_dir / "summary.json").exists()
    return run_dir


def test_sigkill_with_a_checkpoint_file_half_written(tmp_path, toy_data, tiny_model, reference, deterministic,
                                                     caplog):
    cfg = run_config(tmp_path, "victim", tiny_model, toy_data)
    run_dir = kill_while_writing(tmp_path, cfg, "model-half-written")
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == ["step-000004"]
    (torn,) = (run_dir / "checkpoints").glob(".step-000008.*")  # the killed writer's temporary folder
    assert not (torn / "manifest.json").exists()
    complete = run_dir / "checkpoints" / "step-000004" / "model.pt"
    assert 0 < (torn / "model.pt").stat().st_size < complete.stat().st_size
    resume_and_check(cfg, run_dir, "step-000004", reference, caplog)


def test_sigkill_before_pruning_and_a_torn_newest_checkpoint(tmp_path, toy_data, tiny_model, reference,
                                                             deterministic, caplog):
    """Killed after step-8 is in place: resume from it. The same folder with step-8's model.pt cut short
    afterwards (unsynced data lost to a power cut): its checksum fails and resume falls back to step 4."""
    cfg = run_config(tmp_path, "victim", tiny_model, toy_data)
    run_dir = kill_while_writing(tmp_path, cfg, "before-prune")
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == ["step-000004", "step-000008"]
    torn_cfg = run_config(tmp_path, "torn", tiny_model, toy_data)
    shutil.copytree(run_dir, tmp_path / "torn")
    shutil.copy(torn_cfg, tmp_path / "torn" / "config.yaml")  # the same run, in another folder
    resume_and_check(cfg, run_dir, "step-000008", reference, caplog)

    model_pt = tmp_path / "torn" / "checkpoints" / "step-000008" / "model.pt"
    model_pt.write_bytes(model_pt.read_bytes()[: model_pt.stat().st_size // 2])
    with pytest.raises(ckpt.CorruptCheckpoint, match="model.pt does not match"):
        ckpt.verify_checkpoint(model_pt.parent)
    caplog.clear()
    resume_and_check(torn_cfg, tmp_path / "torn", "step-000004", reference, caplog)
    assert "skipping checkpoint" in caplog.text


def test_enospc_while_writing_a_checkpoint_keeps_the_previous_one_and_resumes(
        tmp_path, toy_data, tiny_model, reference, deterministic, caplog, monkeypatch):
    """The disk fills up while the step-8 manifest is written: training stops with the OSError, the step-4
    checkpoint is intact, no temporary folder is left, and once there is room --resume ends exactly right."""
    cfg = run_config(tmp_path, "full", tiny_model, toy_data)
    real_fsync = ckpt._fsync

    def fsync(path: Path) -> None:
        if path.name == "manifest.json" and path.parent.name.startswith(f".step-{KILL_STEP:06d}."):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_fsync(path)

    with monkeypatch.context() as patch:
        patch.setattr(ckpt, "_fsync", fsync)
        with pytest.raises(OSError) as err:
            train(load_config(cfg))
    assert err.value.errno == errno.ENOSPC
    run_dir = tmp_path / "full"
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == ["step-000004"]
    assert not list((run_dir / "checkpoints").glob(".step-*"))
    resume_and_check(cfg, run_dir, "step-000004", reference, caplog)
