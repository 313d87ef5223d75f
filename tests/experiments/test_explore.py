"""The explorer's embedded data against the files it was built from (per_query.tsv.gz, the pooled TREC run,
the benchmark's qrels), on a synthetic grid whose systems differ in how strongly they prefer a query's own
language. The helpers here are also used by test_explore_browser.py."""

from __future__ import annotations

import gzip
import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from hybridbatch.cli import main
from hybridbatch.data.beir_layout import write_generic
from hybridbatch.data.benchmark import Benchmark, Text
from hybridbatch.evaluation.outputs import write_evaluation
from hybridbatch.evaluation.settings import evaluate_embeddings
from hybridbatch.experiments.explore import build_explorer, read_embedded

LANGS = ("de", "en", "zh")
GROUPS = 12
DEPTH = 20  # shallower than the corpus (108 candidates): some answers fall beyond the run


def toy_benchmark(folder: Path) -> Benchmark:
    """Parallel questions in three languages; each has one answer per language and two distractors."""
    queries, corpus, qrels = [], [], {}
    for g in range(GROUPS):
        for lang in LANGS:
            queries.append(Text(f"{lang}:q{g}", f"question {g} in {lang}", lang))
            corpus += [Text(f"{lang}:{g}:0:{j}", f"{'answer' if j == 0 else 'other'} {g}.{j} in {lang}", lang)
                       for j in range(3)]
    for q in queries:
        qrels[q.id] = {f"{lang}:{q.id.split(':q')[1]}:0:0": 1 for lang in LANGS}
    bench = Benchmark(str(folder), queries, corpus, qrels)
    write_generic(bench, folder)
    return bench


def write_system(bench: Benchmark, folder: Path, bias: float, seed: int, name: str) -> None:
    """One evaluation folder from synthetic embeddings: `bias` pulls every text towards its language."""
    rng = np.random.default_rng(seed)
    group = {g: rng.normal(size=16) for g in range(GROUPS)}
    lang = {lang: rng.normal(size=16) for lang in LANGS}

    def embed(text: Text) -> np.ndarray:
        g = int(text.id.split(":")[1].lstrip("q"))
        is_distractor = text.id.count(":") == 3 and not text.id.endswith(":0")
        base = rng.normal(size=16) if is_distractor else group[g]
        v = base + bias * lang[text.lang] + 0.3 * rng.normal(size=16)
        return v / np.linalg.norm(v)

    q = np.stack([embed(t) for t in bench.queries]).astype(np.float32)
    c = np.stack([embed(t) for t in bench.corpus]).astype(np.float32)
    evaluation = evaluate_embeddings(bench, q, c, k=DEPTH)
    evaluation.metrics.update({"model": name, "seed": seed})
    write_evaluation(evaluation, folder)


def make_grid(root: Path) -> Path:
    """A compare grid's output folder: zero-shot, mono (seeds 0 and 1), hybrid@0.5; and a second benchmark."""
    bench = toy_benchmark(root / "toy")
    out = root / "out"
    for rel, bias, seed in (("tiny/zero-shot", 0.5, 10), ("tiny/mono/seed0", 2.0, 11),
                            ("tiny/mono/seed1", 0.0, 12), ("tiny/hybrid@0.5/seed0", 0.2, 13)):
        write_system(bench, out / "runs" / rel / "eval" / "toy", bias, seed, rel)
    write_system(bench, out / "runs" / "tiny" / "zero-shot" / "eval" / "toy-b", 1.0, 14, "zero-shot b")
    return out


def trec_ranks(path: Path) -> dict[str, list[tuple[str, int]]]:
    run = defaultdict(list)
    for line in path.read_text(encoding="utf-8").splitlines():
        qid, _, doc, rank, _, _ = line.split()
        run[qid].append((doc, int(rank)))
    return run


def tsv_rank_distance(path: Path) -> dict[str, float]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [line.rstrip("\n").split("\t") for line in handle]
    col = rows[0].index("rank_distance")
    return {r[1]: float(r[col]) for r in rows[1:] if r[0] == "multilingual" and r[col] != "nan"}


@pytest.fixture
def grid(tmp_path) -> Path:
    return make_grid(tmp_path)


