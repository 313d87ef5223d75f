"""Training a tiny model in-process: it learns, saves a loadable model, logs, refuses unsafe starts."""

from __future__ import annotations

import json
import math

import pytest
import torch

from helpers.training_toys import base_config, write_toy_benchmark
from hybridbatch.training import checkpoint as ckpt
from hybridbatch.training import trainer as trainer_module
from hybridbatch.training.config import config_from_dict
from hybridbatch.training.rundir import RunExists, RunLocked, read_metrics, run_lock
from hybridbatch.training.trainer import NonFiniteLoss, train
from hybridbatch.training.training_data import dry_run


def steps_of(run_dir):
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]


def test_tiny_run_learns_and_saves_a_sentence_transformer(tmp_path, toy_data, tiny_model):
    from sentence_transformers import SentenceTransformer

    raw = base_config(tiny_model, toy_data, tmp_path / "run", steps=12,
                      early_stopping={"val_fraction": 0.2, "every": 6},
                      checkpoint={"every": 6, "keep_last": 1})
    config = config_from_dict(raw)
    run_dir = train(config)

    losses = [r["loss"] for r in steps_of(run_dir)]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, losses
    record = steps_of(run_dir)[0]
    assert record["type"] in ("mono", "cross") and record["step_s"] > 0 and record["sampler_s"] >= 0
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if "val_loss" in r] == [6, 12]

    model = SentenceTransformer(str(run_dir / "model"), device="cpu")
    emb = model.encode(["where is the zorbaxkel?", "the zorbaxkel is in the garden."])
    assert emb.shape == (2, 32) and torch.isfinite(torch.as_tensor(emb)).all()
    card = (run_dir / "model" / "README.md").read_text()
    for fact in ("Sampler: `hybrid`, alpha 0.5", str(toy_data), "Steps: 12 of 12"):
        assert fact in card
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == ["step-000012"]

    plan_dir = dry_run(config.model_copy(update={"output_dir": str(tmp_path / "plan")}))
    assert (run_dir / "batches.jsonl").read_text() == (plan_dir / "batches.jsonl").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["train_groups"] + summary["val_groups"] == 24


def test_model_tiny_is_built_on_the_training_texts_into_the_cache(tmp_path, toy_data, monkeypatch):
    monkeypatch.setenv("HYBRIDBATCH_CACHE", str(tmp_path / "cache"))
    run_dir = train(config_from_dict(base_config("tiny", toy_data, tmp_path / "run", steps=2)))
    built = list((tmp_path / "cache" / "models").glob("tiny-*"))
    assert len(built) == 1 and (built[0] / "modules.json").is_file()
    assert f"tiny ({built[0]})" in (run_dir / "model" / "README.md").read_text()


def test_frozen_word_embeddings_stay_as_they_were(tmp_path, toy_data, tiny_model):
    from safetensors.torch import load_file

    run_dir = train(config_from_dict(base_config(tiny_model, toy_data, tmp_path / "run", steps=2,
                                                 freeze_word_embeddings=True)))
    before, after = load_file(tiny_model / "model.safetensors"), load_file(run_dir / "model" / "model.safetensors")
    name = next(k for k in before if k.endswith("word_embeddings.weight"))
    assert torch.equal(before[name], after[name])
    moved = next(k for k in before if k.endswith("position_embeddings.weight"))
    assert not torch.equal(before[moved], after[moved])


def test_lock_refuses_a_second_run(tmp_path, toy_data, tiny_model):
    config = config_from_dict(base_config(tiny_model, toy_data, tmp_path / "run", steps=1))
    with run_lock(config.run_dir), pytest.raises(RunLocked, match="in use by pid"):
        train(config)


def test_refuses_to_overwrite_a_run_without_resume(tmp_path, toy_data, tiny_model):
    config = config_from_dict(base_config(tiny_model, toy_data, tmp_path / "run", steps=2))
    train(config)
    with pytest.raises(RunExists, match="--resume"):
        train(config)
    train(config, resume=True)  # finished run, resumed: nothing left to train, same files
    assert len(steps_of(config.run_dir)) == 2


def nan_at(step_to_break: int, monkeypatch):
    """Make the loss of one global step NaN (as an overflow would)."""
    real = trainer_module.global_batch_loss
    calls = {"n": 0}

    def patched(*args, **kwargs):
        loss = real(*args, **kwargs)
        calls["n"] += 1
        return loss * float("nan") if calls["n"] == step_to_break else loss

    monkeypatch.setattr(trainer_module, "global_batch_loss", patched)


