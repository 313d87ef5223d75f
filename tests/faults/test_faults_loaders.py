"""Property tests over the loaders of every documented text layout: bad input is named, never a crash.

For the parallel training JSONL (`data/parallel.py`), the generic multilingual BEIR layout
(`data/beir_layout.py`) and LAReQA JSON (`data/lareqa.py`): a valid file with awkward but legal text (RTL,
NFC and NFD, control characters, very long) loads with every text unchanged; a file damaged in any way
(truncated, invalid UTF-8, a field deleted or of the wrong type, a bad language code, a duplicate id, an
unknown id in qrels) gives `InputError` naming the file, and the line and field where the damage can be
located, or a documented, counted skip. No other exception type (KeyError, TypeError, UnicodeDecodeError,
JSONDecodeError, a bare ValueError...) may escape.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.faults_inputs import (
    BAD_LANGS,
    bad_langs,
    damaged_bytes,
    good_langs,
    ids,
    lines_bytes,
    mutate_json,
    texts,
)
from hybridbatch.data.beir_layout import load_generic
from hybridbatch.data.errors import InputError
from hybridbatch.data.languages import normalize_lang
from hybridbatch.data.lareqa import LANGUAGES, load_lareqa, parse_lareqa_file
from hybridbatch.data.parallel import load_groups_jsonl

FAST = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow,
                                                                       HealthCheck.data_too_large])


def load_or_input_error(load: Callable[[], Any]) -> tuple[Any, InputError | None]:
    """Run a loader; anything but success or `InputError` fails the test (with the exception shown)."""
    try:
        return load(), None
    except InputError as exc:
        return None, exc


# --------------------------------------------------------------------------------------------- parallel JSONL
@st.composite
def parallel_records(draw) -> list[dict]:
    langs = draw(st.lists(good_langs, min_size=1, max_size=3, unique_by=lambda c: normalize_lang(c)))
    n = draw(st.integers(1, 4))
    gids = draw(st.lists(ids, min_size=n, max_size=n, unique=True))
    records = []
    for gid in gids:
        record = {"id": gid, "queries": {lang: draw(texts) for lang in langs},
                  "positives": {lang: draw(texts) for lang in langs}}
        if draw(st.booleans()):
            record["negatives"] = {langs[0]: draw(st.lists(texts, min_size=1, max_size=2))}
        records.append(record)
    return records


@FAST
@given(records=parallel_records())
def test_parallel_valid_files_load_every_text_unchanged(tmp_path, records):
    path = tmp_path / "groups.jsonl"
    path.write_bytes(lines_bytes(records))
    groups = load_groups_jsonl(path)
    assert [g.id for g in groups] == [r["id"] for r in records]
    for group, record in zip(groups, records, strict=True):
        assert group.queries == {normalize_lang(k): v for k, v in record["queries"].items()}
        assert group.positives == {normalize_lang(k): v for k, v in record["positives"].items()}
        assert group.negatives == {normalize_lang(k): tuple(v) for k, v in record.get("negatives", {}).items()}


@FAST
@given(records=parallel_records(), data=st.data())
def test_parallel_field_damage_names_file_line_and_field(tmp_path, records, data):
    index = data.draw(st.integers(0, len(records) - 1))
    mutated, where = data.draw(mutate_json(records[index]))
    records = [*records[:index], mutated, *records[index + 1:]]
    path = tmp_path / "groups.jsonl"
    path.write_bytes(lines_bytes(records))
    groups, error = load_or_input_error(lambda: load_groups_jsonl(path))
    if error is None:  # the mutation happened to be legal (e.g. negatives deleted, a string for a string)
        assert len(groups) == len(records)
        return
    assert (error.path, error.line) == (str(path), index + 1), error
    if where:
        assert error.field is not None and error.field.split(".")[0] == str(where[0]), error


@FAST
@given(records=parallel_records(), data=st.data())
def test_parallel_damaged_bytes_give_input_error(tmp_path, records, data):
    raw = lines_bytes(records)
    damaged, kind, line = data.draw(damaged_bytes(raw))
    path = tmp_path / "groups.jsonl"
    path.write_bytes(damaged)
    groups, error = load_or_input_error(lambda: load_groups_jsonl(path))
    if error is None:
        assert kind in ("truncate", "nul-bytes")  # cut at a line end, or a NUL inside a text
        return
    assert error.path == str(path)
    if kind == "invalid-utf8":
        assert error.line == line and "UTF-8" in error.message


@FAST
@given(records=parallel_records(), code=bad_langs, side=st.sampled_from(["queries", "positives", "negatives"]))
def test_parallel_bad_language_codes_are_named(tmp_path, records, code, side):
    records[-1][side] = {**records[-1].get(side, {}), code: ["text"] if side == "negatives" else "text"}
    path = tmp_path / "groups.jsonl"
    path.write_bytes(lines_bytes(records))
    with pytest.raises(InputError) as err:
        load_groups_jsonl(path)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), len(records), f"{side}.{code}")


def test_parallel_duplicate_ids_lone_surrogates_deep_nesting_and_huge_numbers(tmp_path):
    good = {"id": "g1", "queries": {"en": "q"}, "positives": {"en": "p"}}
    cases = {
        "duplicate id": (lines_bytes([good, good]), 2, "id"),
        # valid JSON, but "\ud800" is half of a UTF-16 pair: no tokenizer or UTF-8 writer can take it
        "lone surrogate": (lines_bytes([good]) + b'{"id": "g2", "queries": {"en": "a\\ud800b"}, '
                                                 b'"positives": {"en": "p"}}\n', 2, "queries.en"),
        "deep nesting": (lines_bytes([good]) + b"[" * 100_000 + b"\n", 2, None),
        "huge integer": (lines_bytes([good]) + b'{"id": ' + b"9" * 5000 + b"}\n", 2, None),
    }
    for name, (content, line, field) in cases.items():
        path = tmp_path / f"{name.replace(' ', '-')}.jsonl"
        path.write_bytes(content)
        with pytest.raises(InputError) as err:
            load_groups_jsonl(path)
        assert (err.value.path, err.value.line, err.value.field) == (str(path), line, field), name


# --------------------------------------------------------------------------------------------- generic layout
@st.composite
def generic_files(draw) -> tuple[list[dict], list[dict], list[str]]:
    """(corpus records, query records, qrels lines): every query judged, ids without whitespace."""
    corpus_ids = draw(st.lists(ids, min_size=1, max_size=5, unique=True))
    query_ids = draw(st.lists(ids, min_size=1, max_size=4, unique=True))
    corpus = [{"_id": cid, "text": draw(texts), "lang": draw(good_langs)} for cid in corpus_ids]
    for record in corpus:
        if draw(st.booleans()):
            record["title"] = draw(texts)
    queries = [{"_id": qid, "text": draw(texts), "lang": draw(good_langs)} for qid in query_ids]
    qrels = [f"{qid}\t{draw(st.sampled_from(corpus_ids))}\t{draw(st.integers(1, 3))}\n" for qid in query_ids]
    return corpus, queries, qrels


def write_generic_files(folder: Path, corpus: list[dict], queries: list[dict], qrels: list[str],
                        header: bool = True) -> dict[str, Path]:
    paths = {"corpus": folder / "corpus.jsonl", "queries": folder / "queries.jsonl",
             "qrels": folder / "qrels" / "test.tsv"}
    paths["qrels"].parent.mkdir(parents=True, exist_ok=True)
    paths["corpus"].write_bytes(lines_bytes(corpus))
    paths["queries"].write_bytes(lines_bytes(queries))
    paths["qrels"].write_text(("query-id\tcorpus-id\tscore\n" if header else "") + "".join(qrels), encoding="utf-8")
    return paths


@FAST
@given(files=generic_files())
def test_generic_valid_files_load_every_text_unchanged(tmp_path, files):
    corpus, queries, qrels = files
    write_generic_files(tmp_path, corpus, queries, qrels)
    bench = load_generic(tmp_path)
    expected = {r["_id"]: (f"{r['title']} {r['text']}".strip() if r.get("title") else r["text"],
                           normalize_lang(r["lang"])) for r in corpus}
    assert {c.id: (c.text, c.lang) for c in bench.corpus} == expected
    assert [(q.id, q.text) for q in bench.queries] == [(r["_id"], r["text"]) for r in queries]
    assert bench.skipped == {}


@FAST
@given(files=generic_files(), which=st.sampled_from(["corpus", "queries"]), data=st.data())
def test_generic_field_damage_names_file_line_and_field(tmp_path, files, which, data):
    corpus, queries, qrels = files
    records = corpus if which == "corpus" else queries
    index = data.draw(st.integers(0, len(records) - 1))
    records[index], where = data.draw(mutate_json(records[index]))
    paths = write_generic_files(tmp_path, corpus, queries, qrels)
    bench, error = load_or_input_error(lambda: load_generic(tmp_path))
    if error is None:  # e.g. a title deleted, or an int id (BEIR allows those): the rest still loads
        assert bench.queries
        return
    if error.message.startswith("duplicate id"):  # an int id equal to another record's string id
        assert error.path == str(paths[which]) and error.field == "_id", error
        return
    if error.path == str(paths["qrels"]):  # the damaged record's id changed: its judgement names it
        assert error.field in ("query-id", "corpus-id") and "unknown" in error.message, error
        return
    assert (error.path, error.line) == (str(paths[which]), index + 1), error
    if where and error.field is not None:
        assert error.field == where[0], error


@FAST
@given(files=generic_files(), which=st.sampled_from(["corpus", "queries", "qrels"]), data=st.data())
def test_generic_damaged_bytes_give_input_error(tmp_path, files, which, data):
    paths = write_generic_files(tmp_path, *files)
    damaged, kind, line = data.draw(damaged_bytes(paths[which].read_bytes()))
    paths[which].write_bytes(damaged)
    bench, error = load_or_input_error(lambda: load_generic(tmp_path))
    if error is None:
        assert kind in ("truncate", "nul-bytes")
        return
    assert error.path in {str(p) for p in paths.values()}
    if kind == "invalid-utf8":
        assert (error.path, error.line) == (str(paths[which]), line) and "UTF-8" in error.message


@FAST
@given(files=generic_files(), data=st.data())
def test_generic_bad_qrels_lines_are_named(tmp_path, files, data):
    corpus, queries, qrels = files
    qid, cid = queries[0]["_id"], corpus[0]["_id"]
    bad, field = data.draw(st.sampled_from([
        (f"?nobody?\t{cid}\t1", "query-id"), (f"{qid}\t?nothing?\t1", "corpus-id"), (f"{qid}\t{cid}\tmany", "score"),
        (f"{qid}\t{cid}\t1.5", "score"), (f"{qid}\t{cid}\tinf", "score"), (f"{qid}\t{cid}\t1e400", "score"),
        (f"{qid}\t{cid}\tnan", "score"), (f"{qid}\t{cid}", None), (f"{qid}\t{cid}\t1\textra\tcolumns", None),
    ]))
    position = data.draw(st.integers(0, len(qrels)))
    qrels.insert(position, bad + "\n")
    paths = write_generic_files(tmp_path, corpus, queries, qrels)
    with pytest.raises(InputError) as err:
        load_generic(tmp_path)
    assert (err.value.path, err.value.line, err.value.field) == (str(paths["qrels"]), position + 2, field)


@FAST
@given(files=generic_files(), code=bad_langs, which=st.sampled_from(["corpus", "queries"]))
def test_generic_bad_language_codes_are_named(tmp_path, files, code, which):
    corpus, queries, qrels = files
    records = corpus if which == "corpus" else queries
    records[-1]["lang"] = code
    paths = write_generic_files(tmp_path, corpus, queries, qrels)
    with pytest.raises(InputError) as err:
        load_generic(tmp_path)
    assert (err.value.path, err.value.line, err.value.field) == (str(paths[which]), len(records), "lang")


def test_generic_documented_cases(tmp_path):
    """Duplicate ids, a wrong-typed title and lone surrogates are errors; an empty text is a counted skip;
    NFC and NFD spellings of an id are two ids (no silent normalization), so a qrels line using the other
    spelling is an unknown id, not a wrong match."""
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    corpus = [{"_id": nfc, "text": "x", "lang": "fr"}, {"_id": nfd, "text": "y", "lang": "fr"},
              {"_id": "blank", "text": " \t", "lang": "fr"}]
    queries = [{"_id": "q", "text": "?", "lang": "en"}]
    paths = write_generic_files(tmp_path, corpus, queries, [f"q\t{nfd}\t1\n", "q\tblank\t1\n"])
    bench = load_generic(tmp_path)
    assert bench.qrels == {"q": {nfd: 1}} and {c.id for c in bench.corpus} == {nfc, nfd}
    assert bench.skipped == {"empty corpus texts": 1, "judgements of skipped texts": 1}

    cases = {
        "duplicate id": ([*corpus, {"_id": nfc, "text": "z", "lang": "fr"}], "corpus", 4, "_id"),
        "title of the wrong type": ([{"_id": "c", "text": "x", "lang": "fr", "title": []}], "corpus", 1, "title"),
        "id with whitespace": ([{"_id": "a b", "text": "x", "lang": "fr"}], "corpus", 1, "_id"),
    }
    for name, (records, which, line, field) in cases.items():
        paths = write_generic_files(tmp_path, records, queries, ["q\tc\t1\n"])
        with pytest.raises(InputError) as err:
            load_generic(tmp_path)
        assert (err.value.path, err.value.line, err.value.field) == (str(paths[which]), line, field), name
    paths["corpus"].write_bytes(b'{"_id": "c", "text": "a\\udc80", "lang": "fr"}\n')
    with pytest.raises(InputError) as err:
        load_generic(tmp_path)
    assert (err.value.path, err.value.line, err.value.field) == (str(paths["corpus"]), 1, "text")


# --------------------------------------------------------------------------------------------- LAReQA JSON
@st.composite
def lareqa_documents(draw) -> dict:
    """A SQuAD-style LAReQA file: articles, paragraphs with sentences and breaks, questions with answers."""
    articles = []
    qids = iter(draw(st.lists(ids, min_size=8, max_size=8, unique=True)))
    for ai in range(draw(st.integers(1, 2))):
        paragraphs = []
        for _ in range(draw(st.integers(1, 2))):
            sentences = draw(st.lists(texts, min_size=1, max_size=3))
            breaks, start = [], 0
            for sentence in sentences:
                breaks.append([start, start + len(sentence)])
                start += len(sentence) + 1
            qas = [{"id": next(qids), "question": draw(texts),
                    "answers": [{"text": "a", "answer_start": draw(st.integers(0, start))}]}
                   for _ in range(draw(st.integers(0, 2)))]
            paragraphs.append({"context": " ".join(sentences), "sentences": sentences,
                               "sentence_breaks": breaks, "qas": qas})
        articles.append({"title": f"article {ai}", "paragraphs": paragraphs})
    return {"version": "1.1", "data": articles}


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=1).encode("utf-8")


@FAST
@given(doc=lareqa_documents())
def test_lareqa_valid_files_load_every_text_unchanged(tmp_path, doc):
    path = tmp_path / "en.json"
    path.write_bytes(json_bytes(doc))
    articles = parse_lareqa_file(path)
    assert [[p.sentences for p in a.paragraphs] for a in articles] == \
        [[tuple(p["sentences"]) for p in a["paragraphs"]] for a in doc["data"]]
    assert [q.text for a in articles for p in a.paragraphs for q in p.questions] == \
        [q["question"] for a in doc["data"] for p in a["paragraphs"] for q in p["qas"]]


@FAST
@given(doc=lareqa_documents(), data=st.data())
def test_lareqa_field_damage_names_file_and_field(tmp_path, doc, data):
    mutated, where = data.draw(mutate_json(doc))
    path = tmp_path / "en.json"
    path.write_bytes(json_bytes(mutated))
    articles, error = load_or_input_error(lambda: parse_lareqa_file(path))
    if error is None:  # only keys the loader does not read (or an optional one deleted) may change silently
        assert {"version", "context", "text", "title"} & {k for k in where if isinstance(k, str)}, where
        return
    assert error.path == str(path) and error.field, error  # a JSON document: the field is its JSON path


@FAST
@given(doc=lareqa_documents(), data=st.data())
def test_lareqa_damaged_bytes_give_input_error(tmp_path, doc, data):
    damaged, kind, _ = data.draw(damaged_bytes(json_bytes(doc)))
    path = tmp_path / "en.json"
    path.write_bytes(damaged)
    articles, error = load_or_input_error(lambda: parse_lareqa_file(path))
    assert error is not None, kind  # one JSON document: any cut or stray byte breaks it
    assert error.path == str(path) and (error.line is not None or error.field is not None), error


def test_lareqa_documented_cases(tmp_path):
    """Duplicate question ids in one file, answers that are not objects, sentences that are not strings and
    breaks that are not [start, end] pairs are errors naming the JSON path; a whole benchmark built from
    such a file never fails with a bare ValueError."""
    def doc(**change) -> dict:
        par = {"sentences": ["a b.", "c d."], "sentence_breaks": [[0, 4], [5, 9]],
               "qas": [{"id": "q1", "question": "a?", "answers": [{"answer_start": 5}]}]} | change
        return {"data": [{"title": "t", "paragraphs": [par]}]}

    two = {"id": "q1", "question": "b?", "answers": [{"answer_start": 0}]}
    cases = {
        "duplicate question id": (doc(qas=[doc()["data"][0]["paragraphs"][0]["qas"][0], two]), "qas[1].id"),
        "answer not an object": (doc(qas=[{"id": "q", "question": "a?", "answers": ["x"]}]), "qas[0].answers"),
        "sentence not a string": (doc(sentences=["a b.", 7]), "sentences[1]"),
        "break not a pair": (doc(sentence_breaks=[[0, 4], 5]), "sentence_breaks[1]"),
        "break of strings": (doc(sentence_breaks=[[0, 4], ["5", "9"]]), "sentence_breaks[1]"),
        "lone surrogate": (doc(sentences=["a b.", "c\ud800"]), "sentences[1]"),
    }
    for name, (content, field) in cases.items():
        path = tmp_path / "en.json"
        path.write_bytes(json.dumps(content).encode())  # ASCII escapes: a lone surrogate is legal JSON
        with pytest.raises(InputError) as err:
            parse_lareqa_file(path)
        assert err.value.path == str(path) and err.value.field.endswith(field), (name, err.value)
    path.write_bytes(b"[" * 100_000)
    with pytest.raises(InputError) as err:
        parse_lareqa_file(path)
    assert err.value.path == str(path)

    folder = tmp_path / "lareqa" / "xquad-r"
    folder.mkdir(parents=True)
    for lang in LANGUAGES["xquad-r"]:
        (folder / f"{lang}.json").write_text(json.dumps(doc()), encoding="utf-8")
    assert len(load_lareqa("xquad-r", tmp_path / "lareqa").queries) == len(LANGUAGES["xquad-r"])
    (folder / "de.json").write_text(json.dumps(cases["duplicate question id"][0]), encoding="utf-8")
    with pytest.raises(InputError, match=r"de\.json: field 'data\[0\]\.paragraphs\[0\]\.qas\[1\]\.id'"):
        load_lareqa("xquad-r", tmp_path / "lareqa")


def test_strategies_cover_what_they_claim():
    """Guard against a vacuous property: the bad codes are refused and the wrong types really differ."""
    for code in BAD_LANGS:
        with pytest.raises(ValueError):
            normalize_lang(code)
