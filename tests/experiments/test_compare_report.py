"""A tiny grid end to end through `main_compare`: runs, report, resume after an interruption.

Model `tiny` (a random BERT whose vocabulary is trained on the texts) learns for 6 steps on two XQuAD-R
train languages with each sampler; two toy benchmarks in the generic layout (a few held-out XQuAD-R
articles each, en and de) stand for the in-domain and zero-shot benchmarks, the second one named with
the `@languages` form. The point is the plumbing, not the numbers.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from hybridbatch.cli import main_compare
from hybridbatch.experiments import report as report_module
from hybridbatch.experiments import runner
from hybridbatch.experiments.grid import expand, load_compare_config
from hybridbatch.experiments.report import PUBLISHED_LABEL
from hybridbatch.training import trainer as trainer_module
from hybridbatch.training.rundir import read_metrics


def toy_benchmark(lareqa_dir, folder, articles):
    """The en/de XQuAD-R test questions of some articles against those articles' sentences."""
    from hybridbatch.data.beir_layout import write_generic
    from hybridbatch.data.lareqa import load_lareqa

    bench = load_lareqa("xquad-r:test", lareqa_dir).subset("toy", {"en", "de"}, {"en", "de"})
    bench.corpus = [c for c in bench.corpus if int(c.id.split(":")[1]) in articles]
    keep = {c.id for c in bench.corpus}
    bench.qrels = {q: {c: g for c, g in rels.items() if c in keep} for q, rels in bench.qrels.items()}
    bench.qrels = {q: rels for q, rels in bench.qrels.items() if rels}
    bench.queries = [q for q in bench.queries if q.id in bench.qrels]
    return write_generic(bench, folder)


@pytest.fixture(scope="module")
def grid(tmp_path_factory, lareqa_dir):
    """A finished grid: (config path, output folder, copy of its first report); the tiny model is built into
    a private cache."""
    root = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HYBRIDBATCH_CACHE", str(root / "cache"))
        mp.setenv("OMP_NUM_THREADS", "1")  # set_threads() in the command reads it: one thread on shared cores
        in_domain = str(toy_benchmark(lareqa_dir, root / "toy-a", {0, 1}))
        zero_shot = str(toy_benchmark(lareqa_dir, root / "toy-b", {2, 3})) + "@de,en"
        raw = {
            "base_models": ["tiny"], "samplers": ["mono", "cross", "hybrid"], "seeds": [0],
            "benchmarks": [in_domain, zero_shot], "in_domain": in_domain, "zero_shot_benchmark": zero_shot,
            "train": {"data": {"source": "xquad-r:train", "languages": ["en", "de"], "data_dir": str(lareqa_dir)},
                      "batch_size": 8, "steps": 6, "lr": 1.0e-3, "max_seq_length": 32,
                      "checkpoint": {"every": 3, "keep_last": 2}},
            "eval": {"batch_size": 64},
            "output_dir": str(root / "out"),
            # toy-a is XQuAD-R in the generic layout: declared parallel, its tests resample questions;
            # toy-b is not declared: per-query, with a note
            "significance": {"n_resamples": 200, "parallel_benchmarks": [in_domain]},
        }
        path = root / "grid.yaml"
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        assert main_compare([str(path), "--no-progress"]) == 0
        first = root / "first-report"  # as first written: the resume test below rewrites the report
        shutil.copytree(root / "out" / "figures", first / "figures")
        for name in ("report.md", "report.html"):
            shutil.copy(root / "out" / name, first / name)
        yield path, root / "out", first


