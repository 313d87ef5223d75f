"""The claim checker on synthetic tables where each verdict is known by construction.

Per-query scores are built so that significance is controlled: a shift of +0.05 with small noise is
clearly significant; a shift of 0.001 under large noise clearly is not. The noise is symmetric with zero
mean, so it leaves the overall mean where the shift puts it. Query ids `de:q7` are parallel: `q7` is the
group the tests resample by default (`lareqa_group`); `unit="query"` resamples single queries.
"""

import numpy as np
import pytest

from hybridbatch.experiments.claims import (
    FAILS,
    HOLDS,
    NOT_CHECKED,
    NOT_DECIDED,
    NOT_SIGNIFICANT,
    ClaimVerdict,
    benchmark_family,
    check_benchmarks,
    check_claims,
    check_transfer,
    comparisons_from_per_query,
    designated_hybrid,
    mean_over_seeds,
    scores_from_metrics,
)
from hybridbatch.experiments.grouping import lareqa_group
from hybridbatch.experiments.significance import paired_bootstrap, stratum_of

LANGS = ["de", "en", "zh"]
N = 60  # questions per language


def _ids(setting):
    if setting == "crosslingual":
        return [f"{x}:q{i}>{y}" for x in LANGS for y in LANGS if x != y for i in range(N)]
    return [f"{x}:q{i}" for x in LANGS for i in range(N)]


