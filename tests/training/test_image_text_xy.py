"""The image-text X-Y: cross batches pair captions across languages (caption X <-> caption Y of the same image),
mono / mixed-same / en-en batches do not; checked on the loss terms (tensors and a tiny model), on the batch log
and on the per-step metrics of a training run; captions get the text model's "query" prompt."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from helpers.vl_toys import vl_config
from hybridbatch.losses import clip_loss, image_text_loss_terms
from hybridbatch.training.config import ConfigError


# --------------------------------------------------------------------------------------------- tensors
def _emb(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_loss_terms_without_second_captions_are_clip_loss_only():
    text, image = _emb(6, 8, 0), _emb(6, 8, 1)
    terms = image_text_loss_terms(text, image, 10.0)
    assert set(terms) == {"image_caption", "total"}
    assert torch.equal(terms["total"], clip_loss(text, image, 10.0))


def test_loss_terms_of_a_cross_batch_add_the_caption_pairs_with_their_weights():
    text, image, second = _emb(6, 8, 0), _emb(6, 8, 1), _emb(6, 8, 2)
    terms = image_text_loss_terms(text, image, 10.0, second, caption_caption_weight=0.5,
                                  image_second_caption_weight=2.0)
    assert set(terms) == {"image_caption", "image_second_caption", "caption_caption", "total"}
    assert torch.allclose(terms["caption_caption"], clip_loss(text, second, 10.0))
    assert torch.allclose(terms["image_second_caption"], clip_loss(second, image, 10.0))
    expected = (clip_loss(text, image, 10.0) + 2.0 * clip_loss(second, image, 10.0)) / 3.0 \
        + 0.5 * clip_loss(text, second, 10.0)
    assert torch.allclose(terms["total"], expected)
    # the caption term rewards aligned translations: second captions equal to the first give a lower term
    aligned = image_text_loss_terms(text, image, 10.0, text.clone())["caption_caption"]
    assert aligned < terms["caption_caption"]
    with pytest.raises(ValueError, match="do not match"):
        image_text_loss_terms(text, image, 10.0, second[:3])
    with pytest.raises(ValueError, match=">= 0"):
        image_text_loss_terms(text, image, 10.0, second, caption_caption_weight=-1.0)


# --------------------------------------------------------------------------------------------- batch log
def _batch_log(vl_assets, tmp_path, sampler):
    from hybridbatch.training.image_text import dry_run_image_text

    run = dry_run_image_text(vl_config(vl_assets, tmp_path / sampler["name"], sampler=sampler, steps=20))
    return [json.loads(line) for line in (run / "batches.jsonl").read_text().splitlines()]


def test_cross_batches_log_a_second_caption_in_another_language_for_every_example(vl_assets, tmp_path):
    batches = _batch_log(vl_assets, tmp_path, {"name": "cross"})
    assert len(batches) == 20
    for b in batches:
        assert b["type"] == "cross" and b["cross_pairs"] == len(b["images"]) == 8
        assert all(x != y for x, y in zip(b["caption_langs"], b["second_caption_langs"], strict=True))
    pairs = {(x, y) for b in batches for x, y in zip(b["caption_langs"], b["second_caption_langs"], strict=True)}
    assert pairs == {(x, y) for x in ("en", "de", "fr") for y in ("en", "de", "fr") if x != y}


@pytest.mark.parametrize("name", ["mono", "mixed-same", "en-en"])
def test_batches_other_than_cross_log_no_cross_pair(vl_assets, tmp_path, name):
    batches = _batch_log(vl_assets, tmp_path, {"name": name})
    assert all(b["type"] == name and b["second_caption_langs"] is None and b["cross_pairs"] == 0 for b in batches)
    mixed = [len(set(b["caption_langs"])) > 1 for b in batches]
    assert all(mixed) if name == "mixed-same" else not any(mixed)


def test_hybrid_logs_cross_pairs_exactly_on_its_cross_batches(vl_assets, tmp_path):
    batches = _batch_log(vl_assets, tmp_path, {"name": "hybrid", "alpha": 0.5})
    assert {b["type"] for b in batches} == {"mono", "cross"}
    for b in batches:
        assert (b["cross_pairs"] == 8) == (b["type"] == "cross")
        assert (b["second_caption_langs"] is None) == (b["type"] == "mono")


# --------------------------------------------------------------------------------------------- model
def _model_and_plan(vl_assets, tmp_path, name):
    from hybridbatch.batching.samplers import make_sampler
    from hybridbatch.training.image_text import build_dual_encoder, caption_groups, load_caption_source

    config = vl_config(vl_assets, tmp_path / name, sampler={"name": name})
    groups, _, _ = caption_groups(load_caption_source(config.data.source), config.data.languages)
    sampler = make_sampler(name, groups, config.data.languages, config.batch_size, config.seed)
    torch.manual_seed(0)
    model = build_dual_encoder(config)
    raw = torch.randn(len(groups), model.image_dim, generator=torch.Generator().manual_seed(1))
    return config, groups, sampler, model, raw


def test_a_cross_batch_loss_pairs_captions_of_the_same_image_in_different_languages(vl_assets, tmp_path):
    from hybridbatch.training.image_text_batches import batch_captions, batch_loss_terms

    config, groups, sampler, model, raw = _model_and_plan(vl_assets, tmp_path, "cross")
    batch = sampler.batch_at(0, 0)
    first, second = batch_captions(batch, groups)
    for g, x, y, a, b in zip(batch.groups, batch.query_langs, batch.doc_langs, first, second, strict=True):
        assert x != y and a == groups[g].queries[x] and b == groups[g].positives[y] and a != b
    terms = batch_loss_terms(model, batch, groups, raw, config.text_text_weight, config.image_second_caption_weight)
    assert config.text_text_weight == 1.0 and config.image_second_caption_weight == 1.0  # the documented defaults
    assert terms["caption_caption"] > 0 and terms["image_second_caption"] > 0
    expected = (terms["image_caption"] + terms["image_second_caption"]) / 2 + terms["caption_caption"]
    assert torch.allclose(terms["total"], expected)
    terms["total"].backward()  # the caption pairs reach the text tower
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.text_model.parameters())


@pytest.mark.parametrize("name", ["mono", "mixed-same"])
def test_batches_without_cross_pairs_have_only_the_caption_image_term(vl_assets, tmp_path, name):
    from hybridbatch.training.image_text_batches import batch_captions, batch_loss_terms

    config, groups, sampler, model, raw = _model_and_plan(vl_assets, tmp_path, name)
    batch = sampler.batch_at(0, 0)
    assert batch_captions(batch, groups)[1] is None
    terms = batch_loss_terms(model, batch, groups, raw, config.text_text_weight, config.image_second_caption_weight)
    assert "caption_caption" not in terms and torch.equal(terms["total"], terms["image_caption"])


def test_training_metrics_carry_the_caption_pair_term_on_cross_steps_only(vl_assets, tmp_path):
    from hybridbatch.training.image_text import train_image_text

    run = train_image_text(vl_config(vl_assets, tmp_path / "run", steps=8, eval={"benchmarks": []}))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    batches = [json.loads(line) for line in (run / "batches.jsonl").read_text().splitlines()]
    assert [r["type"] for r in records] == [b["type"] for b in batches]
    assert {r["type"] for r in records} == {"mono", "cross"}
    for r in records:
        assert ("caption_caption_loss" in r) == (r["type"] == "cross")
        if r["type"] == "cross":
            assert r["caption_caption_loss"] > 0
            assert r["loss"] == pytest.approx((r["image_caption_loss"] + r["image_second_caption_loss"]) / 2
                                              + r["caption_caption_loss"], rel=1e-5)


def test_cross_without_any_cross_pair_weight_is_refused_as_mixed_same(vl_assets, tmp_path):
    with pytest.raises(ConfigError, match="mixed-same"):
        vl_config(vl_assets, tmp_path / "a", sampler={"name": "cross"}, text_text_weight=0.0,
                image_second_caption_weight=0.0)
    # mono with alpha 1 never draws a cross batch: no weight is needed
    vl_config(vl_assets, tmp_path / "b", sampler={"name": "hybrid", "alpha": 1.0}, text_text_weight=0.0,
            image_second_caption_weight=0.0)


# --------------------------------------------------------------------------------------------- prompts
def test_captions_go_through_the_text_models_query_prompt(vl_assets, tmp_path, monkeypatch):
    from hybridbatch.models.image_text_dual_encoder import ImageTextDualEncoder
    from hybridbatch.models.image_towers import build_image_tower
    from hybridbatch.models.registry import load_sentence_transformer
    from hybridbatch.models.tiny import build_tiny_sentence_transformer

    root, _, tower = vl_assets
    folder = build_tiny_sentence_transformer(tmp_path / "e5like", texts=["a red square"], seed=0,
                                             prompts={"query": "query: ", "passage": "passage: "})
    text = load_sentence_transformer(str(folder))
    model = ImageTextDualEncoder(text, build_image_tower(f"hf-clip-vision:{tower}"), embed_dim=8)
    assert model.text_prompt == "query: "
    seen = []
    real = text.preprocess

    def spy(texts, prompt=None, **kwargs):
        seen.append(prompt)
        return real(texts, prompt=prompt, **kwargs)

    monkeypatch.setattr(text, "preprocess", spy)
    with_prompt = model.encode_texts(["a red square"])
    model.text_prompt = ""
    without = model.encode_texts(["a red square"])
    assert seen == ["query: ", None]
    assert not torch.allclose(torch.from_numpy(with_prompt), torch.from_numpy(without))