def test_embedded_data_equals_the_files(grid):
    page = build_explorer(grid, sample=1000, top=10)
    assert page == grid / "explorer.html"
    data = read_embedded(page.read_text(encoding="utf-8"))
    labels = [b["label"] for b in data["benchmarks"]]
    assert labels == ["toy", "toy-b"]
    bench = data["benchmarks"][0]
    folders = {"tiny/zero-shot": "tiny/zero-shot", "tiny/mono (seed 0)": "tiny/mono/seed0",
               "tiny/hybrid@0.5 (seed 0)": "tiny/hybrid@0.5/seed0"}
    assert sorted(bench["systems"]) == sorted(folders)  # seed 1 of mono is not shown: the lowest seed is
    assert bench["answersKnown"] and bench["langs"] == list(LANGS) and bench["depth"] == DEPTH
    assert bench["buckets"] == ["1", "2", "3", "4-5", "6-10", "11-20", f">{DEPTH}"]
    docs = bench["docs"]
    assert len(bench["queries"]) == GROUPS * len(LANGS) == bench["queriesInRun"]
    beyond = 0
    for s, name in enumerate(bench["systems"]):
        folder = grid / "runs" / folders[name] / "eval" / "toy"
        run = trec_ranks(folder / "runs" / "multilingual.trec")
        distance = tsv_rank_distance(folder / "per_query.tsv.gz")
        metrics = json.loads((folder / "metrics.json").read_text())
        assert bench["summary"][s]["map"] == pytest.approx(metrics["multilingual"]["map"])
        for qid, entry in bench["queries"].items():
            mine = entry["sys"][s]
            assert [(docs[i][0], r) for i, r in mine["top"]] == run[qid][:10]
            rank_of = dict(run[qid])
            rel = [docs[i][0] for i in entry["rel"]]
            assert sorted(rel) == sorted(f"{lang}:{qid.split(':q')[1]}:0:0" for lang in LANGS)
            assert mine["relRanks"] == [rank_of.get(d) for d in rel]
            beyond += mine["relRanks"].count(None)
            assert mine["rd"] == pytest.approx(distance[qid])
            assert entry["lang"] == qid.split(":")[0] and entry["text"] == f"question {qid.split(':q')[1]} in " \
                                                                          f"{entry['lang']}"
    assert beyond > 0  # the biased system pushes some answers past the run's depth: shown as such


def test_language_aggregates_count_every_query(grid):
    """Own-language share of the top 10 equals the evaluation's own number; histogram rows count answers."""
    bench = read_embedded(build_explorer(grid, sample=5).read_text(encoding="utf-8"))["benchmarks"][0]
    folder = grid / "runs" / "tiny" / "mono" / "seed0" / "eval" / "toy"
    s = bench["systems"].index("tiny/mono (seed 0)")
    agg = bench["aggregates"][s]
    metrics = json.loads((folder / "metrics.json").read_text())
    run = trec_ranks(folder / "runs" / "multilingual.trec")
    for lang in LANGS:
        assert agg["queries"][lang] == GROUPS
        own = metrics["multilingual"]["per_language"][lang]["own_language_top10"]
        assert agg["mix"][lang][lang] == pytest.approx(own, abs=1e-4)
        assert sum(agg["mix"][lang].values()) == pytest.approx(1.0, abs=1e-3)
        for answer_lang in LANGS:
            row = agg["hist"][lang][answer_lang]
            assert sum(row) == GROUPS
            top1 = sum(1 for q, docs in run.items() if q.startswith(lang) and
                       docs[0][0] == f"{answer_lang}:{q.split(':q')[1]}:0:0")
            assert row[0] == top1
            within = sum(1 for q, docs in run.items() if q.startswith(lang) and
                         f"{answer_lang}:{q.split(':q')[1]}:0:0" in dict(docs))
            assert sum(row[:-1]) == within and row[-1] == GROUPS - within


def test_sample_is_bounded_stratified_and_keeps_the_extremes(grid):
    bench = read_embedded(build_explorer(grid, sample=9).read_text(encoding="utf-8"))["benchmarks"][0]
    embedded = set(bench["queries"])
    extremes = {q for lists in bench["biased"] for q in lists["most"] + lists["least"]}
    assert extremes <= embedded and len(embedded) == max(9, len(extremes)) < bench["queriesInRun"]
    assert {q.split(":")[0] for q in embedded} == set(LANGS)
    for s, lists in enumerate(bench["biased"]):
        rd = [bench["queries"][q]["sys"][s]["rd"] for q in lists["most"]]
        assert rd == sorted(rd, reverse=True) and len(rd) == 10
        assert min(rd) >= max(bench["queries"][q]["sys"][s]["rd"] for q in lists["least"])


