"""`group_languages="available"`: samplers over partially parallel groups (MLQA-R: each question in 2-4 of 7
languages). Toy groups whose texts reveal language and group; every draw must stay within its group's languages."""

from __future__ import annotations

from collections import Counter

import pytest

from hybridbatch.batching import make_sampler
from hybridbatch.data.parallel import ParallelGroup, restrict_languages

LANGS = ["en", "de", "es", "zh"]


def partial_groups(n: int = 60) -> list[ParallelGroup]:
    """Every group has en; group g also has de if g % 2, es if g % 3, zh if g % 5 == 0 (some have only en)."""
    out = []
    for g in range(n):
        langs = ["en"] + [lang for lang, keep in (("de", g % 2), ("es", g % 3), ("zh", g % 5 == 0)) if keep]
        out.append(ParallelGroup(f"g{g}", {lang: f"q|{lang}|g{g}" for lang in langs},
                                 {lang: f"p|{lang}|g{g}" for lang in langs},
                                 {lang: tuple(f"n|{lang}|g{g}|{k}" for k in range(2)) for lang in langs}))
    return out


KEPT, DROPPED = restrict_languages(partial_groups(), LANGS, at_least=2)


def make(name, batch_size=6, seed=3, **kwargs):
    return make_sampler(name, KEPT, LANGS, batch_size, seed, group_languages="available", hard_negatives=1,
                        **kwargs)


def test_restrict_keeps_groups_with_two_languages_cut_to_those():
    # only groups with en alone are dropped: g % 2 == 0, g % 3 == 0, g % 5 != 0 -> g in {6, 12, 18, 24, 36, 42, 48, 54}
    assert DROPPED == 8 and len(KEPT) == 52
    assert all(len(g.languages) >= 2 and set(g.queries) == set(g.positives) == g.languages for g in KEPT)
    full, dropped_full = restrict_languages(partial_groups(), LANGS)  # all four: g odd, not % 3, % 5 == 0
    assert [g.id for g in full] == ["g5", "g25", "g35", "g55"] and dropped_full == 56


def examples(batch):
    return list(zip(batch.groups, batch.query_langs, batch.doc_langs, strict=True))


@pytest.mark.parametrize("name", ["mono", "cross", "hybrid", "mixed-same", "en-en"])
def test_every_draw_stays_within_its_groups_languages_and_is_pure(name):
    plan = make(name)
    batches = list(plan.iter_batches(total_steps=40))
    for batch in batches:
        assert len(set(batch.groups)) == len(batch.groups) == 6  # a group at most once per batch
        for g, q, d in examples(batch):
            assert {q, d} <= KEPT[g].languages
        for g, d, negs in zip(batch.groups, batch.doc_langs, batch.negatives, strict=True):
            assert len(negs) == 1 and negs[0] < len(KEPT[g].negatives[d])  # the hard negative in the passage language
    again = make(name)
    assert [again.batch_at(*plan.position(b.global_step)) for b in batches[::7]] == batches[::7]


def test_mono_batches_are_one_language_drawn_from_groups_having_it():
    seen = Counter()
    for batch in make("mono").iter_batches(total_steps=200):
        (lang,) = set(batch.query_langs) | set(batch.doc_langs)
        seen[lang] += 1
    assert set(seen) == set(LANGS) and min(seen.values()) > 25  # uniform over languages: ~50 each


def test_cross_pairs_differ_and_cover_each_groups_pairs():
    pairs = Counter()
    for batch in make("cross").iter_batches(total_steps=1000):
        for g, q, d in examples(batch):
            assert q != d
            pairs[(KEPT[g].id, q, d)] += 1
    g5 = [key for key in pairs if key[0] == "g5"]  # 4 languages: all 12 ordered pairs drawn
    assert len(g5) == 12
    g0 = {key[1:] for key in pairs if key[0] == "g0"}  # en + zh only
    assert g0 == {("en", "zh"), ("zh", "en")}


def test_hybrid_mixes_mono_and_cross_batches_by_alpha():
    kinds = Counter(b.type for b in make("hybrid", alpha=0.5).iter_batches(total_steps=200))
    assert set(kinds) == {"mono", "cross"} and 70 < kinds["mono"] < 130
    assert {b.type for b in make("hybrid", alpha=0.0).iter_batches(total_steps=20)} == {"cross"}


def test_mono_needs_batch_size_groups_in_each_language():
    with pytest.raises(ValueError, match="mono batch in 'zh' needs 13 groups having it; there are 12"):
        make("mono", batch_size=13)
    make("cross", batch_size=13)  # cross batches take any group with two languages
    with pytest.raises(ValueError, match="fewer than 2 of the languages"):
        make_sampler("cross", partial_groups(), LANGS, 6, 0, group_languages="available")
    with pytest.raises(ValueError, match="unknown group_languages"):
        make_sampler("cross", KEPT, LANGS, 6, 0, group_languages="some")


def test_all_mode_refuses_partial_groups_as_before():
    with pytest.raises(ValueError, match="lack a query or positive"):
        make_sampler("cross", KEPT, LANGS, 6, 0)
