"""Paired tests against cases with known answers; loading and aligning per-query files."""

import gzip
import itertools
import math

import numpy as np
import pytest

from hybridbatch.experiments.significance import (
    align,
    collapse_pairs,
    combine_seeds,
    compare_systems,
    holm,
    load_per_query,
    paired_bootstrap,
    paired_randomization,
    stratum_of,
)

TESTS = [paired_bootstrap, paired_randomization]


@pytest.mark.parametrize("test", TESTS)
def test_identical_systems_are_not_different(test):
    a = np.random.default_rng(0).random(500)
    c = test(a, a.copy(), n_resamples=2000)
    assert c.diff == 0.0 and c.p_value == pytest.approx(1.0)
    assert c.ci[0] <= 0.0 <= c.ci[1]
    assert c.n == 500 and c.method in ("bootstrap", "randomization")


@pytest.mark.parametrize("test", TESTS)
@pytest.mark.parametrize("stratified", [False, True])
def test_constant_shift_is_significant_with_a_point_interval(test, stratified):
    rng = np.random.default_rng(1)
    b = rng.random(300)
    strata = rng.choice(["de", "en", "zh"], size=300) if stratified else None
    c = test(b + 0.1, b, n_resamples=5000, strata=strata)
    assert c.diff == pytest.approx(0.1)
    assert c.p_value < 0.001
    assert c.ci == pytest.approx((0.1, 0.1), abs=1e-6)


def _exact_sign_flip_p(d, weight):
    observed = abs(float(weight @ d))
    hits = sum(abs(float(weight @ (np.array(signs) * d))) >= observed - 1e-12
               for signs in itertools.product([1, -1], repeat=len(d)))
    return hits / 2 ** len(d)


@pytest.mark.parametrize("stratified", [False, True])
def test_randomization_approximates_the_exact_permutation_p_value(stratified):
    # 10 queries: all 2**10 sign patterns can be enumerated; values chosen so that many ties occur
    a = np.array([0.9, 0.5, 0.7, 0.3, 0.6, 0.8, 0.4, 0.55, 0.65, 0.2])
    b = np.array([0.6, 0.5, 0.4, 0.4, 0.5, 0.6, 0.5, 0.45, 0.35, 0.3])
    strata = np.array(["x"] * 3 + ["y"] * 7) if stratified else None
    sizes = {"x": 3, "y": 7}
    weight = (np.array([1 / (2 * sizes[s]) for s in strata]) if stratified else np.full(10, 0.1))
    exact = _exact_sign_flip_p(a - b, weight)
    assert 0.01 < exact < 0.5  # an informative case, neither trivial nor extreme
    n_resamples = 40000
    c = paired_randomization(a, b, n_resamples=n_resamples, seed=3, strata=strata)
    assert c.diff == pytest.approx(float(weight @ (a - b)))
    assert abs(c.p_value - exact) < 4 * math.sqrt(exact * (1 - exact) / n_resamples) + 2 / n_resamples


def test_stratified_statistic_is_the_macro_average():
    rng = np.random.default_rng(2)
    strata = np.array(["de"] * 10 + ["en"] * 100 + ["zh"] * 40)
    a, b = rng.random(150), rng.random(150)
    d = a - b
    macro = np.mean([d[strata == s].mean() for s in ("de", "en", "zh")])
    for test in TESTS:
        assert test(a, b, n_resamples=200, strata=strata).diff == pytest.approx(macro)
        assert test(a, b, n_resamples=200).diff == pytest.approx(d.mean())
    assert abs(macro - d.mean()) > 1e-3  # the two statistics really differ here


def test_bootstrap_resamples_within_strata():
    # each stratum's difference is constant: resampling inside strata cannot move the macro mean
    strata = np.array(["de"] * 5 + ["en"] * 50)
    d = np.where(strata == "de", 1.0, 0.0)
    c = paired_bootstrap(d, np.zeros(55), n_resamples=2000, strata=strata)
    assert c.diff == pytest.approx(0.5) and c.ci == pytest.approx((0.5, 0.5)) and c.strata == 2
    loose = paired_bootstrap(d, np.zeros(55), n_resamples=2000)  # unstratified: weight 5/55, and it varies
    assert loose.diff == pytest.approx(5 / 55) and loose.ci[1] - loose.ci[0] > 0.05


