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
