"""Each kind of grid run (text, image-text) is one `RunKind`; the grid and the runner call it, never branch on a kind."""

from __future__ import annotations

import dataclasses
from typing import get_args

from hybridbatch.experiments import grid, runner
from hybridbatch.experiments.grid import RUN_KINDS, CompareConfig, compare_config_from_dict, expand
from hybridbatch.experiments.run_kind import TEXT_RUNS
from hybridbatch.experiments.run_kind_image_text import IMAGE_TEXT_RUNS


def text_grid(tmp_path) -> dict:
    return {"base_models": ["me5-small"], "samplers": ["mono", "hybrid"], "seeds": [0],
            "benchmarks": ["xquad-r:test", "mlqa-r"], "output_dir": str(tmp_path / "grid"),
            "train": {"data": {"source": "xquad-r:train", "languages": ["en", "de"]}, "batch_size": 8, "steps": 5}}


def test_every_grid_kind_has_its_run_kind():
    assert set(get_args(CompareConfig.model_fields["kind"].annotation)) == set(RUN_KINDS)
    assert RUN_KINDS == {"text": TEXT_RUNS, "image-text": IMAGE_TEXT_RUNS}
    assert TEXT_RUNS.zero_shot_refused is None and IMAGE_TEXT_RUNS.zero_shot_refused
    assert not TEXT_RUNS.baselines_allowed and IMAGE_TEXT_RUNS.baselines_allowed


def test_a_text_grid_has_text_runs_with_text_training_configs(tmp_path):
    config = compare_config_from_dict(text_grid(tmp_path))
    runs = expand(config)
    assert config.run_kind is TEXT_RUNS and {run.kind for run in runs} == {TEXT_RUNS}
    assert [type(run.train).__name__ for run in runs] == ["NoneType", "TrainConfig", "TrainConfig"]


def test_the_runner_trains_loads_and_evaluates_only_through_the_run_kind(tmp_path, monkeypatch):
    calls = []
    recording = dataclasses.replace(
        TEXT_RUNS,
        train=lambda cfg, resume: calls.append(("train", cfg.output_dir, resume)),
        load_benchmark=lambda spec, config: calls.append(("load", spec)) or f"bench {spec}",
        load_model=lambda run, config: calls.append(("model", run.name)) or ("model", "q: ", "p: "),
        evaluate=lambda run, spec, model, prefixes, bench, config, progress: calls.append(
            ("eval", run.name, spec, model, prefixes, bench)))
    monkeypatch.setitem(grid.RUN_KINDS, "text", recording)
    config = compare_config_from_dict(text_grid(tmp_path))
    tasks = runner.run_grid(config, progress=False)
    assert len(tasks) == 2 + 3 * 2
    mono, hybrid = (config.output_dir + f"/runs/me5-small/{s}/seed0" for s in ("mono", "hybrid@0.5"))
    prefixes = ("q: ", "p: ")
    assert calls == [
        ("load", "xquad-r:test"), ("load", "mlqa-r"),  # every benchmark before any training
        ("model", "me5-small/zero-shot"),
        ("eval", "me5-small/zero-shot", "xquad-r:test", "model", prefixes, "bench xquad-r:test"),
        ("eval", "me5-small/zero-shot", "mlqa-r", "model", prefixes, "bench mlqa-r"),
        ("train", mono + "/train", False), ("model", "me5-small/mono/seed0"),
        ("eval", "me5-small/mono/seed0", "xquad-r:test", "model", prefixes, "bench xquad-r:test"),
        ("eval", "me5-small/mono/seed0", "mlqa-r", "model", prefixes, "bench mlqa-r"),
        ("train", hybrid + "/train", False), ("model", "me5-small/hybrid@0.5/seed0"),
        ("eval", "me5-small/hybrid@0.5/seed0", "xquad-r:test", "model", prefixes, "bench xquad-r:test"),
        ("eval", "me5-small/hybrid@0.5/seed0", "mlqa-r", "model", prefixes, "bench mlqa-r"),
    ]