def test_non_finite_loss_stops_before_updating(tmp_path, toy_data, tiny_model, monkeypatch):
    nan_at(3, monkeypatch)
    config = config_from_dict(base_config(tiny_model, toy_data, tmp_path / "run", steps=5))
    with pytest.raises(NonFiniteLoss, match=r"step 3 .*query languages \[.*groups \['g"):
        train(config)
    events = [r for r in read_metrics(config.run_dir / "metrics.jsonl") if r.get("event") == "non_finite"]
    assert events[0]["step"] == 3 and len(events[0]["batch"]["groups"]) == 8


def test_non_finite_loss_skip_keeps_weights_finite(tmp_path, toy_data, tiny_model, monkeypatch):
    nan_at(2, monkeypatch)
    config = config_from_dict(base_config(tiny_model, toy_data, tmp_path / "run", steps=4,
                                          nonfinite_loss="skip"))
    run_dir = train(config)
    records = steps_of(run_dir)
    assert [r.get("skipped") for r in records] == [None, "loss", None, None]
    assert math.isfinite(records[-1]["loss"])
    from safetensors.torch import load_file

    weights = load_file(run_dir / "model" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_early_stopping_keeps_the_best_weights_and_evaluates(tmp_path, toy_data, tiny_model, monkeypatch):
    from helpers.training_toys import toy_groups

    bench = write_toy_benchmark(tmp_path / "bench", toy_groups()[:6])
    val_losses = iter([3.0, 2.0, 2.5, 2.6, 1.0])
    monkeypatch.setattr(trainer_module, "validation_loss", lambda *a, **k: next(val_losses))
    config = config_from_dict(base_config(
        tiny_model, toy_data, tmp_path / "run", steps=12,
        early_stopping={"patience": 2, "val_fraction": 0.2, "every": 2},
        eval={"every": 4, "benchmarks": [str(bench)], "final": True}))
    run_dir = train(config)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["steps_done"], summary["stopped_early"], summary["best_step"]) == (8, True, 4)
    assert len((run_dir / "batches.jsonl").read_text().splitlines()) == 8  # the batches actually trained
    from safetensors.torch import load_file

    best = torch.load(run_dir / trainer_module.BEST, weights_only=True)
    saved = load_file(run_dir / "model" / "model.safetensors")
    by_suffix = {k.split(".", 2)[-1]: v for k, v in best.items()}  # "0.model.<name>" -> "<name>"
    assert saved.keys() <= by_suffix.keys()
    assert all(torch.equal(saved[k], by_suffix[k]) for k in saved)
    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if "eval" in r]
    assert [(r["step"], r["final"]) for r in evals] == [(4, False), (8, False), (8, True)]
    scores = evals[-1]["eval"][str(bench)]
    assert 0 < scores["multilingual_map"] <= 1 and "rank_distance" in scores
    assert (run_dir / "eval" / "final" / "bench").is_dir()
    card = (run_dir / "model" / "README.md").read_text()
    assert "Stopped early at step 8; weights of step 4" in card and "multilingual_map" in card


def test_partially_parallel_groups_train_and_validate(tmp_path, toy_data, tiny_model):
    """`sampler.group_languages: available` end to end: groups missing a language (as MLQA-R's do) are trained
    on, every example looked up in a language its group has, validation included; the plan is the dry run's."""
    from hybridbatch.data.parallel import ParallelGroup, load_groups_jsonl, save_groups_jsonl

    def cut(group: ParallelGroup, i: int) -> ParallelGroup:
        drop = ["de", "zh", None][i % 3]  # a third lack de, a third zh, a third have all
        keep = lambda d: {k: v for k, v in d.items() if k != drop}  # noqa: E731
        return ParallelGroup(group.id, keep(group.queries), keep(group.positives), keep(group.negatives))

    partial = tmp_path / "partial.jsonl"
    save_groups_jsonl(partial, [cut(g, i) for i, g in enumerate(load_groups_jsonl(toy_data))])
    raw = base_config(tiny_model, partial, tmp_path / "run", steps=6, batch_size=4,
                      early_stopping={"val_fraction": 0.25, "every": 3},
                      sampler={"name": "hybrid", "alpha": 0.5, "group_languages": "available"})
    config = config_from_dict(raw)
    run_dir = train(config)
    losses = [r["loss"] for r in steps_of(run_dir)]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
    assert all(math.isfinite(r["val_loss"]) for r in read_metrics(run_dir / "metrics.jsonl") if "val_loss" in r)
    plan_dir = dry_run(config.model_copy(update={"output_dir": str(tmp_path / "plan")}))
    assert (run_dir / "batches.jsonl").read_text() == (plan_dir / "batches.jsonl").read_text()
