"""Issue 15, evaluation part: no metric outside [0, 1], no NaN called a result, scoring input rules, benchmark paths.

Each test here failed before its fix: NaN embeddings gave mAP 1.0 / 1.5 and exit 0; a BOM dropped a query;
duplicate run lines silently kept the last; an empty run printed NaN metrics with exit 0; grades past int32
ate memory or gave zeros; `1` then `0` judgements kept the pair relevant; `en-US` queries against an `en`
corpus left the monolingual setting; a missing file of a benchmark folder said "unknown LAReQA benchmark".
"""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

from hybridbatch.cli import main
from hybridbatch.cli.exit_codes import exit_code_for, one_line
from hybridbatch.data.beir_layout import load_generic, write_generic
from hybridbatch.data.benchmark import Benchmark, Text
from hybridbatch.data.errors import InputError
from hybridbatch.evaluation.metrics import MetricOutOfRange, metrics_from_ranks
from hybridbatch.evaluation.run import load_benchmark
from hybridbatch.evaluation.score_run import score_run
from hybridbatch.evaluation.settings import evaluate_embeddings
from hybridbatch.retrieval.search import NonFiniteEmbeddings

LANGS = ("en", "de", "fr")


def toy_bench(n: int = 4) -> Benchmark:
    """n questions in 3 languages, each relevant to its answer in every language (LAReQA-style)."""
    queries = [Text(f"{lang}-q{i}", f"question {i}", lang) for lang in LANGS for i in range(n)]
    corpus = [Text(f"{lang}-c{i}", f"answer {i}", lang) for lang in LANGS for i in range(n)]
    qrels = {f"{lang}-q{i}": {f"{y}-c{i}": 1 for y in LANGS} for lang in LANGS for i in range(n)}
    return Benchmark("toy", queries, corpus, qrels)


def toy_embeddings(bench: Benchmark, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(len(bench.queries), 8)).astype(np.float32)
    c = rng.normal(size=(len(bench.corpus), 8)).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True), c / np.linalg.norm(c, axis=1, keepdims=True)


# ------------------------------------------------------------------------------------- NaN and metric range
@pytest.mark.parametrize("where", ["all queries", "all corpus", "one corpus row", "one query row"])
def test_non_finite_embeddings_stop_the_evaluation_naming_the_texts(where):
    bench = toy_bench()
    q, c = toy_embeddings(bench)
    if where == "all queries":
        q[:] = np.nan
    elif where == "all corpus":
        c[:] = np.nan
    elif where == "one corpus row":
        c[5] = np.inf  # de-c1 (the corpus is reordered by language inside; the id must still be right)
    else:
        q[2, 3] = np.nan
    with pytest.raises(NonFiniteEmbeddings) as err:
        evaluate_embeddings(bench, q, c)
    message = str(err.value)
    assert "non-finite" in message and "nothing evaluated" in message
    if where == "one corpus row":
        assert "corpus de-c1" in message and "0 query row(s), 1 corpus row(s)" in message
    if where == "one query row":
        assert "queries en-q2" in message
    if where == "all queries":
        assert "(+7 more)" in message  # 12 rows, 5 named
    assert exit_code_for(err.value) == 3


def test_scores_that_overflow_are_stopped_too():
    bench = toy_bench()
    q, c = toy_embeddings(bench)
    q *= np.float32(3e19)
    c *= np.float32(3e19)  # finite embeddings whose dot products are inf
    with pytest.raises(NonFiniteEmbeddings, match="overflow"):
        evaluate_embeddings(bench, q, c)


def test_finite_embeddings_still_give_metrics_within_the_unit_interval():
    bench = toy_bench()
    evaluation = evaluate_embeddings(bench, *toy_embeddings(bench))
    for setting in ("monolingual", "crosslingual", "multilingual"):
        for measure in evaluation.metrics["measures"]:
            assert 0.0 <= evaluation.metrics[setting][measure] <= 1.0


def test_ranks_that_are_not_a_ranking_are_an_internal_error_not_a_metric():
    # two relevant items of one query at rank 1: the NaN case gave AP = (1/1 + 2/1) / 2 = 1.5
    with pytest.raises(MetricOutOfRange, match="share a rank"):
        metrics_from_ranks(np.array([0, 0]), np.array([1, 1]), np.array([1, 1]))
    with pytest.raises(MetricOutOfRange):
        metrics_from_ranks(np.array([0]), np.array([0]), np.array([1]))
    labels, scores = metrics_from_ranks(np.array([0, 0]), np.array([1, 3]), np.array([1, 1]))
    assert scores["map"][0] == pytest.approx((1 / 1 + 2 / 3) / 2)
    error = MetricOutOfRange("map = 1.5")
    assert exit_code_for(error) == 1 and "internal error" in one_line(error)


