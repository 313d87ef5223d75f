"""`hybridbatch eval --benchmark NAME@languages` restricts the benchmark exactly as a compare grid does."""

from __future__ import annotations

import json

import pytest

from hybridbatch.cli import main
from hybridbatch.data.beir_layout import write_generic
from hybridbatch.data.benchmark import Benchmark, Text
from hybridbatch.models.tiny import build_tiny_sentence_transformer

WORDS = {"en": ["house", "water", "tree", "dog"], "de": ["Haus", "Wasser", "Baum", "Hund"],
         "fr": ["maison", "eau", "arbre", "chien"]}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    queries, corpus, qrels = [], [], {}
    for lang, words in WORDS.items():
        for i, w in enumerate(words):
            corpus.append(Text(f"{lang}-c{i}", f"the {w} is here", lang))
            queries.append(Text(f"{lang}-q{i}", f"where is the {w}", lang))
            qrels[f"{lang}-q{i}"] = {f"{y}-c{i}": 1 for y in WORDS}
    write_generic(Benchmark("toy", queries, corpus, qrels), root / "bench")
    model = build_tiny_sentence_transformer(root / "model", texts=[t.text for t in queries + corpus])
    return root, model


def test_eval_with_languages_is_the_grids_subset(toy, capsys):
    from hybridbatch.evaluation.run import evaluate_model
    from hybridbatch.experiments.grid import load_benchmark_spec
    from hybridbatch.models.registry import load_sentence_transformer

    root, model = toy
    spec = f"{root / 'bench'}@en,de"
    out = root / "out"
    assert main(["eval", "--model", str(model), "--benchmark", spec, "--out", str(out), "--depth", "5"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["benchmark"] == spec
    assert set(metrics["monolingual"]["per_language"]) == {"de", "en"}
    assert set(metrics["crosslingual"]["per_pair"]) == {"de-en", "en-de"}
    capsys.readouterr()

    grid_bench = load_benchmark_spec(spec)  # what a grid evaluates for this benchmark name
    assert grid_bench.query_languages == grid_bench.corpus_languages == ["de", "en"] and len(grid_bench.queries) == 8
    reference = evaluate_model(load_sentence_transformer(str(model)), grid_bench, k=5, show_progress=False).metrics
    for setting in ("monolingual", "crosslingual", "multilingual"):
        assert metrics[setting]["map"] == pytest.approx(reference[setting]["map"], abs=1e-6)
    assert metrics["multilingual"]["rank_distance"] == pytest.approx(reference["multilingual"]["rank_distance"])

    full = root / "out-full"  # and the restriction is not a no-op: the whole benchmark has three languages
    assert main(["eval", "--model", str(model), "--benchmark", str(root / "bench"), "--out", str(full)]) == 0
    assert set(json.loads((full / "metrics.json").read_text())["monolingual"]["per_language"]) == {"de", "en", "fr"}


def test_eval_with_a_language_the_benchmark_lacks_exits_2_with_the_grids_message(toy, capsys):
    from hybridbatch.experiments.grid import load_benchmark_spec
    from hybridbatch.training.config import ConfigError

    root, model = toy
    spec = f"{root / 'bench'}@en,zh"
    assert main(["eval", "--model", str(model), "--benchmark", spec, "--out", str(root / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "['zh'] not among the languages of" in err
    assert not (root / "nothing").exists()
    with pytest.raises(ConfigError) as grid_error:
        load_benchmark_spec(spec)
    assert err == f"hybridbatch: error: {grid_error.value}"
