"""The generic multilingual layout: round trip, and every kind of bad input named by file, line and field."""

import json

import pytest

from hybridbatch.data.beir_layout import load_generic, write_generic
from hybridbatch.data.benchmark import Benchmark, Text
from hybridbatch.data.errors import InputError


def _write(folder, corpus, queries, qrels):
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" if isinstance(r, dict) else r + "\n"
                                                 for r in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" if isinstance(r, dict) else r + "\n"
                                                  for r in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(qrels))


GOOD_CORPUS = [{"_id": "c1", "text": "Hallo", "lang": "de"}, {"_id": "c2", "text": "Hello", "lang": "en"}]
GOOD_QUERIES = [{"_id": "q1", "text": "hi", "lang": "en"}, {"_id": "q2", "text": "servus", "lang": "de"}]
GOOD_QRELS = ["q1\tc1\t1\n", "q1\tc2\t1\n", "q2\tc1\t2\n"]


def test_round_trip(tmp_path):
    bench = Benchmark("b", [Text("q1", "hi", "en")], [Text("c1", "Hallo", "de"), Text("c2", "x", "en")],
                      {"q1": {"c1": 1, "c2": 2}})
    write_generic(bench, tmp_path / "b")
    back = load_generic(tmp_path / "b")
    assert back.queries == bench.queries and back.corpus == bench.corpus and back.qrels == bench.qrels


def test_documented_skips_are_counted(tmp_path):
    corpus = [*GOOD_CORPUS, {"_id": "c3", "text": "   ", "lang": "en"}]
    queries = [*GOOD_QUERIES, {"_id": "q3", "text": "nobody judged me", "lang": "en"}]
    _write(tmp_path, corpus, queries, [*GOOD_QRELS, "q2\tc3\t1\n", "q2\tc2\t0\n"])
    bench = load_generic(tmp_path)
    assert bench.skipped == {"empty corpus texts": 1, "judgements of skipped texts": 1,
                             "non-relevant judgements (score <= 0)": 1, "queries with no relevant item": 1}
    assert [q.id for q in bench.queries] == ["q1", "q2"]


@pytest.mark.parametrize("corpus, qrels, file, line, field", [
    ([GOOD_CORPUS[0], "{broken"], GOOD_QRELS, "corpus.jsonl", 2, None),
    ([GOOD_CORPUS[0], {"_id": "c2", "lang": "en"}], GOOD_QRELS, "corpus.jsonl", 2, "text"),
    ([GOOD_CORPUS[0], {"_id": "c2", "text": 5, "lang": "en"}], GOOD_QRELS, "corpus.jsonl", 2, "text"),
    ([GOOD_CORPUS[0], {"_id": "c2", "text": "x", "lang": "xx-klingon"}], GOOD_QRELS, "corpus.jsonl", 2, "lang"),
    ([GOOD_CORPUS[0], {"_id": "c2", "text": "x", "lang": 7}], GOOD_QRELS, "corpus.jsonl", 2, "lang"),
    ([GOOD_CORPUS[0], {"_id": "c1", "text": "x", "lang": "en"}], GOOD_QRELS, "corpus.jsonl", 2, "_id"),
    (GOOD_CORPUS, [*GOOD_QRELS, "q1\tc9\t1\n"], "test.tsv", 5, "corpus-id"),
    (GOOD_CORPUS, [*GOOD_QRELS, "q9\tc1\t1\n"], "test.tsv", 5, "query-id"),
    (GOOD_CORPUS, [*GOOD_QRELS, "q1\tc1\n"], "test.tsv", 5, None),
    (GOOD_CORPUS, [*GOOD_QRELS, "q1\tc1\thigh\n"], "test.tsv", 5, "score"),
])
def test_bad_input_names_file_line_field(tmp_path, corpus, qrels, file, line, field):
    _write(tmp_path, corpus, GOOD_QUERIES, qrels)
    with pytest.raises(InputError) as err:
        load_generic(tmp_path)
    assert err.value.path.endswith(file) and err.value.line == line and err.value.field == field
    assert f"{file}:{line}" in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="missing file"):
        load_generic(tmp_path)
