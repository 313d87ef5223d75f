"""benchmarks/estimate_vs_runs.py reads the rates a finished grid measured (its training steps and evaluations)
and sets them beside the dry-run estimate's constants."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from helpers.scripts import load_script
from hybridbatch.experiments import estimate


def _module():
    return load_script("benchmarks/estimate_vs_runs.py")


def _grid(root: Path) -> None:
    train = root / "runs" / "m" / "hybrid@0.5" / "seed0" / "train"
    train.mkdir(parents=True)
    (train / "config.yaml").write_text(yaml.safe_dump({"batch_size": 100, "data": {"hard_negatives": 1},
                                                       "precision": "fp32", "freeze_word_embeddings": False}))
    steps = [{"step": 1, "step_s": 99.0}, {"step": 2, "step_s": 20.0}, {"step": 3, "step_s": 18.0},
             {"step": 4, "step_s": 30.0}]
    (train / "metrics.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    cpu = {"flags": ["avx2", "avx512f", "avx512_bf16", "avx512_vnni"]}
    for name, texts, seconds in (("xquad-r-test", 1000, 10.0), ("mlqa-r", 3000, 20.0)):
        for run in ("m/hybrid@0.5/seed0", "m/zero-shot"):
            folder = root / "runs" / run / "eval" / name
            folder.mkdir(parents=True)
            timing = {"texts": texts, "encode_s": seconds, "cpu": cpu, "fast_path": {"kind": "bf16"}}
            (folder / "metrics.json").write_text(json.dumps({"timing": timing}))


def test_rates_of_a_grid_beside_the_estimate(tmp_path):
    _grid(tmp_path)
    rates = _module().grid_rates(tmp_path)
    assert rates["cpu_flags"] == ["avx2 avx512f avx512_bf16 avx512_vnni"]
    train = rates["train"]
    assert train["steps"] == 3 and train["median_step_s"] == 20.0  # step 1 (warm-up) left out
    assert train["texts_per_step"] == 300 and train["word_embeddings_trained"]
    assert train["estimate_step_s"] == round(300 * estimate.TRAIN_S_PER_TEXT + estimate.WORD_EMBEDDING_STEP_S, 2)
    assert rates["eval"]["evaluations"] == 4 and rates["eval"]["median_texts_per_s"] == 125.0  # of 100 and 150
    assert rates["eval"]["estimate_texts_per_s"] == round(estimate.EVAL_TEXTS_PER_S * estimate.BF16_EVAL_SPEEDUP, 1)


def test_a_folder_that_is_not_a_grid_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["estimate_vs_runs.py", str(tmp_path)])
    assert _module().main() == 2
    assert "not a compare output folder" in capsys.readouterr().err