def test_grid_writes_runs_and_a_complete_report(grid):
    path, _, out = grid
    config = load_compare_config(path)
    for run in expand(config):
        assert run.train is None or (run.train_dir / "model" / "README.md").is_file()
        for bench in config.benchmarks:
            metrics = json.loads((run.eval_dir(bench) / "metrics.json").read_text())
            assert metrics["run"] == run.name and metrics["benchmark"] == bench
    md = (out / "report.md").read_text()
    for system in ("zero-shot", "mono", "cross", "hybrid@0.5"):
        assert re.search(rf"^\| tiny \| {re.escape(system)} \| 1 \| 0\.\d{{3}} \|", md, re.M), system
    assert f"| XLM-R fine-tuned | {PUBLISHED_LABEL} |" not in md  # toy benchmarks are not XQuAD-R
    assert "| cross | mono | monolingual |" in md and "p (Holm)" in md
    for verdict_row in ("[toy-a] mono is best (or tied)", "shows the same ordering as"):
        assert verdict_row in md
    assert re.search(r"\| (holds|not decided|not checked|does not hold) \|", md)
    assert "Unit resampled: groups, a question with all its translations" in md  # toy-a
    assert "toy-b@de,en: no parallel groups known" in md and "Unit resampled: single queries" in md
    assert re.search(r"Holm family: 12 tests\. Margin: ±0\.005 mAP", md)
    _same_p_values_in_table_and_verdicts(md)
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert len(figures) == 14 and all(f"]({'figures'}/{name})" in md for name in figures)
    # mono, cross and one hybrid: the alpha curve through alpha 0 (cross), 0.5 and 1 (mono), one per benchmark
    assert [f for f in figures if f.endswith("-alpha.png")] == ["tiny-toy-a-alpha.png", "tiny-toy-b@de,en-alpha.png"]
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 14 and "<table>" in page
    assert not re.search(r"(src|href)=\"(http|//|figures/)", page)  # self-contained
    assert "left out" not in md


def _same_p_values_in_table_and_verdicts(md: str) -> None:
    """Every p_holm a verdict quotes is the p (Holm) of that test in its benchmark's significance table."""
    tables = {}
    for section in md.split("\n### ")[1:]:
        bench = section.split("\n", 1)[0].split(" on ", 1)[1]
        for line in section.split("\n## ", 1)[0].splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) > 7 and cells[0] not in ("A", "---"):
                tables.setdefault(bench, {})[(cells[0], cells[1], cells[2])] = cells[6]
                tables[bench][(cells[1], cells[0], cells[2])] = cells[6]
    quoted = re.findall(r"\| \[([^\]]+)\] [^|]*\| [a-z ]+ \| ([^|]+) \|", md)
    checked = 0
    for bench, evidence in quoted:
        for key, w, lo, p in re.findall(r"(\w+): (\S+) [\d.]+ vs (\S+) [\d.]+ \([^;]+; [^,]+, [^,]+, "
                                        r"p_holm=([\d.e-]+)", evidence):
            assert tables[bench][(w, lo, key)] == p, (bench, w, lo, key)
            checked += 1
    assert checked >= 10


