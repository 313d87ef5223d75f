"""bf16 mixed precision for training: the forward under autocast, fp32 weights, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers.training_toys import base_config
from helpers.vl_toys import vl_config
from hybridbatch.hardware import cpu_features
from hybridbatch.training.config import ConfigError, config_from_dict
from hybridbatch.training.precision import autocast_forward, resolve_precision
from hybridbatch.training.rundir import read_metrics
from hybridbatch.training.trainer import Trainer, train

AMX = "flags\t: avx2 avx512f avx512_bf16 amx_tile amx_bf16 amx_int8\n"
ZEN5 = "flags\t: avx2 avx512f avx512_bf16 avx512_vnni avx_vnni\n"
AVX2 = "flags\t: avx avx2 fma\n"


@pytest.mark.parametrize(("cpuinfo", "expected"), [(AMX, "bf16"), (ZEN5, "bf16"), (AVX2, "fp32"), ("", "fp32")])
def test_auto_precision_per_cpu(cpuinfo, expected):
    chosen, why = resolve_precision("auto", "cpu", cpu_features(cpuinfo, with_libraries=False))
    assert chosen == expected, why


def test_explicit_precision_is_kept_and_unknown_refused():
    assert resolve_precision("bf16", "cpu", cpu_features(AVX2, with_libraries=False))[0] == "bf16"
    assert resolve_precision("fp32", "cpu", cpu_features(AMX, with_libraries=False))[0] == "fp32"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("fp8")


def test_autocast_forward_runs_bf16_inside_returns_fp32_and_leaves_no_trace():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.GELU(), torch.nn.Linear(64, 32))
    x = torch.randn(16, 64)
    reference = model(x)
    with autocast_forward(model, "bf16"):
        inside = model(x)
        inner = model[0](x)  # a submodule called directly is not hooked
        assert not torch.is_autocast_enabled("cpu")  # only during the model's own forward
    assert inside.dtype == torch.float32 and inner.dtype == torch.float32
    assert 0 < (inside - reference).abs().max() < 0.1  # really computed in bf16, close to fp32
    inside.sum().backward()
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
    assert torch.equal(model(x), reference)  # hooks removed on exit
    with autocast_forward(model, "fp32"):
        assert torch.equal(model(x), reference)


def test_bf16_weight_copies_never_outlive_an_optimizer_step():
    """One autocast region over several optimizer steps (as train-vl once had around its whole loop): each
    forward must use the weights as they are now, not the bf16 copies cached at the first step."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.Linear(32, 8))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    x = torch.randn(8, 32)
    with autocast_forward(model, "bf16"):
        for _ in range(3):
            out = model(x)
            h = x
            for layer in model:  # the current weights cast by hand (autocast's own cache not involved)
                h = torch.nn.functional.linear(h.bfloat16(), layer.weight.detach().bfloat16(),
                                               layer.bias.detach().bfloat16())
            assert torch.allclose(out, h.float(), atol=1e-2), (out - h.float()).abs().max()
            out.square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()


def test_autocast_forward_recovers_from_a_failing_forward():
    model = torch.nn.Linear(4, 4)
    with autocast_forward(model, "bf16"), pytest.raises(RuntimeError):
        model(torch.randn(2, 5))  # shape error inside the forward
    assert not torch.is_autocast_enabled("cpu")


def test_config_key(tmp_path, tiny_model, toy_data):
    raw = base_config(tiny_model, toy_data, tmp_path / "run")
    assert config_from_dict(raw).precision == "fp32"
    assert config_from_dict({**raw, "precision": "auto"}).precision == "auto"
    with pytest.raises(ConfigError, match="precision"):
        config_from_dict({**raw, "precision": "half"})


class Stopped(RuntimeError):
    pass


def test_bf16_training_resumes_exactly(tmp_path, tiny_model, toy_data, monkeypatch):
    """A bf16 run stopped right after its first checkpoint (step 4) and resumed ends where an uninterrupted
    bf16 run does (losses, weights, batches), and bf16 really changed the numbers against fp32."""
    steps = 10

    def config(name, precision="bf16"):
        return config_from_dict(base_config(tiny_model, toy_data, tmp_path / name, steps=steps,
                                            precision=precision, checkpoint={"every": 4, "keep_last": 1}))

    train(config("reference"))
    train(config("fp32", "fp32"))
    original = Trainer._checkpoint

    def checkpoint_then_stop(self):
        original(self)
        raise Stopped(f"stopped after step {self.step}")

    monkeypatch.setattr(Trainer, "_checkpoint", checkpoint_then_stop)
    with pytest.raises(Stopped, match="step 4"):
        train(config("victim"))
    monkeypatch.setattr(Trainer, "_checkpoint", original)
    train(config("victim"), resume=True)

    losses = {run: [r["loss"] for r in read_metrics(tmp_path / run / "metrics.jsonl") if "loss" in r]
              for run in ("reference", "victim", "fp32")}
    assert len(losses["victim"]) == len(losses["reference"]) == steps
    assert max(abs(a - b) for a, b in zip(losses["reference"], losses["victim"], strict=True)) <= 1e-6
    assert max(abs(a - b) for a, b in zip(losses["reference"], losses["fp32"], strict=True)) > 1e-5
    ref = load_file(tmp_path / "reference" / "model" / "model.safetensors")
    got = load_file(tmp_path / "victim" / "model" / "model.safetensors")
    assert ref.keys() == got.keys()
    for name, value in ref.items():
        assert value.dtype == torch.float32, name  # fp32 master weights saved
        torch.testing.assert_close(got[name], value, rtol=0, atol=1e-6, msg=name)
    batches = [(tmp_path / run / "batches.jsonl").read_text() for run in ("reference", "victim")]
    assert batches[0] == batches[1]


def test_image_text_training_in_bf16(tmp_path, vl_assets):
    """train-vl with `precision: bf16`: the text tower runs under autocast (losses differ from fp32 by bf16
    rounding only, step by step, and it learns), the saved weights stay float32."""
    from hybridbatch.training.image_text import train_image_text

    assets = vl_assets
    runs = {p: train_image_text(vl_config(assets, tmp_path / p, precision=p, eval={"benchmarks": []}))
            for p in ("fp32", "bf16")}
    # the caption <-> image term: cross batches add caption <-> caption terms to the total (issue 19)
    losses = {p: [json.loads(line)["image_caption_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
              for p, run in runs.items()}
    assert all(np.isfinite(losses["bf16"])) and np.mean(losses["bf16"][-3:]) < np.mean(losses["bf16"][:3])
    gaps = [abs(a - b) for a, b in zip(losses["fp32"], losses["bf16"], strict=True)]
    # really bf16, yet every step's loss within bf16 rounding of fp32's: with the bf16 weight copies cached over
    # the whole loop (the text tower's forward frozen at its first step) the gaps reached 0.018 here
    assert 1e-6 < max(gaps) < 0.005, gaps
    weights = load_file(next((runs["bf16"] / "model").rglob("*.safetensors")))
    assert all(value.dtype == torch.float32 for value in weights.values())
