"""Image-text checkpoints and resume: a run stopped after a checkpoint and resumed ends exactly like an
uninterrupted one (per-step losses and loss terms, final weights, batch log); checkpoints verify, are pruned,
and hold only what trains; resuming with a config that trains differently is refused."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.vl_toys import vl_config
from hybridbatch.training import checkpoint as ckpt
from hybridbatch.training.config import ConfigError

STEPS, EVERY, STOP_AT = 12, 4, 8


class _Stopped(RuntimeError):
    pass


def _run_config(vl_assets, out, **overrides):
    raw = {"steps": STEPS, "checkpoint": {"every": EVERY, "keep_last": 2}, "eval": {"benchmarks": []},
           "warmup_steps": 2}
    raw.update(overrides)
    return vl_config(vl_assets, out, **raw)


def _weights(run):
    from hybridbatch.models.image_text_dual_encoder import ImageTextDualEncoder

    return ImageTextDualEncoder.load(run / "model").state_dict()


def _metrics(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "step_s"} for r in records]


def assert_same_run(got, ref):
    assert _metrics(got) == _metrics(ref)  # every step's loss, its terms, type, lr and logit scale
    assert (got / "batches.jsonl").read_text() == (ref / "batches.jsonl").read_text()
    a, b = _weights(got), _weights(ref)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]


def test_stopped_then_resumed_equals_an_uninterrupted_run(vl_assets, tmp_path, monkeypatch, deterministic):
    from hybridbatch.training import image_text_checkpoint
    from hybridbatch.training.image_text import train_image_text

    ref = train_image_text(_run_config(vl_assets, tmp_path / "ref"))
    assert [p.name for p in ckpt.list_checkpoints(ref)] == ["step-000008", "step-000012"]  # keep_last 2

    real = image_text_checkpoint.save_image_text_checkpoint

    def save_then_stop(run_dir, step, *args, **kwargs):
        path = real(run_dir, step, *args, **kwargs)
        if step == STOP_AT:
            raise _Stopped(f"stopped after the checkpoint of step {step}")
        return path

    monkeypatch.setattr(image_text_checkpoint, "save_image_text_checkpoint", save_then_stop)
    config = _run_config(vl_assets, tmp_path / "got")
    with pytest.raises(_Stopped):
        train_image_text(config)
    monkeypatch.setattr(image_text_checkpoint, "save_image_text_checkpoint", real)
    got = config.run_dir
    assert not (got / "summary.json").exists() and len(_metrics(got)) == STOP_AT
    with pytest.raises(RuntimeError, match="--resume"):
        train_image_text(config)  # a started run is not silently overwritten
    train_image_text(config, resume=True)
    assert json.loads((got / "summary.json").read_text())["resumed_from_step"] == STOP_AT
    assert_same_run(got, ref)


def test_a_checkpoint_keeps_only_what_trains_and_verifies(vl_assets, tmp_path, deterministic):
    from hybridbatch.training.image_text import build_dual_encoder, train_image_text

    config = _run_config(vl_assets, tmp_path / "run", steps=4, freeze_word_embeddings=True)
    run = train_image_text(config)
    path = ckpt.latest_checkpoint(run)
    state = ckpt.load_checkpoint(path)  # verifies every SHA256 of the manifest
    assert state.step == 4 and state.state["epoch"] == 1 and state.state["epoch_step"] == 1  # 3 batches/epoch
    model = build_dual_encoder(config)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert trainable <= set(state.model) and not frozen & set(state.model)
    assert any("word_embeddings" in n for n in frozen) and any(n.startswith("image_tower.") for n in frozen)
    with open(path / "model.pt", "r+b") as handle:  # damage it: resume must not read it
        handle.seek(100)
        handle.write(b"\0" * 16)
    with pytest.raises(ckpt.CorruptCheckpoint):
        ckpt.load_checkpoint(path)


def test_resume_refuses_a_config_that_trains_differently(vl_assets, tmp_path, monkeypatch, deterministic):
    from hybridbatch.training.image_text import train_image_text

    run = train_image_text(_run_config(vl_assets, tmp_path / "run", steps=4))
    with pytest.raises(ConfigError, match="text_text_weight"):
        train_image_text(_run_config(vl_assets, run, steps=4, text_text_weight=0.5), resume=True)
    # eval. and checkpoint. keys may change; a finished run resumed again trains nothing more
    before = _weights(run)
    train_image_text(_run_config(vl_assets, run, steps=4, checkpoint={"every": 2, "keep_last": 1}), resume=True)
    after = _weights(run)
    assert all(torch.equal(before[k], after[k]) for k in before)