def test_bootstrap_spread_matches_the_standard_error():
    d = np.random.default_rng(4).normal(0.02, 0.3, size=400)
    c = paired_bootstrap(d, np.zeros_like(d), n_resamples=10000)
    se = d.std() / math.sqrt(len(d))  # the bootstrap standard error of a mean, exactly, as B -> inf
    assert (c.ci[1] - c.ci[0]) / (2 * 1.96) == pytest.approx(se, rel=0.05)


def test_same_seed_same_answer_and_reversal():
    rng = np.random.default_rng(5)
    a, b = rng.random(200), rng.random(200)
    for test in TESTS:
        assert test(a, b, seed=7, n_resamples=500) == test(a, b, seed=7, n_resamples=500)
        c = test(a, b, seed=7, n_resamples=500)
        r = c.reversed()
        assert r.diff == -c.diff and r.ci == (-c.ci[1], -c.ci[0]) and r.p_value == c.p_value


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, math.nan], [1.0, 2.0])


def test_ten_thousand_resamples_over_13k_queries_in_bounded_chunks():
    # the XQuAD-R size; speed is measured by benchmarks, here only that it runs and is sane
    rng = np.random.default_rng(6)
    a = rng.random(13090)
    b = a + rng.normal(0, 0.05, 13090)
    result = paired_randomization(a, b, n_resamples=10000, strata=np.repeat(np.arange(11), 1190))
    assert result.n == 13090 and 0.0 <= result.p_value <= 1.0
    assert result.ci[0] <= result.diff <= result.ci[1]


def test_holm_known_values():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5]) == [0.5]
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def _write(path, rows, measures=("map", "recall@1")):
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\t".join(["setting", "query", *measures]) + "\n")
        for row in rows:
            handle.write("\t".join(row) + "\n")


def test_load_and_align(tmp_path):
    (tmp_path / "a").mkdir()
    _write(tmp_path / "a" / "per_query.tsv.gz", [
        ("monolingual", "de:q1", "0.5", "1"), ("monolingual", "en:q1", "0.25", "0"),
        ("monolingual", "en:q2", "1", "1"), ("crosslingual", "de:q1>en", "0.1", "0"),
        ("crosslingual", "en:q1>de", "0.2", "0"), ("multilingual", "de:q1", "nan", "0")])
    _write(tmp_path / "b.tsv.gz", [
        ("monolingual", "de:q1", "0.4", "1"), ("monolingual", "en:q1", "0.5", "1"),
        ("crosslingual", "de:q1>en", "0.3", "1"), ("crosslingual", "en:q1>de", "0.2", "0"),
        ("multilingual", "de:q1", "0.1", "0")])
    pa, pb = load_per_query(tmp_path / "a"), load_per_query(tmp_path / "b.tsv.gz")
    assert pa["monolingual"]["en:q2"] == {"map": 1.0, "recall@1": 1.0}
    assert math.isnan(pa["multilingual"]["de:q1"]["map"])
    a, b, strata, ids = align(pa, pb, "monolingual", "map")
    assert ids == ["de:q1", "en:q1"] and list(strata) == ["de", "en"]
    assert a.tolist() == [0.5, 0.25] and b.tolist() == [0.4, 0.5]
    _, _, strata, ids = align(pa, pb, "crosslingual", "map")
    assert ids == ["de:q1>en", "en:q1>de"] and list(strata) == ["de-en", "en-de"]
    assert align(pa, pb, "multilingual", "map")[3] == []  # NaN on one side: dropped
    assert compare_systems(pa, pb, "multilingual") is None
    assert compare_systems(pa, pb, "monolingual", n_resamples=100).diff == pytest.approx((0.1 - 0.25) / 2)


def test_stratum_of_ids():
    assert stratum_of("monolingual", "zh:56be") == "zh"
    assert stratum_of("crosslingual", "pt-BR:q7>en") == "pt-BR-en"
    assert stratum_of("multilingual", "q7", lang_of=lambda q: "de") == "de"
    with pytest.raises(ValueError, match="lang_of"):
        stratum_of("monolingual", "q7")


