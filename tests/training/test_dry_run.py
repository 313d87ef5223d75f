"""The dry run writes the exact batch plan and the resolved config, and never loads a model."""

from __future__ import annotations

import json
import subprocess
import textwrap

import yaml

from helpers.training_toys import PYTHON, base_config, subprocess_env, write_config
from hybridbatch.data.parallel import load_groups_jsonl, restrict_languages
from hybridbatch.training.config import load_config
from hybridbatch.training.training_data import dry_run


def test_dry_run_writes_the_sampler_plan(tmp_path, toy_data):
    from hybridbatch.batching import make_sampler

    config = load_config(write_config(tmp_path / "c.yaml", base_config("no/such-model", toy_data, tmp_path / "run")),
                         ["grad_accum=2", "steps=7"])
    run_dir = dry_run(config)
    lines = [json.loads(line) for line in (run_dir / "batches.jsonl").read_text().splitlines()]
    groups, _ = restrict_languages(load_groups_jsonl(toy_data), ["en", "de", "zh"])
    sampler = make_sampler("hybrid", groups, ["en", "de", "zh"], 8, 3, alpha=0.5, hard_negatives=2)
    expected = [b.to_log(groups) for b in sampler.iter_batches(total_steps=14)]  # steps x grad_accum
    assert lines == expected
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["grad_accum"] == 2
    assert not (run_dir / "model").exists()


def test_dry_run_imports_no_model_library(tmp_path, toy_data):
    """Through the app, as `hybridbatch train --dry-run` runs it: torch and the model stack stay unloaded."""
    cfg = write_config(tmp_path / "c.yaml", base_config("no/such-model", toy_data, tmp_path / "run"))
    script = textwrap.dedent(f"""
        import sys
        from hybridbatch.cli import main_train
        assert main_train([{str(cfg)!r}, "--dry-run"]) == 0
        loaded = sorted(m for m in ("torch", "transformers", "sentence_transformers", "accelerate")
                        if m in sys.modules)
        print("LOADED", loaded)
    """)
    result = subprocess.run([PYTHON, "-c", script], env=subprocess_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
    assert (tmp_path / "run" / "batches.jsonl").is_file()