def _system(base, shifts, noise=0.0, seed=0):
    """Per-query table: base + shift (per setting / rank_distance) + symmetric zero-mean noise."""
    rng = np.random.default_rng(seed)
    table = {}
    for setting, values in base.items():
        half = rng.normal(0, noise, len(values) // 2) if noise else np.zeros(len(values) // 2)
        eps = np.concatenate([half, -half])  # zero mean overall (within a language only roughly)
        rng.shuffle(eps)
        shifted = values + shifts.get(setting, 0.0) + eps
        rd = None
        if setting == "multilingual":  # rank distances in the hundreds; the same noise, scaled
            rd = 100 + 10 * (np.arange(len(values)) % 7) + shifts.get("rank_distance", 0.0) + 100 * eps
        table[setting] = {q: {"map": float(v), **({} if rd is None else {"rank_distance": float(rd[i])})}
                          for i, (q, v) in enumerate(zip(_ids(setting), shifted, strict=True))}
    return table


def _scores(per_query):
    """The table numbers exactly as metrics.json computes them: macro over strata."""
    row = {}
    for setting, rows in per_query.items():
        for measure, key in (("map", setting), ("rank_distance", "rank_distance")):
            groups = {}
            for q, values in rows.items():
                if measure in values:
                    groups.setdefault(stratum_of(setting, q), []).append(values[measure])
            if groups:
                row[key] = float(np.mean([np.mean(v) for v in groups.values()]))
    return row


@pytest.fixture(scope="module")
def base():
    rng = np.random.default_rng(42)
    return {s: rng.uniform(0.2, 0.8, len(_ids(s))) for s in ("monolingual", "crosslingual", "multilingual")}


def _compare(per_query, unit="group", n_resamples=2000):
    return comparisons_from_per_query(per_query, n_resamples=n_resamples,
                                      group_of=lareqa_group if unit == "group" else None)


def _check(base, systems, unit="group", **kwargs):
    per_query = {name: _system(base, shifts, noise, seed) for name, (shifts, noise, seed) in systems.items()}
    verdicts = check_claims({n: _scores(pq) for n, pq in per_query.items()}, _compare(per_query, unit), **kwargs)
    return {v.id: v for v in verdicts}


def _all_hold(hybrid_noise):
    return {
        "zero-shot": ({"monolingual": -0.2, "crosslingual": -0.2, "multilingual": -0.2}, 0.0, 0),
        "mono": ({"monolingual": 0.05}, 0.01, 1),
        "cross": ({"crosslingual": 0.05, "multilingual": 0.05, "rank_distance": -20}, 0.01, 2),
        # hybrid: tied with mono in mono (slightly behind), tied with cross elsewhere
        "hybrid@0.5": ({"monolingual": 0.049, "crosslingual": 0.05, "multilingual": 0.05,
                        "rank_distance": -30}, hybrid_noise, 3),
    }


@pytest.mark.parametrize("unit", ["group", "query"])
def test_every_claim_holds(base, unit):
    # the hybrid's noise is small enough that every tie's interval lies inside the 0.005 margin
    v = _check(base, _all_hold(0.01), unit)
    assert {k: x.verdict for k, x in v.items()} == {str(i): HOLDS for i in range(1, 6)}
    behind = [a for a in v["4"].numbers["assertions"] if a["diff"] < 0]
    assert behind and all(a["p_holm"] > 0.05 for a in behind)  # held as ties, not as wins
    assert all(a["ci"][0] > -a["margin"] for a in behind)  # ... because the interval is inside the margin
    assert all(a["unit"] == unit for a in behind) and behind[0]["units"] == (60 if unit == "group" else 180)
    assert "p_holm" in v["2"].evidence and v["2"].numbers["kind"] == "strict"


@pytest.mark.parametrize("unit", ["group", "query"])
def test_an_underpowered_tie_is_not_decided(base, unit):
    # the same ordering, but the hybrid's per-query noise is 20x larger: no difference is significant, and
    # the intervals are far wider than the margin, so "tied" is not shown (it "held" before the margin)
    v = _check(base, _all_hold(0.2), unit)
    assert v["3"].verdict == NOT_DECIDED and v["4"].verdict == NOT_DECIDED
    undecided = [a for a in v["4"].numbers["assertions"] if a["verdict"] == NOT_DECIDED]
    assert undecided and all(a["p_holm"] > 0.05 for a in undecided)
    assert all(a["mdd"] > 4 * a["margin"] for a in undecided)  # the test could not have seen the margin
    assert "MDD" in v["4"].evidence and "margin ±0.005" in v["4"].evidence
    assert v["2"].verdict == HOLDS and v["5"].verdict == HOLDS  # the strict claims are unaffected


def test_claims_fail_when_the_ordering_is_reversed(base):
    v = _check(base, {
        "mono": ({"crosslingual": 0.05, "multilingual": 0.05}, 0.01, 1),
        "cross": ({"monolingual": 0.05, "rank_distance": -20}, 0.01, 2),
        "hybrid": ({"rank_distance": 10, "multilingual": -0.05}, 0.01, 3),
    })
    assert {k: x.verdict for k, x in v.items()} == {str(i): FAILS for i in range(1, 6)}


@pytest.mark.parametrize("unit", ["group", "query"])
def test_right_direction_without_significance(base, unit):
    v = _check(base, {
        "mono": ({}, 0.0, 1),
        "cross": ({"crosslingual": 0.001, "multilingual": 0.001}, 0.3, 2),
        "hybrid": ({"rank_distance": -0.01}, 0.3, 3),
    }, unit)
    assert v["2"].verdict == NOT_SIGNIFICANT and v["5"].verdict == NOT_SIGNIFICANT
    assert NOT_SIGNIFICANT == NOT_DECIDED  # the former word for "ahead, not significant"
    assert all(a["p_holm"] > 0.05 for a in v["2"].numbers["assertions"])
    # ties allowed, but a test this noisy shows none (before the equivalence margin this "held")
    assert v["1"].verdict == NOT_DECIDED


def test_numbers_only_without_tests():
    table = {"mono": {"monolingual": 0.6, "crosslingual": 0.2, "multilingual": 0.2, "rank_distance": 50},
             "cross": {"monolingual": 0.61, "crosslingual": 0.3, "multilingual": 0.3, "rank_distance": 20},
             "hybrid": {"monolingual": 0.6, "crosslingual": 0.3, "multilingual": 0.31, "rank_distance": 10}}
    v = {x.id: x for x in check_claims(table)}
    assert v["1"].verdict == NOT_CHECKED  # a tie cannot be shown, nor refuted, without a test
    assert v["2"].verdict == NOT_CHECKED and v["5"].verdict == NOT_CHECKED  # ahead, but untested
    assert v["3"].verdict == NOT_CHECKED and "untested" in v["3"].evidence
    behind = dict(table, cross=dict(table["cross"], crosslingual=0.1))  # cross behind mono: no test needed
    assert {x.id: x for x in check_claims(behind)}["2"].verdict == FAILS


def test_mapping_source_is_read_both_ways():
    table = {"mono": {"monolingual": 0.6}, "cross": {"monolingual": 0.5}, "hybrid": {"monolingual": 0.55}}
    rng = np.random.default_rng(0)
    x = rng.random(100)
    source = {("cross", "mono", "monolingual"): paired_bootstrap(x, x + 0.1, n_resamples=500),
              ("mono", "hybrid", "monolingual"): paired_bootstrap(x + 0.05, x, n_resamples=500)}
    (claim1,) = [c for c in check_claims(table, source) if c.id == "1"]
    assert claim1.verdict == HOLDS
    first = claim1.numbers["assertions"][0]
    assert first["loser"] == "cross" and first["ci"][0] == pytest.approx(0.1) and first["p_holm"] < 0.01


def test_a_test_over_too_few_units_decides_nothing():
    """One independent unit gives a zero-width interval: the same clear difference that holds on 100 units is
    `not decided` on fewer than MIN_UNITS (found on a one-question MMMU fixture, where IT1 "held")."""
    from dataclasses import replace

    from hybridbatch.experiments.equivalence import MIN_UNITS

    table = {"mono": {"monolingual": 0.6}, "cross": {"monolingual": 0.5}, "hybrid": {"monolingual": 0.55}}
    x = np.random.default_rng(0).random(100)
    tests = {("cross", "mono", "monolingual"): paired_bootstrap(x, x + 0.1, n_resamples=500),
             ("mono", "hybrid", "monolingual"): paired_bootstrap(x + 0.05, x, n_resamples=500)}
    assert [c for c in check_claims(table, tests) if c.id == "1"][0].verdict == HOLDS
    few = {k: replace(t, units=MIN_UNITS - 1) for k, t in tests.items()}
    (claim1,) = [c for c in check_claims(table, few) if c.id == "1"]
    assert claim1.verdict == NOT_DECIDED and f"fewer than {MIN_UNITS} units" in claim1.evidence


def test_hybrid_is_designated_or_asked_for():
    assert designated_hybrid(["mono", "hybrid", "hybrid@0.3"]) == "hybrid"
    assert designated_hybrid(["mono", "hybrid@0.3"]) == "hybrid@0.3"
    assert designated_hybrid(["hybrid@0.3", "hybrid@0.5"]) == "hybrid@0.5"
    assert designated_hybrid(["hybrid@0.3", "hybrid@0.7"]) is None
    with pytest.raises(ValueError, match="hybrid="):
        check_claims({"mono": {}, "hybrid@0.3": {}, "hybrid@0.7": {}})


def test_missing_systems_leave_claims_out():
    table = {"mono": {"monolingual": 0.6, "rank_distance": 5.0},
             "hybrid": {"monolingual": 0.5, "rank_distance": 3.0}}
    verdicts = {v.id: v for v in check_claims(table)}
    assert list(verdicts) == ["1", "4", "5"]  # claim 4 only on what the table has, saying what it skipped
    assert "skipped" in verdicts["4"].evidence and len(verdicts["4"].numbers["skipped"]) == 5


def _verdicts(*values):
    return [ClaimVerdict(str(i + 1), "", v, "") for i, v in enumerate(values)]


def test_transfer_rules():
    same = check_transfer(_verdicts(HOLDS, FAILS), _verdicts(HOLDS, FAILS), ("xquad-r", "mlqa-r"))
    assert same.id == "6" and same.verdict == HOLDS and same.numbers["verdicts"]["2"]["mlqa-r"] == FAILS
    lost = check_transfer(_verdicts(HOLDS, HOLDS), _verdicts(HOLDS, NOT_SIGNIFICANT))
    assert lost.verdict == NOT_SIGNIFICANT
    assert check_transfer(_verdicts(HOLDS, HOLDS), _verdicts(FAILS, HOLDS)).verdict == FAILS
    # the same, but undecided on both: the same ordering is not shown
    assert check_transfer(_verdicts(HOLDS, NOT_DECIDED), _verdicts(HOLDS, NOT_DECIDED)).verdict == NOT_DECIDED
    assert check_transfer(_verdicts(HOLDS, NOT_CHECKED), _verdicts(HOLDS, NOT_CHECKED)).verdict == NOT_CHECKED
    assert check_transfer(_verdicts(NOT_DECIDED, FAILS), _verdicts(NOT_CHECKED, HOLDS)).verdict == FAILS


def test_check_benchmarks_end_to_end(base):
    systems = {"mono": ({"monolingual": 0.05}, 0.01, 1),
               "cross": ({"crosslingual": 0.05, "multilingual": 0.05}, 0.01, 2),
               "hybrid": ({"monolingual": 0.05, "crosslingual": 0.05, "multilingual": 0.05,
                           "rank_distance": -5}, 0.01, 3)}
    per_query = {n: _system(base, s, noise, seed) for n, (s, noise, seed) in systems.items()}
    # the zero-shot benchmark: cross no longer beats mono in the multilingual setting
    shifted = dict(systems, cross=({"crosslingual": 0.05}, 0.01, 2))
    zero_shot = {n: _system(base, s, noise, seed) for n, (s, noise, seed) in shifted.items()}
    out = check_benchmarks(
        {"xquad-r": {n: _scores(pq) for n, pq in per_query.items()},
         "mlqa-r": {n: _scores(pq) for n, pq in zero_shot.items()}},
        {"xquad-r": _compare(per_query, n_resamples=1000), "mlqa-r": _compare(zero_shot, n_resamples=1000)},
        in_domain="xquad-r", zero_shot="mlqa-r")
    by_id = {v.id: v.verdict for v in out}
    assert by_id["xquad-r/2"] == HOLDS and by_id["mlqa-r/2"] == FAILS
    assert by_id["6"] == FAILS and "claim 2" in out[-1].evidence


def test_scores_from_metrics_and_seeds():
    metrics = {"monolingual": {"map": 0.5}, "crosslingual": None,
               "multilingual": {"map": 0.2, "rank_distance": 12.0}}
    assert scores_from_metrics(metrics) == {"monolingual": 0.5, "multilingual": 0.2, "rank_distance": 12.0}
    assert mean_over_seeds([{"a": 1.0, "b": 2.0}, {"a": 3.0}]) == {"a": 2.0}


def test_claims_read_the_family_of_the_benchmark():
    # one Holm family of 12 tests (3 pairs x 3 settings + rank distance), whatever the claim
    rng = np.random.default_rng(3)
    per_query = {name: _system({s: rng.uniform(0.2, 0.8, len(_ids(s)))
                                for s in ("monolingual", "crosslingual", "multilingual")}, {}, 0.05, seed)
                 for seed, name in enumerate(["mono", "cross", "hybrid"])}
    compare = _compare(per_query, n_resamples=500)
    family = benchmark_family(["mono", "cross", "hybrid", "zero-shot"], compare)
    assert len(family) == 12 and ("cross", "mono", "rank_distance") in family.keys
    assert all("zero-shot" not in key for key in family.keys)
    table = {n: _scores(pq) for n, pq in per_query.items()}
    for verdict in check_claims(table, compare):
        assert verdict.numbers["family_size"] == 12
        for a in verdict.numbers["assertions"]:
            assert a["p_holm"] == family.get(a["winner"], a["loser"], a["key"])[1]
    # a family passed in is used as is
    assert [v.verdict for v in check_claims(table, family)] == [v.verdict for v in check_claims(table, compare)]


def test_equivalence_rules():
    from hybridbatch.experiments.equivalence import Margins, strict_verdict, tie_verdict, within_margin
    from hybridbatch.experiments.significance import Comparison

    assert tie_verdict((-0.004, 0.02), 0.005) == HOLDS  # better, or worse by less than the margin
    assert tie_verdict((-0.02, -0.006), 0.005) == FAILS  # worse by more than the margin, shown
    assert tie_verdict((-0.03, 0.03), 0.005) == NOT_DECIDED  # a wide interval decides nothing
    assert tie_verdict(None, 0.005) == NOT_CHECKED
    assert strict_verdict(0.01, 0.01, 0.05) == HOLDS and strict_verdict(0.01, 0.2, 0.05) == NOT_DECIDED
    assert strict_verdict(-0.01, 0.001, 0.05) == FAILS and strict_verdict(0.01, None, 0.05) == NOT_CHECKED
    margins = Margins(0.005, 0.02)
    rank = Comparison(-5.0, (-8.0, -2.0), 0.01, 100, "bootstrap", means=(195.0, 200.0))
    assert margins.for_key("rank_distance", rank) == pytest.approx(0.02 * 197.5)
    assert margins.for_key("rank_distance", rank.reversed()) == pytest.approx(0.02 * 197.5)
    assert margins.for_key("monolingual", rank) == 0.005
    assert within_margin(Comparison(0.001, (-0.002, 0.004), 0.5, 10, "bootstrap"), 0.005) == "yes"
    assert within_margin(Comparison(0.001, (-0.002, 0.009), 0.5, 10, "bootstrap"), 0.005) == "–"
    assert within_margin(Comparison(0.01, (0.006, 0.014), 0.01, 10, "bootstrap"), 0.005) == "no"
