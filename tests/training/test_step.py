"""The per-batch pieces on toy data: texts from the plan, false-negative mask, chunked encoding, gather."""

from __future__ import annotations

import pytest
import torch

from helpers.training_toys import toy_groups
from hybridbatch.batching.plan import PlannedBatch
from hybridbatch.data.parallel import ParallelGroup
from hybridbatch.training.step import (
    ChunkEncoder,
    LossSettings,
    batch_texts,
    encode,
    false_negative_mask,
    gather_rows,
    global_batch_loss,
)

GROUPS = toy_groups()


def planned(groups, query_langs, doc_langs, negatives=None) -> PlannedBatch:
    negatives = negatives or tuple(() for _ in groups)
    return PlannedBatch(0, 0, "cross", tuple(groups), tuple(query_langs), tuple(doc_langs), tuple(negatives), 0)


def test_texts_follow_the_plan_with_prefixes_and_no_language_tags():
    batch = planned([1, 2], ["de", "zh"], ["en", "de"], [(), (0, 1)])
    texts = batch_texts(batch, GROUPS, "query: ", "passage: ")
    assert texts.queries == ["query: " + GROUPS[1].queries["de"], "query: " + GROUPS[2].queries["zh"]]
    assert texts.positives == ["passage: " + GROUPS[1].positives["en"], "passage: " + GROUPS[2].positives["de"]]
    assert texts.negatives == ["passage: " + t for t in GROUPS[2].negatives["de"]]


def test_false_negative_mask_finds_shared_answers():
    shared = "the answer sentence."
    groups = [
        ParallelGroup("a", {"en": "qa"}, {"en": shared}),
        ParallelGroup("b", {"en": "qb"}, {"en": shared}, {"en": ("other.",)}),  # same answer as a
        ParallelGroup("c", {"en": "qc"}, {"en": "c answer."}, {"en": (shared, "x.")}),  # negative = a's answer
    ]
    batch = planned([0, 1, 2], ["en"] * 3, ["en"] * 3, [(), (0,), (0, 1)])
    mask = false_negative_mask(batch, groups)  # candidates: 3 positives, "other.", shared, "x."
    assert mask.tolist() == [
        [False, True, False, False, True, False],
        [True, False, False, False, True, False],
        [False, False, False, False, False, False],
    ]


def test_chunked_encoding_equals_one_padded_batch(tiny_model):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model), device="cpu").eval()
    encoder = ChunkEncoder(model)
    texts = [g.positives["en"] for g in GROUPS[:5]] + ["a much longer text " * 6, "short"]
    with torch.no_grad():
        whole = encode(encoder, model, texts, torch.device("cpu"), chunk_size=0)
        chunked = encode(encoder, model, texts, torch.device("cpu"), chunk_size=2)
        reference = model.encode(texts, convert_to_tensor=True, normalize_embeddings=True)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.nn.functional.normalize(whole, dim=-1), reference, atol=1e-5, rtol=0)


def test_single_process_loss_and_gather_identity(tiny_model):
    from sentence_transformers import SentenceTransformer

    local = torch.randn(3, 4, requires_grad=True)
    assert gather_rows(local, [3], 0) is local
    model = SentenceTransformer(str(tiny_model), device="cpu").eval()
    batch = planned([0, 1, 2, 3], ["en", "de", "zh", "en"], ["de", "en", "en", "zh"], [(), (0,), (0, 1), ()])
    loss = global_batch_loss(ChunkEncoder(model), model, batch, GROUPS, LossSettings(temperature=0.05))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


PAPER_CONFIGS = ["paper-xquad-me5", "paper-mlqa-me5", "paper-xquad-gemma", "paper-mlqa-gemma"]


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_configs_follow_the_recipe(name):
    """configs/paper-*.yaml: one hard negative, batch 100, AdamW 3e-5 / 0.01, same steps for every sampler."""
    from helpers.training_toys import ROOT
    from hybridbatch.experiments.grid import expand, load_compare_config

    config = load_compare_config(ROOT / "configs" / "compare" / f"{name}.yaml")
    assert config.include_zero_shot and config.samplers == ["mono", "cross", "hybrid"]
    assert config.in_domain != config.zero_shot_benchmark
    trained = [run.train for run in expand(config) if run.train is not None]
    assert len(trained) == 3 * len(config.seeds)
    assert len({t.steps for t in trained}) == 1  # the same number of steps for every sampler
    for t in trained:
        assert (t.data.hard_negatives, t.batch_size, t.lr, t.weight_decay) == (1, 100, 3e-5, 0.01)
        assert t.max_seq_length == 128
    header = (ROOT / "configs" / "compare" / f"{name}.yaml").read_text(encoding="utf-8").split("\nbase_models")[0]
    assert "paper" in header and "Cost" in header  # the header states the differences and the budget
    if "gemma" in name:  # the me5 recipe exactly: only the base model (and the output folder) differ
        sibling = load_compare_config(ROOT / "configs" / "compare" / f"{name.replace('gemma', 'me5')}.yaml")
        assert config.base_models == ["embeddinggemma-300m"] and sibling.base_models == ["me5-small"]
        differs = {k for k in type(config).model_fields if getattr(config, k) != getattr(sibling, k)}
        assert differs == {"base_models", "output_dir"}