def test_combine_seeds_means_per_query():
    s1 = {"monolingual": {"de:q1": {"map": 0.2}, "de:q2": {"map": 0.4}}}
    s2 = {"monolingual": {"de:q1": {"map": 0.4}}, "crosslingual": {}}
    assert combine_seeds([s1, s2]) == {"monolingual": {"de:q1": {"map": pytest.approx(0.3)}}}


def test_collapsing_cross_lingual_rows_keeps_the_pair_macro_average():
    # unbalanced: de:q2 has no zh target, and en has three queries
    ids = ["de:q1>en", "de:q1>zh", "de:q2>en", "en:q1>de", "en:q1>zh", "en:q2>de", "en:q3>de", "en:q3>zh"]
    rng = np.random.default_rng(8)
    a, b = rng.random(len(ids)), rng.random(len(ids))
    strata = np.array([stratum_of("crosslingual", q) for q in ids])
    pair_macro = np.mean([(a - b)[strata == s].mean() for s in sorted(set(strata))])
    qa, qb, langs, qids = collapse_pairs(a, b, ids)
    assert qids == ["de:q1", "de:q2", "en:q1", "en:q2", "en:q3"]
    assert list(langs) == ["de", "de", "en", "en", "en"]
    assert paired_bootstrap(qa, qb, n_resamples=100, strata=langs).diff == pytest.approx(pair_macro)
    ba, _, _, _ = collapse_pairs(a[:2], b[:2], ids[:2])  # one query, all its targets: its mean over them
    assert ba == pytest.approx([a[:2].mean()])


def test_compare_systems_cross_lingual_by_query_or_by_row():
    langs = ["de", "en", "zh"]
    rng = np.random.default_rng(9)
    ids = [f"{x}:q{i}>{y}" for x in langs for y in langs if x != y for i in range(50)]
    pa = {"crosslingual": {q: {"map": float(v)} for q, v in zip(ids, rng.random(len(ids)), strict=True)}}
    pb = {"crosslingual": {q: {"map": float(v)} for q, v in zip(ids, rng.random(len(ids)), strict=True)}}
    by_query = compare_systems(pa, pb, "crosslingual", n_resamples=500)
    by_row = compare_systems(pa, pb, "crosslingual", n_resamples=500, by_query=False)
    assert by_query.diff == pytest.approx(by_row.diff)
    assert by_query.n == 150 and by_query.strata == 3 and by_row.n == 300 and by_row.strata == 6


# --------------------------------------------------------------------------------------------- parallel groups
def _macro(d, strata):
    """The statistic from first principles: mean over strata of the stratum's mean difference."""
    return float(np.mean([d[strata == s].mean() for s in np.unique(strata)]))


def _balanced_case():
    """5 questions, each in 3 languages (one row per language, as in XQuAD-R): 15 rows, 5 groups."""
    rng = np.random.default_rng(11)
    groups = np.repeat(np.arange(5), 3)
    strata = np.tile(np.array(["de", "en", "zh"]), 5)
    question = rng.normal(0.03, 0.05, 5)[groups]  # a question's effect, shared by its translations
    a = 0.5 + question + rng.normal(0, 0.01, 15)
    return a, np.full(15, 0.5), strata, groups


@pytest.mark.parametrize("stratified", [False, True])
def test_group_randomization_matches_exact_enumeration_of_group_flips(stratified):
    a, b, strata, groups = _balanced_case()
    strata = strata if stratified else None
    d = a - b
    stat = (lambda x: _macro(x, strata)) if stratified else (lambda x: float(x.mean()))
    observed = stat(d)
    flips = [stat(np.array(signs)[groups] * d) for signs in itertools.product([1, -1], repeat=5)]
    exact = sum(abs(f) >= abs(observed) - 1e-12 for f in flips) / 2 ** 5  # all 32 flips of whole groups
    assert 1 / 32 < exact < 0.5  # an informative case
    n_resamples = 40000
    c = paired_randomization(a, b, n_resamples=n_resamples, seed=1, strata=strata, groups=groups)
    assert c.diff == pytest.approx(observed) and c.unit == "group" and c.units == 5 and c.n == 15
    assert abs(c.p_value - exact) < 4 * math.sqrt(exact * (1 - exact) / n_resamples) + 2 / n_resamples
    rows = paired_randomization(a, b, n_resamples=n_resamples, seed=1, strata=strata)  # flipping rows
    assert rows.p_value < exact / 2  # treating the 15 rows as independent overstates the evidence


