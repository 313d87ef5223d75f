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


def test_dry_run_plans_partially_parallel_groups(tmp_path):
    """`sampler.group_languages: available`: groups in two or more of the languages are trained on, and each
    logged example's languages are ones its group has (a group lacking zh is never drawn in zh)."""
    groups = {f"g{i}": ["en", "de"] if i % 2 else ["en", "zh"] + (["de"] if i % 4 == 0 else []) for i in range(24)}
    groups["solo"] = ["en"]  # one language: no cross pair, dropped
    data = tmp_path / "partial.jsonl"
    data.write_text("".join(json.dumps({"id": gid, "queries": {lang: f"q {gid} {lang}" for lang in langs},
                                        "positives": {lang: f"p {gid} {lang}" for lang in langs}}) + "\n"
                            for gid, langs in groups.items()), encoding="utf-8")
    raw = base_config("no/such-model", data, tmp_path / "run") | {"batch_size": 4}
    raw["data"] |= {"languages": ["en", "de", "zh"], "hard_negatives": 0}
    raw["sampler"] = {"name": "hybrid", "alpha": 0.5, "group_languages": "available"}
    run_dir = dry_run(load_config(write_config(tmp_path / "c.yaml", raw), ["steps=12"]))
    lines = [json.loads(line) for line in (run_dir / "batches.jsonl").read_text().splitlines()]
    assert len(lines) == 12 and {line["type"] for line in lines} == {"mono", "cross"}
    drawn = set()
    for line in lines:
        for gid, q, d in zip(line["groups"], line["query_langs"], line["doc_langs"], strict=True):
            assert {q, d} <= set(groups[gid]) and gid != "solo"
            drawn.add(q)
    assert drawn == {"en", "de", "zh"}
