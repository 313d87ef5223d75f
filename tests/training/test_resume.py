"""Exact resume after a real SIGKILL: the resumed run ends where an uninterrupted one does."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time

import torch
from safetensors.torch import load_file

from helpers.training_toys import PYTHON, base_config, subprocess_env, write_config
from hybridbatch.cli import main_train
from hybridbatch.training.checkpoint import list_checkpoints
from hybridbatch.training.rundir import read_metrics

# The app as `hybridbatch train` runs it, with deterministic kernels and one thread.
APP = ("import sys, torch; torch.set_num_threads(1); torch.use_deterministic_algorithms(True); "
       "from hybridbatch.cli import main_train; sys.exit(main_train(sys.argv[1:]))")
STEPS = 40


def start(config_path, *extra) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-c", APP, str(config_path), *extra], env=subprocess_env(1),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_after_first_checkpoint(proc: subprocess.Popen, run_dir, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not list_checkpoints(run_dir):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, toy_data, tiny_model, deterministic,
                                                            caplog):
    """The victim runs as a subprocess and is SIGKILLed by a watcher thread as soon as its first
    checkpoint is in place; meanwhile the reference run and later the resume run in this process
    (through the app, as `hybridbatch train` would), which saves two interpreter start-ups."""
    def config(name):
        raw = base_config(tiny_model, toy_data, tmp_path / name, steps=STEPS,
                          checkpoint={"every": 5, "keep_last": 2},
                          early_stopping={"val_fraction": 0.2, "every": 10})
        return write_config(tmp_path / f"{name}.yaml", raw)

    victim = start(config("victim"))
    errors: list[BaseException] = []

    def watch():
        try:
            kill_after_first_checkpoint(victim, tmp_path / "victim")
        except BaseException as exc:  # re-raised in the test thread
            victim.kill()
            errors.append(exc)

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert main_train([str(config("reference"))]) == 0  # same config apart from output_dir
    watcher.join()
    if errors:
        raise errors[0]
    assert not (tmp_path / "victim" / "model").exists(), "the run finished before it could be killed"
    resumed_from = list_checkpoints(tmp_path / "victim")[-1].name
    assert 5 <= int(resumed_from.split("-")[1]) < STEPS
    with caplog.at_level(logging.INFO, logger="hybridbatch.training"):
        assert main_train([str(config("victim")), "--resume"]) == 0
    assert f"resuming from {tmp_path / 'victim' / 'checkpoints' / resumed_from}" in caplog.text

    ref_metrics = read_metrics(tmp_path / "reference" / "metrics.jsonl")
    got_metrics = read_metrics(tmp_path / "victim" / "metrics.jsonl")
    for key in ("loss", "val_loss"):
        ref = [(r["step"], r[key]) for r in ref_metrics if key in r]
        got = [(r["step"], r[key]) for r in got_metrics if key in r]
        assert [s for s, _ in got] == [s for s, _ in ref]
        assert max(abs(a - b) for (_, a), (_, b) in zip(ref, got, strict=True)) <= 1e-6
    assert len([r for r in got_metrics if "loss" in r]) == STEPS

    ref_weights = load_file(tmp_path / "reference" / "model" / "model.safetensors")
    got_weights = load_file(tmp_path / "victim" / "model" / "model.safetensors")
    assert ref_weights.keys() == got_weights.keys()
    for name, value in ref_weights.items():
        torch.testing.assert_close(got_weights[name], value, rtol=0, atol=1e-6, msg=name)
    batches = [(tmp_path / run / "batches.jsonl").read_text() for run in ("reference", "victim")]
    assert batches[0] == batches[1]
