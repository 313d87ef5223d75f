"""The plug-in's batches, without a trainer: same plan as hybridbatch, same guarantees, dealt right."""

from __future__ import annotations

import json

import datasets
import pytest
from accelerate.data_loader import BatchSamplerShard

from helpers.st_toys import LANGS, make_groups
from hybridbatch.batching import make_sampler, shard
from hybridbatch.data.parallel import restrict_languages
from hybridbatch.integrations.sentence_transformers import HybridBatches, groups_from_columns, to_groups


def plugin(name: str = "hybrid", groups=None, world: int = 1, **kwargs) -> HybridBatches:
    args = {"batch_size": 8, "seed": 5, "epochs": 3} | kwargs
    groups = make_groups() if groups is None else groups
    return HybridBatches(groups, LANGS, name, world_size=world, **args)


def received(hb: HybridBatches, epoch: int, world: int = 1, rank: int = 0) -> list[list[dict]]:
    """Rows per batch as process `rank` of `world` gets them: the sampler dealt by accelerate's shard."""
    sampler = hb.batch_sampler(hb.dataset, batch_size=hb.plan.batch_size // world)
    sampler.set_epoch(epoch)
    dealt = BatchSamplerShard(sampler, num_processes=world, process_index=rank) if world > 1 else sampler
    return [hb.dataset.__getitems__(slots) for slots in dealt]


def expected(batch, groups) -> list[tuple[str, str]]:
    return [(groups[g].queries[q], groups[g].positives[d])
            for g, q, d in zip(batch.groups, batch.query_langs, batch.doc_langs, strict=True)]


@pytest.mark.parametrize("name", ["mono", "cross", "hybrid", "mixed-same", "en-en"])
def test_batches_are_hybridbatch_plan(name):
    hb = plugin(name, alpha=0.3)
    reference = make_sampler(name, hb.groups, LANGS, 8, 5, alpha=0.3)
    for epoch in range(3):
        rows = received(hb, epoch)
        assert len(rows) == reference.steps_per_epoch
        for step, batch in enumerate(rows):
            planned = reference.batch_at(epoch, step)
            assert hb.plan.batch_at(epoch, step) == planned
            assert [(r["anchor"], r["positive"]) for r in batch] == expected(planned, hb.groups)


def parse(rows: list[dict]) -> list[tuple[str, str, str]]:
    """(group, query language, passage language) from the self-describing texts."""
    out = []
    for row in rows:
        _, q_lang, q_group = row["anchor"].split("|")
        _, d_lang, d_group = row["positive"].split("|")
        assert q_group == d_group
        out.append((q_group, q_lang, d_lang))
    return out


def test_composition_guarantees():
    for name in ("mono", "cross", "hybrid"):
        for epoch in range(3):
            seen = []
            for batch in map(parse, received(plugin(name), epoch)):
                groups = [g for g, _, _ in batch]
                assert len(set(groups)) == len(groups), "a group twice in a batch"
                seen += groups
                mono = {q for _, q, d in batch if q == d}
                if name == "mono" or (name == "hybrid" and mono):
                    assert len({(q, d) for _, q, d in batch}) == 1 and len(mono) == 1
                else:
                    assert all(q != d for _, q, d in batch)
            assert len(set(seen)) == len(seen), "a group twice in an epoch"


def test_len_is_exact_and_set_epoch_is_deterministic():
    hb = plugin("hybrid", groups=make_groups(27))  # 27 // 8 = 3 steps, 3 groups left out per epoch
    sampler = hb.batch_sampler(hb.dataset, batch_size=8)
    assert len(sampler) == len(list(sampler)) == 3
    runs = {}
    for epoch in (0, 1, 2, 1, 0):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert runs.setdefault(epoch, batches) == batches
    assert runs[0] != runs[1] != runs[2]
    assert received(hb, 1) == received(plugin("hybrid", groups=make_groups(27)), 1)  # a fresh plug-in agrees
    sampler.set_epoch(3)
    with pytest.raises(ValueError, match="past the 3 planned"):
        list(sampler)


@pytest.mark.parametrize("name", ["hybrid", "mixed-same"])
def test_two_processes_get_shards_of_the_same_planned_batch(name):
    hb = plugin(name, world=2)
    per_rank = [received(hb, 1, world=2, rank=r) for r in range(2)]
    assert len(hb.batch_sampler(hb.dataset, batch_size=4)) == 2 * hb.steps_per_epoch
    assert [len(rows) for rows in per_rank] == [hb.steps_per_epoch] * 2  # each rank: every step once
    for step in range(hb.steps_per_epoch):
        planned = hb.plan.batch_at(1, step)
        for rank in range(2):
            assert [(r["anchor"], r["positive"]) for r in per_rank[rank][step]] == \
                expected(shard(planned, rank, 2), hb.groups)


def test_rows_hold_no_language_and_pad_negatives_outside_the_batch():
    hb = plugin("cross", hard_negatives=2)
    assert hb.columns == ["anchor", "positive", "negative_1", "negative_2"]
    assert hb.dataset.column_names == ["slot"]  # the Arrow table holds slot numbers only
    for epoch in range(3):
        for step, rows in enumerate(received(hb, epoch)):
            planned = hb.plan.batch_at(epoch, step)
            batch_ids = {hb.groups[g].id for g in planned.groups}
            for row, gi, d_lang, neg in zip(rows, planned.groups, planned.doc_langs, planned.negatives,
                                            strict=True):
                assert list(row) == hb.columns and all(isinstance(v, str) for v in row.values())
                group = hb.groups[gi]
                own = [group.negatives[d_lang][k] for k in neg]
                assert [row["negative_1"], row["negative_2"]][:len(own)] == own
                for pad in [row["negative_1"], row["negative_2"]][len(own):]:
                    kind, lang, gid = pad.split("|")
                    assert (kind, lang) == ("p", d_lang) and gid not in batch_ids
    assert received(hb, 2) == received(plugin("cross", hard_negatives=2), 2)


def test_batch_size_must_match_the_processes_and_other_datasets_batch_plainly():
    hb = plugin("hybrid", world=2)
    with pytest.raises(ValueError, match="per_device_train_batch_size=4"):
        hb.batch_sampler(hb.dataset, batch_size=8)
    other = datasets.Dataset.from_dict({"anchor": ["a", "b", "c"], "positive": ["x", "y", "z"]})
    assert list(hb.batch_sampler(other, batch_size=2, drop_last=False)) == [[0, 1], [2]]


def test_inputs_jsonl_columns_and_languages(toy_jsonl):
    groups = make_groups()
    assert to_groups(toy_jsonl) == groups
    columns = {"id": [g.id for g in groups]}
    for lang in LANGS:
        columns[f"query_{lang}"] = [g.queries[lang] for g in groups]
        columns[f"positive_{lang}"] = [g.positives[lang] for g in groups]
        columns[f"negatives_{lang}"] = [list(g.negatives.get(lang, ())) for g in groups]
    columns["query_de"][0] = None  # g00 lacks a German query: dropped by the plug-in
    table = datasets.Dataset.from_dict(columns)
    assert groups_from_columns(table)[1:] == groups[1:]
    hb = HybridBatches(table, LANGS, "mono", batch_size=4, max_steps=12)
    assert hb.n_dropped == 1 and [g.id for g in hb.groups] == [g.id for g in groups[1:]]
    assert hb.epochs == 3 and len(hb.dataset) == 3 * 5 * 4  # whole epochs of 23 // 4 = 5 steps
    assert hb.plan.batch_at(0, 0) == make_sampler("mono", restrict_languages(groups[1:], LANGS)[0], LANGS, 4,
                                                  0).batch_at(0, 0)
    with pytest.raises(ValueError, match="unexpected column 'positives_en'"):
        groups_from_columns(datasets.Dataset.from_dict({"positives_en": ["x"]}))


def test_prompts_and_batch_log(tmp_path):
    hb = plugin("hybrid", hard_negatives=1)
    assert hb.prompts("query: ", "passage: ") == {"anchor": "query: ", "positive": "passage: ",
                                                  "negative_1": "passage: "}
    assert hb.prompts() == {}
    summary = hb.write_batch_log(tmp_path / "batches.jsonl", total_steps=5)
    lines = [json.loads(line) for line in (tmp_path / "batches.jsonl").read_text().splitlines()]
    assert summary["batches"] == 5 and [line["step"] for line in lines] == list(range(5))
    assert lines[4] == hb.plan.batch_at(*hb.plan.position(4)).to_log(hb.groups)


def test_training_length_sizes_the_plan():
    hb = plugin("hybrid", epochs=None, max_steps=7)  # 24 // 8 = 3 steps per epoch -> 3 epochs
    assert (hb.epochs, hb.total_steps, len(hb.dataset)) == (3, 9, 9 * 8)
    assert [hb.batches_consumed(s) for s in (1, 3, 7, 20)] == [1, 3, 7, 9]
    assert [hb.batches_consumed(s, grad_accum=2) for s in (1, 2, 3)] == [2, 3, 5]  # an epoch ends a step
    with pytest.raises(ValueError, match="not both"):
        plugin("hybrid", max_steps=3)
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        plugin("hybrid", epochs=None, max_steps=0)
