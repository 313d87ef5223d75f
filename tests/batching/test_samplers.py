"""Samplers on toy groups whose texts reveal language and group ("q|de|g17", "p|en|g17", "n|en|g17|2")."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from hybridbatch.batching import (
    SAMPLERS,
    PlannedBatch,
    SamplerName,
    make_sampler,
    mix_summary,
    shard,
    write_batch_log,
)
from hybridbatch.data.parallel import ParallelGroup

LANGS = ["en", "de", "es", "zh"]


def toy_groups(n: int = 40, langs=LANGS, n_neg: int = 3) -> list[ParallelGroup]:
    return [
        ParallelGroup(
            f"g{g}",
            {lang: f"q|{lang}|g{g}" for lang in langs},
            {lang: f"p|{lang}|g{g}" for lang in langs},
            {lang: tuple(f"n|{lang}|g{g}|{k}" for k in range(n_neg)) for lang in langs},
        )
        for g in range(n)
    ]


GROUPS = toy_groups()


def sampler(name: str, **kwargs):
    args = {"groups": GROUPS, "languages": LANGS, "batch_size": 8, "seed": 13} | kwargs
    return make_sampler(name, **args)


def texts(batch: PlannedBatch, groups=GROUPS):
    """(query text, passage text) per example, as the trainer would look them up."""
    return [(groups[g].queries[q], groups[g].positives[d])
            for g, q, d in zip(batch.groups, batch.query_langs, batch.doc_langs, strict=True)]


def first_batches(s, n: int) -> list[PlannedBatch]:
    return list(s.iter_batches(total_steps=n))


# --------------------------------------------------------------------------------------------- strategies
def test_mono_batches_are_single_language_and_uniform():
    batches = first_batches(sampler("mono"), 2000)
    langs = Counter()
    for b in batches:
        assert b.type == "mono"
        assert len(set(b.query_langs) | set(b.doc_langs)) == 1
        for q, p in texts(b):
            assert q.split("|")[1] == p.split("|")[1] == b.query_langs[0]
            assert q.split("|")[2] == p.split("|")[2]  # same group
        langs[b.query_langs[0]] += 1
    n, p = len(batches), 1 / len(LANGS)
    for lang in LANGS:
        assert abs(langs[lang] - n * p) < 4 * math.sqrt(n * p * (1 - p)), langs


def test_size_weighting_follows_language_sizes():
    s = sampler("mono", language_weighting="size", language_sizes={"en": 300, "de": 100, "es": 100, "zh": 100})
    langs = Counter(b.query_langs[0] for b in first_batches(s, 2000))
    assert abs(langs["en"] / 2000 - 0.5) < 4 * math.sqrt(0.25 / 2000)
    # without sizes, fully parallel data counts the same for every language: uniform
    assert list(sampler("mono", language_weighting="size").language_probs) == [0.25] * 4


def test_cross_query_and_passage_languages_differ_uniformly():
    pairs = Counter()
    for b in first_batches(sampler("cross"), 500):
        assert b.type == "cross"
        assert all(q != d for q, d in zip(b.query_langs, b.doc_langs, strict=True))
        pairs.update(zip(b.query_langs, b.doc_langs, strict=True))
    assert len(pairs) == 12  # every ordered pair of 4 languages
    n, p = sum(pairs.values()), 1 / 12
    assert all(abs(c - n * p) < 4 * math.sqrt(n * p * (1 - p)) for c in pairs.values()), pairs


@pytest.mark.parametrize("alpha", [0.2, 0.5])
def test_hybrid_mono_share_is_alpha(alpha):
    batches = first_batches(sampler("hybrid", alpha=alpha), 1500)
    n_mono = sum(b.type == "mono" for b in batches)
    assert {b.type for b in batches} == {"mono", "cross"}
    n = len(batches)
    assert abs(n_mono - alpha * n) < 4 * math.sqrt(n * alpha * (1 - alpha))
    for b in batches:
        if b.type == "mono":
            assert len(set(b.query_langs + b.doc_langs)) == 1
        else:
            assert all(q != d for q, d in zip(b.query_langs, b.doc_langs, strict=True))


@pytest.mark.parametrize(("alpha", "kind"), [(0.0, "cross"), (1.0, "mono")])
def test_hybrid_extremes(alpha, kind):
    assert {b.type for b in first_batches(sampler("hybrid", alpha=alpha), 300)} == {kind}


def test_mixed_same_per_example_language():
    mixed = 0
    seen = Counter()
    for b in first_batches(sampler("mixed-same"), 300):
        assert b.type == "mixed-same"
        assert b.query_langs == b.doc_langs
        mixed += len(set(b.query_langs)) > 1
        seen.update(b.query_langs)
    assert mixed > 250 and set(seen) == set(LANGS)


def test_en_en_all_english_and_needs_english():
    for b in first_batches(sampler("en-en"), 50):
        assert b.type == "en-en" and set(b.query_langs) == set(b.doc_langs) == {"en"}
    with pytest.raises(ValueError, match="'en'"):
        sampler("en-en", languages=["de", "es"])


# --------------------------------------------------------------------------------------------- order
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_each_group_once_per_epoch_and_never_twice_in_a_batch(name):
    s = sampler(name, batch_size=6)  # 40 groups -> 6 full batches, 4 groups dropped per epoch
    assert s.steps_per_epoch == 6
    for epoch in range(3):
        used = []
        for step in range(s.steps_per_epoch):
            b = s.batch_at(epoch, step)
            assert len(set(b.groups)) == len(b.groups) == 6
            used.extend(b.groups)
        assert len(used) == len(set(used)) == 36
    assert s.batch_at(0, 0).groups != s.batch_at(1, 0).groups  # reshuffled per epoch


def test_same_seed_same_batches_different_seed_different():
    a = first_batches(sampler("hybrid"), 30)
    assert a == first_batches(sampler("hybrid"), 30)
    assert a != first_batches(sampler("hybrid", seed=14), 30)


def test_resume_mid_epoch_continues_the_sequence():
    s = sampler("hybrid", hard_negatives=2)
    full = first_batches(s, 23)  # 5 steps per epoch: crosses 4 epoch boundaries
    fresh = sampler("hybrid", hard_negatives=2)
    epoch, step = fresh.position(12)
    assert (epoch, step) == (2, 2)
    assert fresh.batch_at(epoch, step) == full[12]
    assert list(fresh.iter_batches(epoch, step, total_steps=23)) == full[12:]
    assert [b.global_step for b in full] == list(range(23))
    assert [(b.epoch, b.step) for b in full[4:6]] == [(0, 4), (1, 0)]


def test_group_order_is_shared_across_strategies():
    orders = {name: [sampler(name).batch_at(1, k).groups for k in range(5)] for name in SAMPLERS}
    assert len({tuple(v) for v in orders.values()}) == 1


# --------------------------------------------------------------------------------------------- negatives
def test_hard_negatives_are_in_the_passage_language_of_the_own_group():
    s = sampler("cross", hard_negatives=2)
    for b in first_batches(s, 20):
        for g, d, negs in zip(b.groups, b.doc_langs, b.negatives, strict=True):
            assert len(negs) == 2 and len(set(negs)) == 2
            for k in negs:
                _, lang, gid, _ = GROUPS[g].negatives[d][k].split("|")
                assert (lang, gid) == (d, GROUPS[g].id)
    assert all(negs == () for negs in sampler("cross").batch_at(0, 0).negatives)
    few = make_sampler("mono", toy_groups(8, n_neg=1), LANGS, 4, 0, hard_negatives=3)
    assert all(len(negs) == 1 for negs in few.batch_at(0, 0).negatives)


def test_hard_negatives_do_not_change_languages():
    plain, with_neg = first_batches(sampler("hybrid"), 20), first_batches(sampler("hybrid", hard_negatives=2), 20)
    assert [(b.type, b.query_langs, b.doc_langs) for b in plain] == \
        [(b.type, b.query_langs, b.doc_langs) for b in with_neg]


# --------------------------------------------------------------------------------------------- distributed
def test_shards_reassemble_the_global_batch():
    for b in first_batches(sampler("hybrid", hard_negatives=1), 10):
        parts = [shard(b, rank, 2) for rank in range(2)]
        assert all(p.type == b.type and p.step == b.step and p.global_step == b.global_step for p in parts)
        assert parts[0].groups + parts[1].groups == b.groups
        assert parts[0].query_langs + parts[1].query_langs == b.query_langs
        assert parts[0].doc_langs + parts[1].doc_langs == b.doc_langs
        assert parts[0].negatives + parts[1].negatives == b.negatives
        if b.type == "mono":
            assert parts[0].query_langs[0] == parts[1].query_langs[0]
    with pytest.raises(ValueError, match="divisible"):
        shard(b, 0, 3)
    with pytest.raises(ValueError, match="rank"):
        shard(b, 2, 2)


# --------------------------------------------------------------------------------------------- log
def test_batch_log_lines(tmp_path):
    s = sampler("hybrid")
    summary = write_batch_log(tmp_path / "batches.jsonl", s, GROUPS, total_steps=12)
    lines = [json.loads(line) for line in (tmp_path / "batches.jsonl").read_text().splitlines()]
    assert len(lines) == 12 and summary["batches"] == 12
    for i, line in enumerate(lines):
        assert {"step", "type", "query_langs", "doc_langs", "groups"} <= set(line)
        assert line["step"] == i
        assert len(line["query_langs"]) == len(line["doc_langs"]) == len(line["groups"]) == 8
        assert all(isinstance(g, str) and g.startswith("g") for g in line["groups"])
    assert sum(summary["types"].values()) == 12
    assert mix_summary(first_batches(s, 12)) == summary


# --------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "hybrid", "alpha": 1.5}, "alpha"),
    ({"name": "mono", "alpha": -0.1}, "alpha"),
    ({"name": "mono", "batch_size": 0}, "batch_size"),
    ({"name": "mono", "batch_size": 41}, "larger than the number of groups"),
    ({"name": "cross", "languages": ["en"]}, "at least 2 languages"),
    ({"name": "hybrid", "languages": ["en"]}, "at least 2 languages"),
    ({"name": "shuffled"}, "unknown sampler"),
    ({"name": "mono", "languages": ["en", "fr"]}, "'fr' has no data"),
    ({"name": "mono", "languages": ["en", "xx"]}, "unknown language code"),
    ({"name": "mono", "languages": ["en", "en"]}, "twice"),
    ({"name": "mono", "language_weighting": "big"}, "language_weighting"),
    ({"name": "mono", "language_weighting": "size", "language_sizes": {"en": 3}}, "no data"),
    ({"name": "mono", "hard_negatives": -1}, "hard_negatives"),
    ({"name": "mono", "seed": -1}, "seed"),
])
def test_invalid_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sampler(**kwargs)


def test_incomplete_groups_are_refused():
    groups = toy_groups(10) + [ParallelGroup("half", {"en": "q|en|half"}, {"en": "p|en|half"})]
    with pytest.raises(ValueError, match="restrict_languages"):
        make_sampler("mono", groups, LANGS, 4, 0)


def test_out_of_range_positions():
    s = sampler("mono")
    with pytest.raises(ValueError, match="outside the epoch"):
        s.batch_at(0, s.steps_per_epoch)
    with pytest.raises(ValueError, match="epoch"):
        s.batch_at(-1, 0)


def test_enum_names_select_the_same_classes():
    assert {n.value for n in SamplerName} == set(SAMPLERS)
    assert type(make_sampler(SamplerName.MIXED_SAME, GROUPS, LANGS, 8, 0)).name == "mixed-same"
