"""The GPU benchmark script runs end to end (here on the CPU, with a tiny model), so a session that is lent a
GPU spends its minutes measuring, not debugging."""

from __future__ import annotations

import json

import pytest

from helpers.scripts import load_script
from hybridbatch.models.tiny import MULTILINGUAL_SAMPLE, build_tiny_sentence_transformer


def _load():
    return load_script("benchmarks/bench_gpu.py")


def test_bench_gpu_on_cpu_with_a_tiny_model(lareqa_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HYBRIDBATCH_LAREQA_DIR", str(lareqa_dir))
    model = build_tiny_sentence_transformer(tmp_path / "tiny", texts=MULTILINGUAL_SAMPLE, hidden=32, layers=1,
                                            heads=2, seed=0)
    out = tmp_path / "gpu.json"
    code = _load().main(["--device", "cpu", "--model", str(model), "--benchmark", "xquad-r:test@en,de",
                         "--languages", "en,de", "--sample", "48", "--batch-sizes", "16", "--dtypes", "fp32,bf16",
                         "--repeats", "1", "--train-steps", "3", "--train-batch", "8", "--warmup", "1",
                         "--precisions", "no", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and "CPU" in result["device_name"]
    rows = result["encoding"]["rows"]
    assert [(r["dtype"], r["batch_size"]) for r in rows] == [("fp32", 16), ("bf16", 16)]
    assert rows[0]["cosine_to_fp32_min"] == pytest.approx(1.0, abs=1e-5)
    assert 0.9 < rows[1]["cosine_to_fp32_min"] <= 1.0 + 1e-5
    assert all(r["texts_per_s"] > 0 for r in rows)
    evaluation = result["evaluation"]
    assert set(evaluation["map"]) == {"monolingual", "crosslingual", "multilingual"}
    assert evaluation["texts"] > 1000
    (train,) = result["training"]
    assert train["precision"] == "no" and train["steps"] == 3 and train["timed_steps"] == 2
    assert train["examples_per_s"] > 0


def test_bench_gpu_refuses_cuda_without_a_gpu(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _load().main(["--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
