"""Every figure renders to a non-empty PNG, as bytes or as a file."""

import numpy as np

from hybridbatch.experiments.figures import (
    alpha_curve,
    cross_lingual_difference_heatmap,
    cross_lingual_heatmap,
    pair_matrix,
    rank_distance_bars,
)

PNG = b"\x89PNG\r\n\x1a\n"
LANGS = ["ar", "de", "en", "zh"]


def _per_pair(offset):
    return {f"{x}-{y}": {"map": 0.1 * i + offset, "queries": 10}
            for i, (x, y) in enumerate((x, y) for x in LANGS for y in LANGS if x != y)}


def test_pair_matrix_places_pairs_and_diagonal():
    names, matrix = pair_matrix({"de-en": {"map": 0.3}, "en-de": {"map": 0.4}}, diagonal={"de": 0.9})
    assert names == ["de", "en"]
    assert matrix[0, 1] == 0.3 and matrix[1, 0] == 0.4 and matrix[0, 0] == 0.9 and np.isnan(matrix[1, 1])
    names, matrix = pair_matrix({"pt-BR-en": {"map": 0.1}, "en-zh-Hant": {"map": 0.2}})
    assert names == ["en", "pt-BR", "zh-Hant"] and matrix[1, 0] == 0.1 and matrix[0, 2] == 0.2


def test_heatmaps(tmp_path):
    png = cross_lingual_heatmap(_per_pair(0.0), "mono", diagonal={lang: 0.8 for lang in LANGS})
    assert png.startswith(PNG) and len(png) > 5000
    path = cross_lingual_difference_heatmap(_per_pair(0.05), _per_pair(0.0), "hybrid", "mono",
                                            out=tmp_path / "fig" / "diff.png")
    assert path.read_bytes().startswith(PNG)
    assert cross_lingual_difference_heatmap(_per_pair(0.0), _per_pair(0.0), "a", "b").startswith(PNG)


def test_rank_distance_bars():
    per_language = {s: {lang: 10.0 + i + j for j, lang in enumerate(LANGS)}
                    for i, s in enumerate(["zero-shot", "mono", "cross", "hybrid"])}
    assert rank_distance_bars(per_language).startswith(PNG)


def test_alpha_curve_with_and_without_seeds(tmp_path):
    def row(alpha, seed):
        return {"monolingual": 0.5 + 0.1 * alpha + 0.01 * seed, "crosslingual": 0.4 - 0.1 * alpha,
                "multilingual": 0.3, "rank_distance": 100 - 20 * alpha + seed}

    seeds = {a: [row(a, s) for s in range(3)] for a in (0.0, 0.25, 0.5, 0.75, 1.0)}
    single = {a: [row(a, 0)] for a in (0.0, 0.5, 1.0)}
    zero_shot = {"zero-shot": {"monolingual": 0.45, "crosslingual": 0.2, "multilingual": 0.1,
                               "rank_distance": 150}}
    assert alpha_curve(seeds, references=zero_shot, out=tmp_path / "alpha.png").stat().st_size > 5000
    assert alpha_curve(single).startswith(PNG)