def test_group_bootstrap_matches_exact_enumeration_of_all_resamples():
    # 4 groups of 3 translations: all 4**4 = 256 ordered resamples of groups, equally likely; on each the
    # macro statistic is recomputed from its rows (balanced, so every resample has 4 rows per language)
    a, b, strata, groups = _balanced_case()
    keep = groups < 4
    a, b, strata, groups = a[keep], b[keep], strata[keep], groups[keep]
    d = a - b
    exact = []
    for picks in itertools.product(range(4), repeat=4):
        rows = np.concatenate([np.flatnonzero(groups == g) for g in picks])
        exact.append(_macro(d[rows], strata[rows]))
    exact = np.array(exact)
    observed = _macro(d, strata)
    c = paired_bootstrap(a, b, n_resamples=100000, seed=2, strata=strata, groups=groups)
    assert c.diff == pytest.approx(observed) and c.units == 4
    assert c.se == pytest.approx(exact.std(), rel=0.02)  # the bootstrap distribution's spread
    spread = exact.max() - exact.min()
    exact_ci = np.percentile(exact, [2.5, 97.5])
    assert c.ci == pytest.approx(tuple(exact_ci), abs=0.03 * spread)
    exact_p = float(np.mean(np.abs(exact - observed) >= abs(observed) - 1e-12))
    assert c.p_value == pytest.approx(exact_p, abs=4 * math.sqrt(exact_p * (1 - exact_p) / 100000) + 1e-4)


def test_group_bootstrap_mean_matches_the_exact_expectation_when_unbalanced():
    # groups of different sizes, one spanning strata: the resampled statistic is each row's fixed weight
    # times its difference, summed over the drawn groups; its exact mean over all G**G resamples is the
    # observed statistic, its exact variance G x (population variance of the group contributions)
    rng = np.random.default_rng(12)
    groups = np.array([0, 0, 1, 2, 2, 2, 3, 4, 4])
    strata = np.array(["de", "en", "de", "de", "en", "zh", "zh", "en", "zh"])
    a, b = rng.random(9), rng.random(9)
    weight = np.array([1 / (3 * np.sum(strata == s)) for s in strata])
    contribution = np.bincount(groups, weights=weight * (a - b))
    exact = [contribution[list(p)].sum() for p in itertools.product(range(5), repeat=5)]
    c = paired_bootstrap(a, b, n_resamples=50000, seed=3, strata=strata, groups=groups)
    assert c.diff == pytest.approx(_macro(a - b, strata))
    assert np.mean(exact) == pytest.approx(c.diff)
    assert c.se == pytest.approx(float(np.std(exact)), rel=0.03)
    assert c.se == pytest.approx(math.sqrt(5 * contribution.var()), rel=0.03)


def test_perfectly_correlated_translations_are_one_unit():
    # 30 questions x 11 languages; a question's difference is identical in every language. Per query the
    # 330 rows look independent and the difference is clearly significant; per group there are only 30
    # independent values and it is not.
    langs = [f"l{i}" for i in range(11)]
    z = np.random.default_rng(13).normal(size=30)
    z = (z - z.mean()) / z.std()
    per_question = 0.01 + 0.05 * z  # mean 0.01, sd 0.05: z = 0.01 / (0.05 / sqrt(30)) ~ 1.1
    groups = np.repeat(np.arange(30), 11)
    strata = np.tile(langs, 30)
    a, b = 0.5 + per_question[groups], np.full(330, 0.5)
    for test in TESTS:
        rows = test(a, b, n_resamples=5000, strata=strata)
        grouped = test(a, b, n_resamples=5000, strata=strata, groups=groups)
        assert rows.diff == pytest.approx(grouped.diff) == pytest.approx(0.01)
        assert rows.p_value < 0.01 and grouped.p_value > 0.1, (test.__name__, rows.p_value, grouped.p_value)
        assert grouped.ci[0] < 0 < grouped.ci[1] and rows.ci[0] > 0
        assert grouped.se == pytest.approx(rows.se * math.sqrt(11), rel=0.1)  # sqrt(11) wider
        assert grouped.mdd() == pytest.approx(2.8 * grouped.se, rel=0.01)


