"""`hybridbatch eval --benchmark NAME@languages` restricts the benchmark exactly as a compare grid does."""

from __future__ import annotations

import json

import pytest

from helpers.eval_toys import word_benchmark
from hybridbatch.cli import main

WORDS = {"en": ["house", "water", "tree", "dog"], "de": ["Haus", "Wasser", "Baum", "Hund"],
         "fr": ["maison", "eau", "arbre", "chien"]}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return word_benchmark(tmp_path_factory.mktemp("toy"), WORDS)


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


def test_a_caption_set_name_with_languages_evaluates_as_the_grid_does(tmp_path):
    """`resolve_caption_set("FILE@en,fr")` (eval-vl, train-vl) = the grid's caption set plus its languages."""
    import numpy as np

    from hybridbatch.data.captions import load_caption_jsonl
    from hybridbatch.data.names import resolve_caption_set
    from hybridbatch.evaluation.image_text import evaluate_image_text

    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    rows, table = [], {}
    for i in range(5):
        (tmp_path / "images" / f"{i}.png").write_bytes(b"not opened: images are given")
        center = rng.normal(size=8)
        table[f"img{i}"] = center + rng.normal(scale=0.8, size=8)
        captions = {lang: [f"{lang} {i}"] for lang in ("en", "de", "fr")}
        table.update({text[0]: center + rng.normal(scale=0.8, size=8) for text in captions.values()})
        rows.append({"id": f"img{i}", "image": f"images/{i}.png", "captions": captions})
    path = tmp_path / "caps.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    class Lookup:
        def encode_texts(self, texts, batch_size=64):
            return np.stack([table[t] / np.linalg.norm(table[t]) for t in texts]).astype(np.float32)

        def encode_images(self, images, batch_size=32):
            return self.encode_texts(images)

    images = [f"img{i}" for i in range(5)]
    grid = evaluate_image_text(Lookup(), load_caption_jsonl(path), ["en", "fr"], images=images).metrics
    ours = evaluate_image_text(Lookup(), resolve_caption_set(f"{path}@en,fr"), images=images).metrics
    assert ours["languages"] == grid["languages"] == ["en", "fr"] and ours["counts"] == grid["counts"]
    for setting in ("monolingual", "crosslingual", "multilingual"):
        assert ours[setting]["map"] == pytest.approx(grid[setting]["map"])
    everything = evaluate_image_text(Lookup(), resolve_caption_set(str(path)), images=images).metrics
    assert everything["languages"] == ["de", "en", "fr"]
