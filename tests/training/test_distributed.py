"""Two CPU processes (torchrun, gloo): same plan on both, gathered loss = the single-process loss."""

from __future__ import annotations

import json
import runpy
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from helpers.training_toys import base_config, subprocess_env, write_config
from hybridbatch.training.config import load_config
from hybridbatch.training.rundir import read_metrics
from hybridbatch.training.step import ChunkEncoder, LossSettings, global_batch_loss
from hybridbatch.training.training_data import build_sampler, dry_run, prepare_data

WORKER = Path(__file__).with_name("dist_worker.py")
watched_weight = runpy.run_path(str(WORKER))["watched_weight"]
TORCHRUN = shutil.which("torchrun") or str(Path(__import__("sys").executable).with_name("torchrun"))


def single_process_reference(config, batches):
    """Loss and gradient of the same global batches, computed whole in this process."""
    from sentence_transformers import SentenceTransformer

    data = prepare_data(config)
    model = SentenceTransformer(config.model, device="cpu")
    model.max_seq_length = config.max_seq_length
    model.eval()
    encoder = ChunkEncoder(model)
    sampler = build_sampler(config, data)
    weight = watched_weight(model)
    out = []
    for seen in batches:
        batch = sampler.batch_at(*sampler.position(seen["step"]))
        loss = global_batch_loss(encoder, model, batch, data.train, LossSettings(temperature=config.temperature, chunk_size=0))
        loss.backward()
        out.append((float(loss.detach()), weight.grad.flatten().clone()))
        model.zero_grad(set_to_none=True)
    return out


@pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun not installed")
def test_two_processes_share_the_plan_and_the_loss(tmp_path, toy_data, tiny_model):
    raw = base_config(tiny_model, toy_data, tmp_path / "run", steps=4, checkpoint={"every": 2, "keep_last": 1})
    config_path = write_config(tmp_path / "c.yaml", raw)
    cmd = [TORCHRUN, "--standalone", "--nproc_per_node", "2", str(WORKER), str(config_path), str(tmp_path)]
    result = subprocess.run(cmd, env=subprocess_env(1), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    plan_keys = ("step", "type", "query_langs", "doc_langs", "groups")
    for a, b in zip(ranks[0]["seen"], ranks[1]["seen"], strict=True):
        assert {k: a[k] for k in plan_keys} == {k: b[k] for k in plan_keys}  # same global batch
        assert a["loss"] == b["loss"]  # every process computes the same global loss
        assert a["grad"] == b["grad"]  # DDP left both with the same gradient

    config = load_config(config_path)
    reference = single_process_reference(config, ranks[0]["seen"])
    for seen, (loss, grad) in zip(ranks[0]["seen"], reference, strict=True):
        assert seen["loss"] == pytest.approx(loss, abs=1e-5)
        torch.testing.assert_close(torch.tensor(seen["grad"]), grad, rtol=1e-4, atol=1e-6)

    run_dir = tmp_path / "run"
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r] == [1, 2, 3, 4]
    assert json.loads((run_dir / "summary.json").read_text())["processes"] == 2
    assert (run_dir / "model" / "model.safetensors").is_file()
    plan = dry_run(config.model_copy(update={"output_dir": str(tmp_path / "plan")}))
    assert (run_dir / "batches.jsonl").read_text() == (plan / "batches.jsonl").read_text()