def test_eval_cli_with_a_model_that_outputs_nan_exits_3_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from hybridbatch.evaluation import run as eval_run
    from hybridbatch.models.tiny import build_tiny_sentence_transformer

    bench = toy_bench()
    write_generic(bench, tmp_path / "bench")
    model = build_tiny_sentence_transformer(tmp_path / "model", texts=[t.text for t in bench.queries + bench.corpus])
    real = eval_run.encode_texts

    def nan_encoder(*args, **kwargs):
        emb = real(*args, **kwargs)
        emb[:] = np.nan
        return emb

    monkeypatch.setattr(eval_run, "encode_texts", nan_encoder)
    code = main(["eval", "--model", str(model), "--benchmark", str(tmp_path / "bench"), "--out", str(tmp_path / "out"),
                 "--threads", "1"])
    err = capsys.readouterr().err  # progress bars first, then the one error line
    assert code == 3 and "Traceback" not in err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("hybridbatch: error: bench: non-finite (NaN or inf) embeddings")
    assert not (tmp_path / "out" / "metrics.json").exists()


# ------------------------------------------------------------------------------------------------- score
@pytest.fixture()
def scored(tmp_path):
    """A generic-layout benchmark and a TREC run over it where every query ranks something."""
    bench = toy_bench()
    write_generic(bench, tmp_path / "bench")
    rng = np.random.default_rng(1)
    lines = []
    for q in bench.queries:
        docs = rng.permutation([c.id for c in bench.corpus])[:6]
        lines += [f"{q.id} Q0 {d} {r} {10 - r:.1f} toy" for r, d in enumerate(docs, start=1)]
    return tmp_path, lines


def write_lines(path, lines, prefix: bytes = b""):
    path.write_bytes(prefix + "".join(line + "\n" for line in lines).encode("utf-8"))
    return path


def test_a_bom_does_not_drop_the_first_query(scored):
    tmp, lines = scored
    qrels = tmp / "bench" / "qrels" / "test.tsv"
    plain = score_run(qrels, write_lines(tmp / "plain.trec", lines))
    with_bom = score_run(qrels, write_lines(tmp / "bom.trec", lines, prefix=b"\xef\xbb\xbf"))
    assert with_bom == plain
    bom_qrels = tmp / "bom_qrels.tsv"
    bom_qrels.write_bytes(b"\xef\xbb\xbf" + qrels.read_bytes())
    assert score_run(bom_qrels, tmp / "plain.trec") == plain


def test_a_document_listed_twice_for_one_query_is_an_error_naming_both_lines(scored):
    tmp, lines = scored
    run = write_lines(tmp / "dup.trec", [*lines, lines[2].replace(" 7.0 ", " 99.0 ")])
    with pytest.raises(InputError, match=rf"dup.trec:{len(lines) + 1}: .*again \(first at line 3\)"):
        score_run(tmp / "bench" / "qrels" / "test.tsv", run)


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xef\xbb\xbf"])
def test_an_empty_run_is_an_error_not_nan_metrics(scored, content, capsys):
    tmp, _ = scored
    (tmp / "empty.trec").write_bytes(content)
    assert main(["score", "--qrels", str(tmp / "bench" / "qrels" / "test.tsv"), "--run", str(tmp / "empty.trec")]) == 2
    assert "the run is empty" in capsys.readouterr().err


def test_a_run_with_no_judged_query_is_an_error(scored):
    tmp, _ = scored
    run = write_lines(tmp / "other.trec", ["zz-q1 Q0 en-c1 1 1.0 x"])
    with pytest.raises(InputError, match="none of the run's 1 queries is in the qrels"):
        score_run(tmp / "bench" / "qrels" / "test.tsv", run)


@pytest.mark.parametrize("given", ["--corpus", "--queries"])
def test_corpus_without_queries_is_a_usage_error(scored, given, capsys):
    tmp, lines = scored
    run = write_lines(tmp / "run.trec", lines)
    extra = tmp / "bench" / ("corpus.jsonl" if given == "--corpus" else "queries.jsonl")
    assert main(["score", "--qrels", str(tmp / "bench" / "qrels" / "test.tsv"), "--run", str(run), given,
                 str(extra)]) == 2
    assert "--corpus and --queries go together" in capsys.readouterr().err


