"""MMMU and xMMMU as benchmarks of an image-text compare grid (`mmmu:ROOT`, `xmmmu:ROOT@langs`), run end to end on
fixtures in their published parquet layouts (`helpers.published_vl_toys`): every run evaluated on both, metrics
in [0, 1], both named in the report, per-query keys grouped by the question (one MMMU row with all its
translations and images), and `hybridbatch eval-vl --benchmark xmmmu:ROOT@langs` on a trained run folder. The
grouping rules of MMMU, xMMMU and Multi30K are checked against a reference read from the caption set itself."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from helpers.published_vl_toys import write_mmmu, write_xmmmu
from hybridbatch.experiments.grid_spec import benchmark_slug
from hybridbatch.experiments.per_query import load_per_query

SAMPLERS = ["en-en", "cross", "hybrid"]
# the fixtures' questions (`helpers.published_vl_toys`): the units their per-query keys must fall into
MMMU_QUESTIONS = {"dev_Accounting_1", "validation_Accounting_1", "validation_Art_Theory_1"}
XMMMU_QUESTIONS = {"validation_Art_1", "validation_Art_2"}


def _values(block, path=""):
    """Every (path, number) in a metrics block, nested dicts walked."""
    if isinstance(block, dict):
        for key, value in block.items():
            yield from _values(value, f"{path}.{key}")
    elif isinstance(block, (int, float)) and not isinstance(block, bool):
        yield path, block


@pytest.fixture(scope="module")
def mmmu_grid(vl_assets, tmp_path_factory):
    """A tiny image-text grid trained on the toy captions, benchmarks MMMU and xMMMU (en, fr, ja), run once."""
    from hybridbatch.cli import main_compare

    tmp = tmp_path_factory.mktemp("mmmu-grid")
    root, text_model, tower = vl_assets
    mmmu, xmmmu = write_mmmu(tmp / "MMMU"), write_xmmmu(tmp / "PangeaBench-xmmmu")
    benchmarks = [f"mmmu:{mmmu}", f"xmmmu:{xmmmu}@en,fr,ja"]
    raw = {"kind": "image-text", "base_models": [str(text_model)], "samplers": SAMPLERS,
           "include_zero_shot": False, "seeds": [0], "benchmarks": benchmarks,
           "train": {"image_tower": f"hf-clip-vision:{tower}", "embed_dim": 16, "freeze_word_embeddings": False,
                     "data": {"source": str(root / "captions.jsonl"), "languages": ["en", "de", "fr"]},
                     "batch_size": 8, "steps": 2, "lr": 1e-3, "head_lr": 1e-2},
           "output_dir": str(tmp / "grid"), "significance": {"n_resamples": 200}}
    path = tmp / "grid.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main_compare([str(path), "--no-progress"]) == 0
    return tmp / "grid", benchmarks, raw


def test_every_run_is_evaluated_on_mmmu_and_xmmmu(mmmu_grid):
    out, benchmarks, _ = mmmu_grid
    for sampler in SAMPLERS:
        (run,) = [p for p in (out / "runs").glob(f"*/{sampler}*/seed0") if p.is_dir()]
        for bench in benchmarks:
            metrics = json.loads((run / "eval" / benchmark_slug(bench) / "metrics.json").read_text())
            assert metrics["kind"] == "image-text"
            numbers = [(where, v) for where, v in _values(metrics) if "map" in where or "success@" in where]
            assert numbers and all(0.0 <= v <= 1.0 and not math.isnan(v) for _, v in numbers), numbers
            if bench.startswith("mmmu:"):  # English only: text -> image, no caption X -> Y, no pooled languages
                assert metrics["languages"] == ["en"] and metrics["crosslingual"] is None
                assert metrics["counts"] == {"images": 4, "captions": 3}
            else:
                assert metrics["languages"] == ["en", "fr", "ja"]
                assert sorted(metrics["monolingual"]["per_language"]) == ["en", "fr", "ja"]
                assert 0.0 <= metrics["crosslingual"]["map"] <= 1.0
                assert 0.0 <= metrics["multilingual"]["map"] <= 1.0
                assert metrics["counts"] == {"images": 2, "captions": 4}


def test_report_names_both_benchmarks_and_groups_by_question(mmmu_grid):
    from hybridbatch.experiments.grid import compare_config_from_dict
    from hybridbatch.experiments.grid_spec import benchmark_label
    from hybridbatch.experiments.grouping import RULES
    from hybridbatch.experiments.report_significance import unit_of

    out, benchmarks, raw = mmmu_grid
    report = (out / "report.md").read_text()
    for bench in benchmarks:
        assert benchmark_label(bench) in report
    assert "not complete" not in report
    assert "Unit resampled: groups, an MMMU question with all its translations and images" in report
    config = compare_config_from_dict(raw)
    expected = {benchmarks[0]: MMMU_QUESTIONS, benchmarks[1]: XMMMU_QUESTIONS}
    (run,) = (out / "runs").glob("*/hybrid*/seed0")
    for bench in benchmarks:
        unit = unit_of(config, bench)
        group_of = RULES[unit]
        assert group_of is not None, unit  # resampled by question, not by single query
        per_query = load_per_query(run / "eval" / benchmark_slug(bench))
        groups = {setting: {group_of(setting, key) for key in rows} for setting, rows in per_query.items()}
        for setting, found in groups.items():
            assert found <= expected[bench], (bench, setting, found)
        assert groups["monolingual"] == expected[bench]
        if bench.startswith("xmmmu:"):  # a translated question's captions and its image are one unit
            assert groups["crosslingual"] == {"validation_Art_1"}
            assert groups["multilingual"] == XMMMU_QUESTIONS


def test_eval_vl_on_xmmmu_languages_of_a_trained_run(mmmu_grid, tmp_path):
    from hybridbatch.cli import main

    out, benchmarks, _ = mmmu_grid
    (run,) = (out / "runs").glob("*/hybrid*/seed0")
    root = benchmarks[1].removeprefix("xmmmu:").rpartition("@")[0]
    assert main(["eval-vl", "--model", str(run / "train" / "model"), "--benchmark", f"xmmmu:{root}@fr,ja",
                 "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["languages"] == ["fr", "ja"] and metrics["counts"] == {"images": 2, "captions": 2}
    assert all(0.0 <= v <= 1.0 for where, v in _values(metrics) if "map" in where or "success@" in where)


def test_question_group_reads_every_key_form_of_mmmu_and_xmmmu():
    from hybridbatch.experiments.grouping import caption_group, grouping_rule, question_group

    assert grouping_rule("mmmu:/data/MMMU", "image-text") == "question"
    assert grouping_rule("xmmmu:/data/PangeaBench-xmmmu@en,fr", "image-text") == "question"
    assert grouping_rule("xm3600:/data/xm3600@en,de", "image-text") == "caption"
    assert grouping_rule("mmmu:/data/MMMU", "text") == "none"  # not a text benchmark
    assert grouping_rule("multi30k:/data/multi30k-dataset@en,de", "image-text") == "line"
    for setting, key in [("monolingual", "en:validation_Art_Theory_12"), ("monolingual", "fr:validation_Art_Theory_12/fr"),
                         ("crosslingual", "fr:validation_Art_Theory_12/fr>ja"),
                         ("multilingual", "image:validation_Art_Theory_12/image_2")]:
        assert question_group(setting, key) == "validation_Art_Theory_12"
    with pytest.raises(ValueError):
        caption_group("monolingual", "en:validation_Art_Theory_12")  # why MMMU needs its own rule
    for bad in ("validation_Art_1", "en:", "image:/image_1"):
        with pytest.raises(ValueError, match="MMMU row id"):
            question_group("monolingual", bad)


class RandomModel:
    """Any image-text model will do for the keys: random unit vectors, one per text and per image."""

    def __init__(self):
        import numpy as np

        self.rng = np.random.default_rng(0)

    def _unit(self, n):
        v = self.rng.normal(size=(n, 8)).astype("float32")
        return v / (1e-9 + (v ** 2).sum(axis=1, keepdims=True) ** 0.5)

    def encode_texts(self, texts, batch_size=64):
        return self._unit(len(texts))

    def encode_images(self, images):
        return self._unit(len(images))


def _write_multi30k(root):
    """Multi30K task 1 as published (data/task1/raw/<split>.<lang>, image_splits/<split>.txt), three lines."""
    from helpers.published_vl_toys import image_bytes

    task1 = root / "data" / "task1"
    (task1 / "raw").mkdir(parents=True)
    (task1 / "image_splits").mkdir()
    names = ["1000092795.jpg", "10002456.jpg", "1000268201.jpg"]
    (task1 / "image_splits" / "test_2016_flickr.txt").write_text("".join(n + "\n" for n in names))
    for lang in ("en", "de", "fr", "cs"):
        (task1 / "raw" / f"test_2016_flickr.{lang}").write_text("".join(f"{lang} line {i}\n" for i in range(3)))
    (task1 / "images").mkdir()
    for name in names:
        (task1 / "images" / name).write_bytes(image_bytes((0, 0, 255), "JPEG"))
    return root


def _partition(keys, unit_of):
    blocks = {}
    for key in keys:
        blocks.setdefault(unit_of(key), set()).add(key)
    return sorted(sorted(b) for b in blocks.values())


@pytest.mark.parametrize("kind", ["mmmu", "xmmmu", "multi30k"])
def test_per_query_keys_fall_into_the_caption_sets_parallel_units(kind, tmp_path):
    """The grid's rule against a reference read from the caption set: a caption's unit is its group (else its
    image), an image's unit that of the captions showing it; same partition of every setting's keys."""
    from helpers.published_vl_toys import write_mmmu, write_xmmmu
    from hybridbatch.data.names import resolve_caption_set
    from hybridbatch.evaluation.image_text import evaluate_image_text
    from hybridbatch.experiments.grouping import RULES, grouping_rule

    root = {"mmmu": write_mmmu, "xmmmu": write_xmmmu, "multi30k": _write_multi30k}[kind](tmp_path / kind)
    spec = f"{kind}:{root}"
    cs = resolve_caption_set(spec)
    per_query = evaluate_image_text(RandomModel(), cs, show_progress=False).per_query
    unit = {c.id: c.group or c.image_ids[0] for c in cs.captions}
    unit.update({i: unit[c.id] for c in cs.captions for i in c.image_ids})
    group_of = RULES[grouping_rule(spec, "image-text")]

    def reference(setting, key):
        query = key.rpartition(">")[0] if setting == "crosslingual" else key
        return unit[query.partition(":")[2]]

    assert set(per_query) >= {"monolingual"}
    for setting, (keys, _) in per_query.items():
        assert len(keys) and _partition(keys, lambda k, s=setting: group_of(s, k)) == \
            _partition(keys, lambda k, s=setting: reference(s, k)), setting
