"""Parallel training groups: JSONL round trip, located errors, language filtering, XQuAD-R groups."""

from __future__ import annotations

import json

import pytest

from hybridbatch.data.errors import InputError
from hybridbatch.data.lareqa import Article, Paragraph, Question
from hybridbatch.data.parallel import (
    ParallelGroup,
    groups_from_lareqa,
    language_sizes,
    load_groups_jsonl,
    restrict_languages,
    save_groups_jsonl,
)


def group(gid: str, langs=("en", "de"), negatives: bool = True) -> ParallelGroup:
    return ParallelGroup(
        gid,
        {lang: f"q|{lang}|{gid}" for lang in langs},
        {lang: f"p|{lang}|{gid}" for lang in langs},
        {lang: (f"n|{lang}|{gid}|0", f"n|{lang}|{gid}|1") for lang in langs} if negatives else {},
    )


def test_round_trip(tmp_path):
    groups = [group("g0"), group("g1", ("en", "de", "zh"), negatives=False),
              ParallelGroup("g2", {"en": "q|en|g2 ünï"}, {"en": "p|en|g2"}, {"en": ()})]
    path = tmp_path / "train.jsonl"
    save_groups_jsonl(path, groups)
    loaded = load_groups_jsonl(path)
    assert loaded[:2] == groups[:2]
    assert loaded[2] == ParallelGroup("g2", {"en": "q|en|g2 ünï"}, {"en": "p|en|g2"}, {"en": ()})
    assert "negatives" not in json.loads(path.read_text(encoding="utf-8").splitlines()[1])


def test_language_tags_are_normalized_and_blank_lines_skipped(tmp_path):
    path = tmp_path / "g.jsonl"
    record = {"id": "a", "queries": {"pt_BR": "q"}, "positives": {"PT-br": "p"}, "negatives": {"pt-BR": ["n"]}}
    path.write_text("\n" + json.dumps(record) + "\n\n", encoding="utf-8")
    [g] = load_groups_jsonl(path)
    assert g.queries == {"pt-BR": "q"} and g.positives == {"pt-BR": "p"} and g.negatives == {"pt-BR": ("n",)}


GOOD = {"id": "g1", "queries": {"en": "q", "de": "q"}, "positives": {"en": "p", "de": "p"},
        "negatives": {"en": ["n1", "n2"]}}


def _with(**changes):
    record = {k: v for k, v in GOOD.items() if changes.get(k, ...) is not None}
    record.update({k: v for k, v in changes.items() if v is not None})
    return json.dumps(record)


BAD_LINES = [
    ('{"id": "g1", "queries": ', None, "malformed JSON"),
    ('["g1"]', None, "JSON object"),
    (_with(id=None), "id", "missing"),
    (_with(queries=None), "queries", "missing"),
    (_with(positives=None), "positives", "missing"),
    (_with(id=7), "id", "string"),
    (_with(id=" "), "id", "empty"),
    (_with(queries=["q"]), "queries", "object"),
    (_with(queries={}), "queries", "no languages"),
    (_with(queries={"en": ""}), "queries.en", "empty text"),
    (_with(queries={"en": 3}), "queries.en", "string"),
    (_with(positives={"en": "p", "xx": "p"}), "positives.xx", "unknown language code"),
    (_with(positives={"en": "p", "e n": "p"}), "positives.e n", "malformed language code"),
    (_with(positives={"en": "p", "EN": "p"}), "positives.EN", "twice"),
    (_with(negatives={"en": "n1"}), "negatives.en", "list"),
    (_with(negatives={"en": ["n1", "  "]}), "negatives.en[1]", "empty text"),
    (_with(negatives=["n1"]), "negatives", "object"),
    (_with(negatives={"qq": ["n"]}), "negatives.qq", "unknown language code"),
    (_with(positive={"en": "p"}), "positive", "unknown field"),
]


@pytest.mark.parametrize(("line", "field", "message"), BAD_LINES)
def test_bad_input_names_file_line_and_field(tmp_path, line, field, message):
    path = tmp_path / "bad.jsonl"
    good = json.dumps(GOOD | {"id": "g0"})
    path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_groups_jsonl(path)
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), 3, field)
    assert message in str(err)
    assert f"{path}:3: " in str(err)
    if field:
        assert f"'{field}'" in str(err)


def test_duplicate_id(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text(f"{json.dumps(GOOD)}\n{json.dumps(GOOD)}\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"dup.jsonl:2: field 'id': duplicate id 'g1' \(first on line 1\)"):
        load_groups_jsonl(path)


def test_unreadable_empty_and_non_utf8_files(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        load_groups_jsonl(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(InputError, match="no groups"):
        load_groups_jsonl(tmp_path / "empty.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes(json.dumps(GOOD).encode() + b"\n\xff\xfe\n")
    with pytest.raises(InputError, match=r"latin1.jsonl:2: not valid UTF-8"):
        load_groups_jsonl(tmp_path / "latin1.jsonl")


def test_restrict_languages_keeps_complete_groups_cut_to_the_languages():
    groups = [group("a", ("en", "de", "zh")), group("b", ("en",)),
              ParallelGroup("c", {"en": "q", "de": "q"}, {"en": "p"}), group("d", ("de", "en"))]
    kept, dropped = restrict_languages(groups, ["en", "DE"])
    assert [g.id for g in kept] == ["a", "d"] and dropped == 2
    assert set(kept[0].queries) == set(kept[0].positives) == set(kept[0].negatives) == {"en", "de"}
    assert language_sizes(groups) == {"de": 2, "en": 4, "zh": 1}


# --------------------------------------------------------------------------------------------- LAReQA
def _paragraph(lang: str, qids: list[str], answers: list[int], n_sent: int = 3) -> Paragraph:
    sentences = tuple(f"s|{lang}|{i}" for i in range(n_sent))
    questions = tuple(Question(qid, f"q|{lang}|{qid}", a) for qid, a in zip(qids, answers, strict=True))
    return Paragraph(sentences, questions)


def test_groups_from_lareqa():
    articles = {
        lang: [Article("A", (_paragraph(lang, ["q1", "q2"], [0, 2]), _paragraph(lang, ["q3"], [0], 1 + (lang == "de"))))]
        for lang in ("en", "de")
    }
    articles["zh"] = [Article("A", (_paragraph("zh", ["q1"], [1]),))]
    groups = groups_from_lareqa(articles)
    assert [g.id for g in groups] == ["q1", "q2", "q3"]
    q1 = groups[0]
    assert q1.queries == {"en": "q|en|q1", "de": "q|de|q1", "zh": "q|zh|q1"}
    assert q1.positives == {"en": "s|en|0", "de": "s|de|0", "zh": "s|zh|1"}
    assert q1.negatives == {"en": ("s|en|1", "s|en|2"), "de": ("s|de|1", "s|de|2"), "zh": ("s|zh|0", "s|zh|2")}
    assert groups[1].positives["en"] == "s|en|2"
    assert groups[2].negatives == {"de": ("s|de|1",)}  # the one-sentence en paragraph has none
    kept, dropped = restrict_languages(groups, ["en", "zh"])
    assert [g.id for g in kept] == ["q1"] and dropped == 2


def test_groups_from_lareqa_rejects_bad_answer_index():
    articles = {"en": [Article("A", (_paragraph("en", ["q1"], [5]),))]}
    with pytest.raises(ValueError, match="answer_sentence 5 out of range"):
        groups_from_lareqa(articles)