@pytest.mark.parametrize("damage, expected", [
    ("latin1", r"bad.trec:2: not valid UTF-8"),
    ("directory", r"bad.trec: run file is a folder, expected a file"),
    ("loop", r"bad.trec: run file is a symlink loop"),
    ("dangling", r"bad.trec: run file is a dangling symlink"),
])
def test_unreadable_runs_are_one_line_errors(scored, damage, expected, capsys):
    tmp, lines = scored
    bad = tmp / "bad.trec"
    if damage == "latin1":
        bad.write_bytes(lines[0].encode() + b"\n" + "en-q1 Q0 en-c1 1 1.0 caf\u00e9\n".encode("latin-1"))
    elif damage == "directory":
        bad.mkdir()
    elif damage == "loop":
        os.symlink(bad, bad)
    else:
        os.symlink(tmp / "nowhere", bad)
    assert main(["score", "--qrels", str(tmp / "bench" / "qrels" / "test.tsv"), "--run", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hybridbatch: error: ")
    import re

    assert re.search(expected, err[0]), err[0]


@pytest.mark.parametrize("grade", ["3e9", "2147483648", "18446744073709551617", "-2147483649", "1000001"])
def test_grades_outside_the_bound_are_refused_naming_file_and_line(scored, grade):
    # 3e9 used 21 GB and was killed; 2**31 gave all-zero metrics; 2**64 + 1 a raw OverflowError
    tmp, lines = scored
    qrels = tmp / "qrels.tsv"
    qrels.write_text(f"query-id\tcorpus-id\tscore\nen-q0\ten-c0\t1\nen-q1\ten-c1\t{grade}\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"qrels.tsv:3: field 'score': .*outside \[-1000000, 1000000\]"):
        score_run(qrels, write_lines(tmp / "run.trec", lines))


def test_the_largest_allowed_grade_is_still_scored_in_bounded_memory(scored):
    import resource

    from hybridbatch.data.beir_layout import GRADE_MAX

    tmp, lines = scored
    qrels = tmp / "qrels.tsv"
    qrels.write_text(f"en-q0\ten-c0\t{GRADE_MAX}\nen-q0\tde-c0\t1\n", encoding="utf-8")
    result = score_run(qrels, write_lines(tmp / "run.trec", lines))
    assert result["queries"] == 1 and 0.0 <= result["ndcg@10"] <= 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 4 * 2**20  # KiB: the process stayed under 4 GiB


# --------------------------------------------------------------------------------------- generic layout
def layout_with_qrels(tmp_path, qrels_lines: list[str], query_lang: str = "en", corpus_lang: str = "en"):
    folder = tmp_path / "bench"
    (folder / "qrels").mkdir(parents=True)
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "what", "lang": query_lang}) + "\n")
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"c{i}", "text": f"doc {i}", "lang": corpus_lang})
                                                 + "\n" for i in (1, 2)))
    (folder / "qrels" / "test.tsv").write_text("".join(line + "\n" for line in qrels_lines))
    return folder


@pytest.mark.parametrize("first, second", [("1", "0"), ("1", "3"), ("0", "2")])
def test_conflicting_judgements_of_one_pair_name_both_lines(tmp_path, first, second):
    folder = layout_with_qrels(tmp_path, ["q1\tc2\t1", f"q1\tc1\t{first}", f"q1\tc1\t{second}"])
    with pytest.raises(InputError, match=rf"test.tsv:3: \(q1, c1\) judged {second} here and {first} at line 2"):
        load_generic(folder)


def test_identical_repeated_judgements_are_counted_skips(tmp_path):
    bench = load_generic(layout_with_qrels(tmp_path, ["q1\tc1\t2", "q1\tc1\t2", "q1\tc2\t0", "q1\tc2\t0"]))
    assert bench.qrels == {"q1": {"c1": 2}}
    assert bench.skipped["repeated identical judgements"] == 2


def test_a_query_tag_that_matches_the_corpus_only_without_its_subtag_is_an_error(tmp_path):
    with pytest.raises(InputError, match=r"queries in 'en-US' but the corpus has 'en'"):
        load_generic(layout_with_qrels(tmp_path, ["q1\tc1\t1"], query_lang="en-US", corpus_lang="en"))