def test_without_the_benchmark_languages_come_from_ids(grid, tmp_path):
    shutil.rmtree(tmp_path / "toy")
    bench = read_embedded(build_explorer(grid / "runs" / "tiny" / "zero-shot" / "eval" / "toy",
                                         tmp_path / "x.html").read_text(encoding="utf-8"))["benchmarks"][0]
    assert bench["systems"] == ["tiny/zero-shot"]
    assert not bench["answersKnown"] and "could not be loaded" in bench["note"]
    assert bench["langs"] == list(LANGS) and all(q["rel"] == [] for q in bench["queries"].values())
    assert bench["aggregates"][0]["hist"] == {} and set(bench["aggregates"][0]["mix"]) == set(LANGS)


def test_command(grid, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["explore", str(grid), "--out", str(out), "--sample", "20"]) == 0
    assert out.is_file() and str(out) in capsys.readouterr().out
    assert main(["explore", str(grid), "--out", str(out), "--sample", "20"]) == 0  # rebuilt in place (was refused)
    assert main(["explore", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "neither an evaluation folder" in err


def test_grid_report_links_the_explorer_once_it_exists(tmp_path, monkeypatch):
    from hybridbatch.experiments import report as report_module
    from hybridbatch.experiments.grid import compare_config_from_dict, expand

    monkeypatch.setattr(report_module, "figures", lambda *a: [])  # not what this test is about
    bench = toy_benchmark(tmp_path / "toy")
    config = compare_config_from_dict({
        "base_models": ["tiny"], "samplers": ["mono"], "benchmarks": [str(tmp_path / "toy")],
        "train": {"data": {"source": "xquad-r:train", "languages": ["en", "de"]}, "steps": 2,
                  "batch_size": 8},
        "output_dir": str(tmp_path / "out")})
    zero_shot = expand(config)[0]
    write_system(bench, zero_shot.eval_dir(config.benchmarks[0]), 0.5, 1, zero_shot.name)
    md, page = report_module.write_report(config)
    assert "explorer.html" not in md.read_text() + page.read_text()
    explorer = build_explorer(config.output_dir)
    assert read_embedded(explorer.read_text())["benchmarks"][0]["systems"] == ["tiny/zero-shot"]
    md, page = report_module.write_report(config)
    assert "[Open explorer.html](explorer.html)" in md.read_text()
    assert '<a href="explorer.html">' in page.read_text()


class _FakeImageText:
    """encode_texts / encode_images of a dual encoder whose captions lean towards their language by `bias`."""

    def __init__(self, images: list[str], langs: tuple[str, ...], bias: float, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.image = {i: rng.normal(size=16) for i in images}
        self.lang = {lang: rng.normal(size=16) for lang in langs}
        self.bias, self.rng = bias, rng

    def encode_texts(self, texts, batch_size=64):
        rows = []
        for text in texts:  # "caption <image> <lang> <pos>"
            _, image, lang, _ = text.split()
            v = self.image[image] + self.bias * self.lang[lang] + 0.5 * self.rng.normal(size=16)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows)

    def encode_images(self, images):
        return np.stack([self.image[i] / np.linalg.norm(self.image[i]) for i in images])


def test_image_text_evaluation_images_against_pooled_captions(tmp_path):
    from PIL import Image

    from hybridbatch.evaluation.image_text import evaluate_image_text
    from hybridbatch.training.image_text import load_caption_source

    ids = [f"img{i}" for i in range(15)]
    (tmp_path / "images").mkdir()
    lines = []
    for i in ids:
        Image.new("RGB", (2, 2)).save(tmp_path / "images" / f"{i}.png")
        lines.append(json.dumps({"id": i, "image": f"images/{i}.png",
                                 "captions": {lang: [f"caption {i} {lang} {p}" for p in range(2)] for lang in LANGS}}))
    (tmp_path / "caps.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cs = load_caption_source(str(tmp_path / "caps.jsonl"))
    evaluation = evaluate_image_text(_FakeImageText(ids, LANGS, 1.5), cs, images=ids, k=DEPTH, show_progress=False)
    folder = tmp_path / "eval"
    write_evaluation(evaluation, folder)
    run = trec_ranks(folder / "runs" / "multilingual.trec")
    distance = tsv_rank_distance(folder / "per_query.tsv.gz")
    bench = read_embedded(build_explorer(folder, benchmark=str(tmp_path / "caps.jsonl"), top=10)
                          .read_text())["benchmarks"][0]
    assert bench["kind"] == "image-text" and bench["answersKnown"] and bench["langs"] == list(LANGS)
    assert sorted(bench["queries"]) == sorted(ids) == sorted(run)
    docs = bench["docs"]
    for qid, entry in bench["queries"].items():
        assert entry["lang"] == "image"
        rel = [docs[i][0] for i in entry["rel"]]
        assert sorted(rel) == sorted(f"{qid}/{lang}/{p}" for lang in LANGS for p in range(2))
        assert entry["sys"][0]["relRanks"] == [dict(run[qid]).get(d) for d in rel]
        assert [(docs[i][0], r) for i, r in entry["sys"][0]["top"]] == run[qid][:10]
        assert entry["sys"][0]["rd"] == pytest.approx(distance[f"image:{qid}"])
    hist = bench["aggregates"][0]["hist"]["image"]
    assert set(hist) == set(LANGS) and all(sum(row) == 2 * len(ids) for row in hist.values())
    # without the caption file: languages still read from the caption ids, no answers
    fallback = read_embedded(build_explorer(folder).read_text())["benchmarks"][0]
    assert not fallback["answersKnown"] and fallback["langs"] == list(LANGS)


def test_an_evaluation_without_a_pooled_run_says_so(grid, tmp_path):
    folder = grid / "runs" / "tiny" / "zero-shot" / "eval" / "toy"
    (folder / "runs" / "multilingual.trec").unlink()
    bench = read_embedded(build_explorer(folder, tmp_path / "x.html").read_text())["benchmarks"][0]
    assert bench["queries"] == {} and bench["queriesInRun"] == 0 and "No pooled multilingual run" in bench["note"]


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "metrics.json").write_text("{not json"), "metrics.json: not a readable metrics.json"),
    (lambda f: (f / "runs" / "multilingual.trec").write_text("q1 Q0 d1 first 0.5 tag\n"), "multilingual.trec:1: "
                                                                                          "field 'rank'"),
    (lambda f: (f / "runs" / "multilingual.trec").write_bytes(b"q1 Q0 d\xff 1 0.5 tag\n"), "not UTF-8"),
    (lambda f: (f / "per_query.tsv.gz").write_bytes(b"plain"), "not a readable gzip"),
])
def test_bad_files_exit_2_with_one_line(grid, tmp_path, capsys, damage, message):
    folder = grid / "runs" / "tiny" / "zero-shot" / "eval" / "toy"
    damage(folder)
    assert main(["explore", str(grid), "--out", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and not (tmp_path / "x.html").exists()


def test_several_evaluation_folders_side_by_side(grid, tmp_path):
    a, b = (grid / "runs" / "tiny" / name / "eval" / "toy" for name in ("zero-shot", "mono/seed1"))
    assert main(["explore", str(a), str(b), "--out", str(tmp_path / "two.html")]) == 0
    bench = read_embedded((tmp_path / "two.html").read_text())["benchmarks"][0]
    assert bench["systems"] == ["tiny/zero-shot", "tiny/mono/seed1"]  # each eval's metrics.json "model"
    for s, folder in enumerate((a, b)):
        run = trec_ranks(folder / "runs" / "multilingual.trec")
        assert all([(bench["docs"][i][0], r) for i, r in e["sys"][s]["top"]] == run[q][:30]
                   for q, e in bench["queries"].items())
    bench = read_embedded(build_explorer([a, a], tmp_path / "same.html").read_text())["benchmarks"][0]
    assert bench["systems"] == ["tiny/zero-shot", f"tiny/zero-shot [{a}]"]


def test_rank_buckets_follow_the_run_depth():
    from hybridbatch.experiments.explore_data import bucket_of, buckets_for

    assert buckets_for(20) == [(1, 1), (2, 2), (3, 3), (4, 5), (6, 10), (11, 20)]
    assert buckets_for(30)[-1] == (21, 30) and buckets_for(1000)[-2:] == [(51, 100), (101, 1000)]
    deep = buckets_for(1000)
    assert [bucket_of(r, deep) for r in (1, 5, 100, 101, 1000, None)] == [0, 3, 7, 8, 8, 9]