def test_resume_does_only_what_is_missing_and_reports_only_complete_runs(grid, monkeypatch, capsys):
    path, out, _ = grid
    monkeypatch.setattr(report_module, "figures", lambda *a: [])  # drawn in the test above; saves ~10 s
    config = load_compare_config(path)
    runs = {r.name: r for r in expand(config)}
    cross, hybrid = runs["tiny/cross/seed0"], runs["tiny/hybrid@0.5/seed0"]
    second = config.benchmarks[1]
    (cross.eval_dir(second) / "metrics.json").unlink()
    # an interruption after the step-3 checkpoint: no final model, no summary.json (the completion marker)
    for name in ("summary.json", "model", "checkpoints/step-000006"):
        target = hybrid.train_dir / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    untouched = {name: (r.eval_dir(config.in_domain) / "metrics.json").stat().st_mtime_ns
                 for name, r in runs.items() if name != hybrid.name}

    assert main_compare([str(path), "--report-only"]) == 0
    md = (out / "report.md").read_text()
    assert "| hybrid@0.5 |" not in md and "-hybrid@0.5" not in md  # no table row, no figure
    assert "2 run(s) are not complete" in md
    assert "tiny | cross | 1 |" in md  # cross still counts on the benchmark it has

    capsys.readouterr()
    assert main_compare([str(path), "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert "tiny/hybrid@0.5/seed0: interrupted: will resume" in listing and "4 task(s) to do" in listing

    calls = []
    real_train, real_eval = trainer_module.train, runner.evaluate_run
    monkeypatch.setattr(trainer_module, "train", lambda cfg, resume=False: calls.append(
        ("train", cfg.output_dir, resume)) or real_train(cfg, resume))
    monkeypatch.setattr(runner, "evaluate_run", lambda run, bench, *a: calls.append(
        ("eval", run.name, bench)) or real_eval(run, bench, *a))
    before = (out / "report.md").stat().st_mtime_ns
    assert main_compare([str(path), "--no-progress", "--no-report"]) == 0  # trains and evaluates, reports nothing
    assert (out / "report.md").stat().st_mtime_ns == before and "--report-only" in capsys.readouterr().out
    assert main_compare([str(path), "--report-only"]) == 0
    assert calls == [("eval", cross.name, second), ("train", str(hybrid.train_dir), True),
                     ("eval", hybrid.name, config.in_domain), ("eval", hybrid.name, second)]
    steps = [r["step"] for r in read_metrics(hybrid.train_dir / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # resumed at the step-3 checkpoint, not restarted
    assert untouched == {name: (r.eval_dir(config.in_domain) / "metrics.json").stat().st_mtime_ns
                         for name, r in runs.items() if name != hybrid.name}
    md = (out / "report.md").read_text()
    assert "| tiny | hybrid@0.5 | 1 |" in md and "not complete" not in md
    assert "In-domain:" in capsys.readouterr().out  # the headline table is printed

    # a memory knob is not a change of what trains: the finished runs are reused, nothing runs
    assert main_compare([str(path), "train.grad_cache_chunk=2", "train.encode_chunk_size=4", "--no-progress"]) == 0
    assert len(calls) == 4
    # a changed grid does not silently reuse models trained the old way
    assert main_compare([str(path), "train.lr=0.01"]) == 2
    assert "trained with another config" in capsys.readouterr().err and len(calls) == 4  # nothing ran
    before = (out / "report.md").stat().st_mtime_ns  # nor reports them under the changed config's name
    assert main_compare([str(path), "train.lr=0.01", "--report-only"]) == 2
    assert "trained with another config" in capsys.readouterr().err
    assert (out / "report.md").stat().st_mtime_ns == before


def fake_metrics(shift: float) -> dict:
    """A metrics.json with every block the report reads; values move with `shift`."""
    langs = ["de", "en"]
    return {
        "monolingual": {"map": 0.8 + shift, "per_language": {x: {"map": 0.8 + shift} for x in langs}},
        "crosslingual": {"map": 0.6 + shift, "per_pair": {"de-en": {"map": 0.6 + shift}, "en-de": {"map": 0.6}}},
        "multilingual": {"map": 0.5 + shift, "rank_distance": 9 - shift, "own_language_top10": 0.7,
                         "per_language": {x: {"map": 0.5, "rank_distance": 9 - shift} for x in langs}},
    }


def test_alpha_sweep_curve_published_row_and_headline(tmp_path):
    from hybridbatch.experiments.grid import compare_config_from_dict
    from hybridbatch.experiments.report import Results, figures, headline_table

    bench = "xquad-r:test@de,en"
    config = compare_config_from_dict({
        "base_models": ["me5-small"], "samplers": ["mono", "cross", "hybrid"], "alphas": [0, 0.5, 1],
        "seeds": [0, 1], "benchmarks": [bench],
        "train": {"data": {"source": "xquad-r:train", "languages": ["en", "de"]}, "batch_size": 8, "steps": 5},
        "output_dir": str(tmp_path)})
    results = Results(config, systems={"me5-small": ["zero-shot", "mono", "cross", "hybrid@0", "hybrid@0.5",
                                                     "hybrid@1"]})
    for i, system in enumerate(results.systems["me5-small"]):
        seeds = 1 if system == "zero-shot" else 2
        results.metrics[("me5-small", system, bench)] = [fake_metrics(0.01 * i + 0.002 * s) for s in range(seeds)]
    stems = [stem for stem, png, _ in figures(results, "me5-small", bench)]
    assert stems[-1] == "me5-small-xquad-r-test@de,en-alpha" and len(stems) == 3 + 2 + 1 + 1
    table = headline_table(results)
    assert "| me5-small | hybrid@0.5 | 2 | 0.841 ± 0.001 | 0.641 ± 0.001 | 0.541 ± 0.001 | 8.96 ± 0.00 |" in table
    assert f"| XLM-R fine-tuned | {PUBLISHED_LABEL} | – | 0.79 | 0.70 | 0.59 | – |" in table


def test_seed_agreement_counts_seeds_with_the_sign_of_the_pooled_difference():
    from hybridbatch.experiments.report import SIGNIFICANCE_HEADER, seed_agreement, significance_rows
    from hybridbatch.experiments.significance import Comparison

    def row(seed, mono_map, rank_distance):
        return {"seed": seed, "monolingual": {"map": mono_map}, "crosslingual": None,
                "multilingual": {"map": 0.5, "rank_distance": rank_distance}}

    a = [row(0, 0.80, 100.0), row(1, 0.82, 90.0), row(2, 0.79, 120.0)]
    b = [row(2, 0.78, 110.0), row(0, 0.79, 105.0), row(1, 0.83, 95.0)]  # paired by seed, not by position
    assert seed_agreement(a, b, "monolingual", +0.01) == "2/3"  # seeds 0, 2 up; seed 1 down
    assert seed_agreement(a, b, "monolingual", -0.01) == "1/3"
    assert seed_agreement(a, b, "rank_distance", -5.0) == "2/3"  # seeds 0, 1 lower; seed 2 higher
    assert seed_agreement(a, b, "crosslingual", +0.01) == "–"  # no scores
    assert seed_agreement(a[:1], b, "monolingual", +0.01) == "–"  # one common seed: nothing to count
    assert seed_agreement(a, [row(5, 0.1, 1.0), row(6, 0.1, 1.0)], "monolingual", 0.01) == "–"

    def compare(x, y, key):
        return Comparison(0.01, (0.0, 0.02), 0.01, 10, "bootstrap") if key == "monolingual" else None

    rows = significance_rows(["mono", "cross"], compare, 0.05, {"cross": a, "mono": b})
    assert len(rows) == 1 and len(rows[0]) == len(SIGNIFICANCE_HEADER)
    assert rows[0][:3] == ["cross", "mono", "monolingual"] and rows[0][-1] == "2/3"
    assert significance_rows(["mono", "cross"], compare, 0.05)[0][-1] == "–"  # without seed rows


def test_alpha_curve_bands_resample_parallel_groups(tmp_path):
    import gzip

    import numpy as np

    from hybridbatch.experiments.grid import compare_config_from_dict
    from hybridbatch.experiments.report import Results, alpha_intervals, figures

    bench = "xquad-r:test@de,en"
    raw = {"base_models": ["me5-small"], "samplers": ["hybrid"], "alphas": [0, 1], "seeds": [0],
           "benchmarks": [bench], "include_zero_shot": False,
           "train": {"data": {"source": "xquad-r:train", "languages": ["en", "de"]}, "batch_size": 8, "steps": 5},
           "output_dir": str(tmp_path)}
    rng = np.random.default_rng(0)
    question = rng.normal(0, 0.2, 50)  # a question's score, shared by its two translations
    bands = {}
    for unit in ("group", "query"):
        config = compare_config_from_dict(dict(raw, significance={"unit": unit, "n_resamples": 2000}))
        results = Results(config, systems={"me5-small": ["hybrid@0", "hybrid@1"]})
        for alpha in (0, 1):
            folder = tmp_path / f"a{alpha}"
            folder.mkdir(exist_ok=True)
            with gzip.open(folder / "per_query.tsv.gz", "wt") as handle:
                handle.write("setting\tquery\tmap\trank_distance\n")
                for i in range(50):
                    for lang in ("de", "en"):
                        value = float(np.clip(0.5 + 0.1 * alpha + question[i], 0, 1))
                        handle.write(f"multilingual\t{lang}:q{i}\t{value}\t{100 - 10 * alpha}\n")
            results.dirs[("me5-small", f"hybrid@{alpha:g}", bench)] = [folder]
            results.metrics[("me5-small", f"hybrid@{alpha:g}", bench)] = [fake_metrics(0.1 * alpha)]
        bands[unit] = alpha_intervals(results, "me5-small", bench, [0, 1])
        assert set(bands[unit]) == {0, 1} and set(bands[unit][0]) == {"multilingual", "rank_distance"}
        stems = [stem for stem, _, caption in figures(results, "me5-small", bench) if "alpha" in stem]
        assert stems == ["me5-small-xquad-r-test@de,en-alpha"]
    low, high = bands["group"][1]["multilingual"]
    assert low < 0.6 + question.clip(-0.6, 0.4).mean() < high
    width = {u: bands[u][1]["multilingual"][1] - bands[u][1]["multilingual"][0] for u in bands}
    assert width["group"] > 1.3 * width["query"]  # two identical translations: ~sqrt(2) wider by group
