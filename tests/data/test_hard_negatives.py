"""Hard negatives on the real XQuAD-R train half: one per example, a sentence of the example's own paragraph
in the example's passage language, seen by the loss, and handled by `mask_same_group`.

Needs the LAReQA files ($HYBRIDBATCH_LAREQA_DIR or the cache); skipped with that reason when absent.
"""

from __future__ import annotations

import pytest
import torch

from hybridbatch.batching.plan import PlannedBatch
from hybridbatch.data.lareqa import find_data_dir, load_lareqa_articles, split_articles
from hybridbatch.training import step
from hybridbatch.training.config import config_from_dict
from hybridbatch.training.step import LossSettings, batch_texts, false_negative_mask, global_batch_loss
from hybridbatch.training.training_data import build_sampler, prepare_data

LANGS = ["de", "th"]  # th has the most single-sentence answers: paragraphs without another sentence


def _data_dir():
    try:
        return find_data_dir()
    except FileNotFoundError:
        return None


pytestmark = pytest.mark.skipif(_data_dir() is None, reason="XQuAD-R files not found ($HYBRIDBATCH_LAREQA_DIR)")


@pytest.fixture(scope="module")
def real():
    config = config_from_dict({
        "model": "tiny", "output_dir": "unused", "batch_size": 4, "steps": 40, "seed": 0,
        "data": {"source": "xquad-r:train", "languages": LANGS, "hard_negatives": 1},
        "sampler": {"name": "hybrid", "alpha": 0.5}, "mask_same_group": True,
    })
    data = prepare_data(config)
    sampler = build_sampler(config, data)
    # (lang, question id) -> (paragraph sentences, answer index), read straight from the files
    where = {}
    for lang, articles in split_articles(load_lareqa_articles("xquad-r"), "train").items():
        for article in articles:
            for paragraph in article.paragraphs:
                for question in paragraph.questions:
                    where[lang, question.id] = (paragraph.sentences, question.answer_sentence)
    return data, sampler, where


def _has_other_sentence(sentences, answer: int) -> bool:
    return any(i != answer and s.strip() and s != sentences[answer] for i, s in enumerate(sentences))


def test_one_hard_negative_per_example_from_its_paragraph_in_its_passage_language(real):
    data, sampler, where = real
    types, with_negative, without = set(), 0, 0
    for batch in sampler.iter_batches(total_steps=40):
        types.add(batch.type)
        assert batch.to_log(data.train)["negatives"] == [list(n) for n in batch.negatives]  # batches.jsonl shows them
        texts = batch_texts(batch, data.train)
        assert len(texts.negatives) == sum(len(n) for n in batch.negatives)
        flat = iter(texts.negatives)
        for gi, d_lang, neg in zip(batch.groups, batch.doc_langs, batch.negatives, strict=True):
            group = data.train[gi]
            sentences, answer = where[d_lang, group.id]
            assert group.positives[d_lang] == sentences[answer]
            if not _has_other_sentence(sentences, answer):
                assert neg == ()  # a one-sentence paragraph: no hard negative exists
                without += 1
                continue
            assert len(neg) == 1
            negative = next(flat)
            assert negative in sentences and negative != sentences[answer]  # same paragraph, same language
            other_lang = next(lang for lang in LANGS if lang != d_lang)
            assert negative not in where[other_lang, group.id][0]  # not the other language's paragraph
            with_negative += 1
    assert types == {"mono", "cross"}  # both kinds of batch were checked
    assert with_negative >= 150 and without < with_negative / 10


def test_the_loss_sees_the_hard_negatives(real, monkeypatch):
    """global_batch_loss scores each query against B positives + B hard negatives."""
    data, sampler, _ = real
    batch = next(b for b in sampler.iter_batches(total_steps=40) if all(len(n) == 1 for n in b.negatives))
    seen = {}

    def spy(queries, docs, target, temperature, mask, symmetric):
        seen.update(queries=queries.shape, docs=docs.shape, mask=None if mask is None else mask.shape)
        return docs.sum() * 0

    class FakeModel:
        def preprocess(self, texts):
            ids = torch.tensor([[hash(t) % 1000] for t in texts], dtype=torch.float32)
            return {"input_ids": ids, "attention_mask": torch.ones(len(texts), 1, dtype=torch.long)}

    def encoder(chunks):
        return [torch.cat([c["input_ids"], torch.ones_like(c["input_ids"])], dim=1) for c in chunks]

    monkeypatch.setattr(step, "info_nce", spy)
    global_batch_loss(encoder, FakeModel(), batch, data.train, LossSettings(mask_false_negatives=True))
    assert seen == {"queries": (4, 2), "docs": (8, 2), "mask": (4, 8)}


def test_mask_same_group_masks_a_hard_negative_that_answers_another_query(real):
    """Two questions of one paragraph: one's hard negative is the other's answer sentence."""
    data, _, where = real
    lang = "de"
    by_paragraph = {}
    for gi, group in enumerate(data.train):
        sentences, answer = where[lang, group.id]
        by_paragraph.setdefault(sentences, []).append((gi, answer))
    g1, g2 = next((a, b) for items in by_paragraph.values() for a in items for b in items if a[1] != b[1])
    sentences = where[lang, data.train[g1[0]].id][0]
    k = data.train[g1[0]].negatives[lang].index(sentences[g2[1]])  # g1's negative = g2's answer
    batch = PlannedBatch(0, 0, "mono", (g1[0], g2[0]), (lang, lang), (lang, lang), ((k,), ()), 0)
    mask = false_negative_mask(batch, data.train)  # candidates: 2 positives, g1's hard negative
    assert mask.tolist() == [[False, False, False], [False, False, True]]


def test_paper_config_batches_carry_a_hard_negative_per_example():
    """configs/compare/paper-xquad-me5.yaml's real plan: batch 100, ~100 hard negatives, every step of every sampler."""
    from pathlib import Path

    from hybridbatch.experiments.grid import expand, load_compare_config

    root = Path(__file__).resolve().parents[2]
    grid = load_compare_config(root / "configs" / "compare" / "paper-xquad-me5.yaml")
    runs = [run for run in expand(grid) if run.train is not None and run.seed == 0]
    data = prepare_data(runs[0].train)  # the same data for every run of the grid
    for run in runs:
        sampler = build_sampler(run.train, data)
        for batch in sampler.iter_batches(total_steps=run.train.steps):
            n_neg = sum(len(n) for n in batch.negatives)
            assert len(batch) == 100 and 90 <= n_neg <= 100
