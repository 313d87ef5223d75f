"""A compare grid killed at any point of a run's life: the run is seen as incomplete and never reported.

tests/experiments/test_compare_report.py runs a real grid, removes files as an interruption would and
checks that a re-run does only what is missing. Here the run folder is laid out as a SIGKILL leaves it at
each point of a run's life (before the first checkpoint, after one, while the final model is written,
between the model and `summary.json`, in the middle of an evaluation), and the grid's bookkeeping is
checked at each: the run is listed as interrupted, the re-run would resume it and evaluate it again, and
the report collects nothing from it, not even an evaluation left over from earlier weights.
"""

from __future__ import annotations

import pytest

from hybridbatch.experiments.grid import (
    compare_config_from_dict,
    expand,
    is_complete,
    is_started,
    is_trained,
    pending_tasks,
    status_line,
)
from hybridbatch.experiments.report import collect
from hybridbatch.io import write_json

STAGES = ["before the first checkpoint", "after a checkpoint", "while saving the model",
          "between the model and summary.json", "during an evaluation"]


@pytest.fixture
def grid(tmp_path, toy_data):
    config = compare_config_from_dict({
        "base_models": ["tiny"], "samplers": ["mono"], "seeds": [0],
        "benchmarks": [str(tmp_path / "bench-a"), str(tmp_path / "bench-b")],
        "train": {"data": {"source": str(toy_data), "languages": ["en", "de"]}, "batch_size": 8, "steps": 4},
        "output_dir": str(tmp_path / "out")})
    zero_shot, mono = expand(config)
    for bench in config.benchmarks:  # the zero-shot row is complete
        write_json(zero_shot.eval_dir(bench) / "metrics.json", {"run": zero_shot.name})
    return config, mono


def lay_out(run, benchmarks, stage: str) -> None:
    """The files a SIGKILL at `stage` leaves in the run folder (in the order the trainer writes them)."""
    train = run.train_dir
    train.mkdir(parents=True)
    (train / ".lock").write_text("pid 12345\n")
    (train / "config.yaml").write_text(run.train.to_yaml())
    (train / "metrics.jsonl").write_text('{"step": 1, "loss": 2.5}\n{"step": 2, "lo')  # torn last line
    if stage == STAGES[0]:
        return
    (train / "checkpoints" / "step-000002").mkdir(parents=True)
    (train / "checkpoints" / "step-000002" / "manifest.json").write_text("{}")
    if stage == STAGES[1]:
        return
    (train / ".model.x1y2.tmp").mkdir()
    (train / ".model.x1y2.tmp" / "config.json").write_text("{}")
    if stage == STAGES[2]:
        return
    (train / "model").mkdir()
    (train / "model" / "README.md").write_text("a model card")
    # an evaluation of earlier weights (a previous attempt of this run) must not be taken for this one
    write_json(run.eval_dir(benchmarks[0]) / "metrics.json", {"run": run.name, "stale": True})
    if stage == STAGES[3]:
        return
    write_json(train / "summary.json", {"steps_done": 4})
    write_json(run.eval_dir(benchmarks[0]) / "metrics.json", {"run": run.name})  # evaluated after training
    (run.eval_dir(benchmarks[1])).mkdir(parents=True)
    (run.eval_dir(benchmarks[1]) / "per_query.tsv.gz").write_bytes(b"\x1f\x8b partial")  # no metrics.json


@pytest.mark.parametrize("stage", STAGES)
def test_an_interrupted_run_is_incomplete_resumed_and_not_reported(grid, stage):
    config, run = grid
    lay_out(run, config.benchmarks, stage)
    results = collect(config)
    assert results.left_out == 1 and not is_complete(run, config.benchmarks)
    assert is_started(run)
    tasks = [(kind, r.name, bench) for kind, r, bench in pending_tasks(config)]
    if stage == "during an evaluation":
        assert is_trained(run)
        assert tasks == [("eval", run.name, config.benchmarks[1])]  # only the evaluation that was cut short
        assert results.metrics[("tiny", "mono", config.benchmarks[0])] == [{"run": run.name}]
        assert ("tiny", "mono", config.benchmarks[1]) not in results.metrics
        assert results.systems == {"tiny": ["zero-shot", "mono"]}
    else:
        assert not is_trained(run)
        assert "interrupted: will resume" in status_line(run, config.benchmarks)
        assert tasks == [("train", run.name, None), *[("eval", run.name, b) for b in config.benchmarks]]
        assert not [key for key in results.metrics if key[1] == "mono"]  # nothing reported, not even stale
        assert results.systems == {"tiny": ["zero-shot"]}


def test_a_finished_grid_has_nothing_left(grid):
    config, run = grid
    lay_out(run, config.benchmarks, STAGES[-1])
    write_json(run.eval_dir(config.benchmarks[1]) / "metrics.json", {"run": run.name})
    assert pending_tasks(config) == [] and collect(config).left_out == 0