@pytest.mark.parametrize("test", TESTS)
def test_one_row_per_group_is_the_per_query_test(test):
    rng = np.random.default_rng(14)
    a, b = rng.random(200), rng.random(200)
    strata = rng.choice(["de", "en"], size=200)
    plain = test(a, b, n_resamples=1000, seed=4, strata=strata)
    grouped = test(a, b, n_resamples=1000, seed=4, strata=strata, groups=np.arange(200))
    assert grouped.unit == "group" and plain.unit == "query" and grouped.units == plain.units == 200
    assert (grouped.diff, *grouped.ci, grouped.p_value) == pytest.approx((plain.diff, *plain.ci, plain.p_value))
    with pytest.raises(ValueError, match="one label per row"):
        test(a, b, groups=np.arange(10))


def test_compare_systems_by_parallel_group():
    from hybridbatch.experiments.grouping import lareqa_group

    langs = ["de", "en", "zh"]
    rng = np.random.default_rng(15)
    cross_ids = [f"{x}:q{i}>{y}" for x in langs for y in langs if x != y for i in range(40)]
    mono_ids = [f"{x}:q{i}" for x in langs for i in range(40)]
    pa = {"crosslingual": {q: {"map": float(rng.random())} for q in cross_ids},
          "monolingual": {q: {"map": float(rng.random())} for q in mono_ids}}
    pb = {s: {q: {"map": float(rng.random())} for q in rows} for s, rows in pa.items()}
    for setting in ("crosslingual", "monolingual"):
        by_group = compare_systems(pa, pb, setting, n_resamples=500, group_of=lareqa_group)
        by_query = compare_systems(pa, pb, setting, n_resamples=500)
        assert by_group.diff == pytest.approx(by_query.diff)  # the same statistic
        assert by_group.unit == "group" and by_group.units == 40 and by_group.n == len(pa[setting])
    assert compare_systems(pa, pb, "crosslingual", n_resamples=500).units == 120  # queries


def test_minimum_detectable_difference():
    from hybridbatch.experiments.significance import minimum_detectable_difference

    assert minimum_detectable_difference(1.0) == pytest.approx(1.959964 + 0.841621, rel=1e-5)
    assert minimum_detectable_difference(0.01, level=0.01, power=0.9) == pytest.approx(0.01 * (2.575829 + 1.281552))


def test_group_rules_read_the_parallel_id():
    from hybridbatch.experiments.grouping import caption_group, grouping_rule, lareqa_group

    assert lareqa_group("monolingual", "de:56be4db0acb8001400a502ec") == "56be4db0acb8001400a502ec"
    assert lareqa_group("crosslingual", "pt-BR:q7>en") == "q7"
    with pytest.raises(ValueError, match="parallel"):
        lareqa_group("monolingual", "q7")
    assert caption_group("monolingual", "de:1f600/de/0") == "1f600"
    assert caption_group("crosslingual", "de:1f600/de/2>en") == "1f600"
    assert caption_group("multilingual", "image:1f600") == "1f600"
    with pytest.raises(ValueError, match="image"):
        caption_group("monolingual", "de:1f600")
    assert grouping_rule("xquad-r:test@de,en") == grouping_rule("mlqa-r") == "lareqa"
    assert grouping_rule("miracl:/data/miracl@de") == "none"  # not parallel
    assert grouping_rule("/data/toy", "text") == "none"  # a generic folder: only when declared parallel
    assert grouping_rule("/data/toy@de,en", "text", ["/data/toy"]) == "lareqa"
    assert grouping_rule("emoji-cldr:test@en,de", "image-text") == "caption"