def test_exactly_matching_subtags_stay_monolingual(tmp_path):
    bench = load_generic(layout_with_qrels(tmp_path, ["q1\tc1\t1"], query_lang="pt-BR", corpus_lang="pt_br"))
    q, c = np.eye(1, 4, dtype=np.float32), np.eye(2, 4, dtype=np.float32)
    evaluation = evaluate_embeddings(bench, q, c)
    assert evaluation.metrics["monolingual"]["per_language"]["pt-BR"]["map"] == 1.0
    assert evaluation.metrics["crosslingual"] is None


# ------------------------------------------------------------------------------------------ benchmark paths
@pytest.mark.parametrize("damage, expected", [
    ("no corpus", r"corpus.jsonl: missing file of the generic layout .*: it does not exist"),
    ("corpus is a folder", r"corpus.jsonl: missing file of the generic layout .*: it is a folder"),
    ("corpus is a symlink loop", r"corpus.jsonl: missing file of the generic layout .*: it is a symlink loop"),
    ("benchmark is a symlink loop", r"bench: benchmark is a symlink loop"),
    ("benchmark is a file", r"bench: benchmark is a file, expected a folder"),
    ("no such benchmark", r"bench: unknown benchmark: not xquad-r"),
])
def test_a_damaged_benchmark_folder_is_named_not_an_unknown_lareqa_benchmark(tmp_path, damage, expected):
    folder = tmp_path / "bench"
    write_generic(toy_bench(), folder)
    corpus = folder / "corpus.jsonl"
    if damage == "no corpus":
        corpus.unlink()
    elif damage == "corpus is a folder":
        corpus.unlink()
        corpus.mkdir()
    elif damage == "corpus is a symlink loop":
        corpus.unlink()
        os.symlink(corpus, corpus)
    else:
        import shutil

        shutil.rmtree(folder)
        if damage == "benchmark is a symlink loop":
            os.symlink(folder, folder)
        elif damage == "benchmark is a file":
            folder.write_text("x")
    with pytest.raises(InputError, match=expected) as err:
        load_benchmark(folder)
    assert "LAReQA" not in str(err.value)


def test_a_missing_or_damaged_lareqa_language_file_is_named(tmp_path):
    root = tmp_path / "lareqa"
    (root / "xquad-r").mkdir(parents=True)
    (root / "xquad-r" / "en.json").write_text(json.dumps({"data": []}))
    (root / "xquad-r" / "ar.json").mkdir()  # a folder where a file should be
    with pytest.raises(InputError, match=r"xquad-r/ar.json: LAReQA language file is a folder"):
        load_benchmark("xquad-r", data_dir=root)
    with pytest.raises(InputError, match=r"unknown LAReQA benchmark 'mlqa'"):  # a real typo of a name still says so
        from hybridbatch.data.lareqa import load_lareqa_articles

        load_lareqa_articles("mlqa", data_dir=root)


# --------------------------------------------------------------------------------------------- exit codes
def test_one_table_maps_exception_kinds_to_exit_codes():
    from hybridbatch.training.config import ConfigError
    from hybridbatch.training.rundir import RunExists, RunLocked
    from hybridbatch.training.trainer import NonFiniteLoss

    assert exit_code_for(InputError("x")) == 2 and exit_code_for(ConfigError("x")) == 2
    assert exit_code_for(FileNotFoundError(errno.ENOENT, "No such file", "f")) == 2
    assert exit_code_for(OSError(errno.ELOOP, "Too many levels of symbolic links", "f")) == 2
    assert exit_code_for(IsADirectoryError(errno.EISDIR, "Is a directory", "f")) == 2
    assert exit_code_for(NonFiniteLoss("nan")) == 3 and exit_code_for(NonFiniteEmbeddings("nan")) == 3
    assert exit_code_for(RunLocked("busy")) == 4 and exit_code_for(RunExists("there")) == 4
    assert exit_code_for(OSError(errno.ENOSPC, "No space left on device")) == 5
    assert exit_code_for(PermissionError(errno.EACCES, "Permission denied", "f")) == 5
    assert exit_code_for(KeyError("k")) == 1 and exit_code_for(RuntimeError("?")) == 1
    assert exit_code_for(KeyboardInterrupt()) == 130
    long = one_line(InputError("a" * 1000 + "\nsecond line"))
    assert long.startswith("hybridbatch: error: aaa") and len(long) <= len("hybridbatch: error: ") + 300
    assert "\n" not in long
    assert one_line(ConfigError("c.yaml: invalid config\n  steps: unknown key\n  seed: not an int")) == \
        "hybridbatch: error: c.yaml: invalid config; steps: unknown key; seed: not an int"
