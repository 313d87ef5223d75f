"""Two processes pointed at one run folder: the second refuses with a clear message and touches nothing.

The first process is a real training run (faults_train_worker) held in the middle of writing a checkpoint;
the second is the real `hybridbatch train` app in another process, then in this one with `--resume`. Both
are refused with exit code 4 and a message naming the folder and the holder's pid, the folder is left as
it was, and once the first process is SIGKILLed the kernel has released its lock: `--resume` proceeds.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from helpers.training_toys import PYTHON, base_config, subprocess_env, write_config
from hybridbatch.cli import main_compare, main_train
from hybridbatch.training.rundir import read_metrics

WORKER = Path(__file__).with_name("faults_train_worker.py")
APP = "import sys; from hybridbatch.cli import main_train; sys.exit(main_train(sys.argv[1:]))"


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under `folder` except the lock file."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_a_second_process_is_refused_while_a_run_is_writing(tmp_path, toy_data, tiny_model, capsys):
    cfg = write_config(tmp_path / "run.yaml", base_config(tiny_model, toy_data, tmp_path / "run", steps=6,
                                                          checkpoint={"every": 4, "keep_last": 2}))
    hold = tmp_path / "hold"
    hold.mkdir()
    first = subprocess.Popen([PYTHON, str(WORKER), str(cfg), "before-rename", "4", str(hold)],
                             env=subprocess_env(1), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(hold / "at-kill-point", first)  # alive, holding the lock, checkpoint 4 half done
        before = snapshot(tmp_path / "run")
        second = subprocess.run([PYTHON, "-c", APP, str(cfg)], env=subprocess_env(1), capture_output=True,
                                text=True, timeout=1800)
        assert second.returncode == 4, second.stdout + second.stderr
        assert f"error: {tmp_path / 'run'} is in use by pid {first.pid}; wait for it to finish" in second.stderr
        assert "Traceback" not in second.stderr
        assert main_train([str(cfg), "--resume"]) == 4
        assert f"is in use by pid {first.pid}" in capsys.readouterr().err
        assert snapshot(tmp_path / "run") == before  # the refused processes wrote nothing
    finally:
        (hold / "release").touch()
        first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL

    assert main_train([str(cfg), "--resume"]) == 0  # the kernel dropped the dead process's lock
    steps = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # no checkpoint was in place: started over, no step logged twice


@contextmanager
def lock_held_by_another_process(folder: Path) -> Iterator[subprocess.Popen]:
    """A second, light process holding `folder`'s run lock until the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from hybridbatch.training.rundir import "
         "run_lock\nwith run_lock(Path(sys.argv[1])):\n    print('locked', flush=True); sys.stdin.read()",
         str(folder)], env=subprocess_env(1), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.communicate(input="", timeout=600)


def test_a_compare_grid_on_an_output_folder_in_use_is_refused(tmp_path, toy_data, capsys):
    grid = {"base_models": ["tiny"], "samplers": ["mono"], "seeds": [0], "benchmarks": [str(tmp_path / "bench")],
            "train": {"data": {"source": str(toy_data), "languages": ["en", "de"]}, "batch_size": 8, "steps": 2},
            "output_dir": str(tmp_path / "out")}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    with lock_held_by_another_process(tmp_path / "out") as holder:
        assert main_compare([str(tmp_path / "grid.yaml"), "--no-progress"]) == 4
    assert f"error: {tmp_path / 'out'} is in use by pid {holder.pid}" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".lock"]


def test_a_dry_run_on_a_folder_in_use_is_refused(tmp_path, toy_data):
    cfg = write_config(tmp_path / "run.yaml", base_config("some/model", toy_data, tmp_path / "run", steps=4))
    with lock_held_by_another_process(tmp_path / "run"):
        (tmp_path / "run" / "batches.jsonl").write_text("the batches trained so far\n")
        code = main_train([str(cfg), "--dry-run"])
        assert (tmp_path / "run" / "batches.jsonl").read_text() == "the batches trained so far\n"
        assert code == 4
