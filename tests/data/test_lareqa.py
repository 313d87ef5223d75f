"""The LAReQA loader reproduces the upstream per-language counts exactly, and the split is article-disjoint."""

import json

import pytest

from hybridbatch.data.errors import InputError
from hybridbatch.data.lareqa import load_lareqa, load_lareqa_articles, parse_lareqa_file, split_articles

# README.upstream.md, "Dataset statistics": (questions, candidates) per language
UPSTREAM = {
    "xquad-r": {"ar": (1190, 1222), "de": (1190, 1276), "el": (1190, 1234), "en": (1190, 1180),
                "es": (1190, 1215), "hi": (1190, 1244), "ru": (1190, 1219), "th": (1190, 852),
                "tr": (1190, 1167), "vi": (1190, 1209), "zh": (1190, 1196)},
    "mlqa-r": {"ar": (517, 2545), "de": (512, 2362), "en": (1148, 6264), "es": (500, 1787),
               "hi": (507, 2426), "vi": (511, 2828), "zh": (504, 2322)},
}


@pytest.mark.parametrize("name", ["xquad-r", "mlqa-r"])
def test_counts_equal_upstream(lareqa_dir, name):
    bench = load_lareqa(name, lareqa_dir)
    stats = bench.stats()
    assert {lang: (s["queries"], s["candidates"]) for lang, s in stats.items()} == UPSTREAM[name]


def test_xquad_relevance_is_eleven_way_parallel(lareqa_dir):
    bench = load_lareqa("xquad-r", lareqa_dir)
    assert all(len(rels) == 11 for rels in bench.qrels.values())
    assert all(len({cid.split(":")[0] for cid in rels}) == 11 for rels in bench.qrels.values())
    # the relevant English sentence contains the English answer text
    raw = json.loads((lareqa_dir / "xquad-r" / "en.json").read_text())
    qa = raw["data"][0]["paragraphs"][0]["qas"][0]
    rel_en = [c for c in bench.qrels[f"en:{qa['id']}"] if c.startswith("en:")][0]
    text = {c.id: c.text for c in bench.corpus}[rel_en]
    assert qa["answers"][0]["text"] in text


def test_mlqa_relevance_follows_available_languages(lareqa_dir):
    bench = load_lareqa("mlqa-r", lareqa_dir)
    counts = {len(rels) for rels in bench.qrels.values()}
    assert counts <= {2, 3, 4} and min(counts) == 2


def test_split_is_article_disjoint_and_complete(lareqa_dir):
    articles = load_lareqa_articles("xquad-r", lareqa_dir)
    train, test = split_articles(articles, "train"), split_articles(articles, "test")
    for lang in articles:
        assert len(train[lang]) == 24 and len(test[lang]) == 24
        titles_train = {a.title for a in train[lang]}
        assert not titles_train & {a.title for a in test[lang]}
    q_train = {q.id for a in train["en"] for p in a.paragraphs for q in p.questions}
    q_test = {q.id for a in test["en"] for p in a.paragraphs for q in p.questions}
    assert not q_train & q_test and len(q_train) + len(q_test) == 1190
    assert (len(q_train), len(q_test)) == (612, 578)
    for lang in articles:  # the same questions in every language
        assert {q.id for a in train[lang] for p in a.paragraphs for q in p.questions} == q_train
    assert len(load_lareqa("xquad-r:test", lareqa_dir).queries) == 11 * 578


# MLQA-R halves: (questions, candidates) per language; 260 linked article groups in each half
MLQA_SPLIT = {
    "train": {"ar": (277, 1301), "de": (255, 1158), "en": (575, 3033), "es": (246, 867), "hi": (252, 1140),
              "vi": (255, 1395), "zh": (248, 1155)},
    "test": {"ar": (240, 1244), "de": (257, 1204), "en": (573, 3231), "es": (254, 920), "hi": (255, 1286),
             "vi": (256, 1433), "zh": (256, 1167)},
}


def test_mlqa_split_is_article_disjoint_and_the_same_in_every_language(lareqa_dir):
    articles = load_lareqa_articles("mlqa-r", lareqa_dir)
    halves = {part: split_articles(articles, part, by="question-ids") for part in ("train", "test")}
    for lang in articles:  # every article in exactly one half, file order kept
        train_ids = {id(a) for a in halves["train"][lang]}
        assert not train_ids & {id(a) for a in halves["test"][lang]}
        assert len(halves["train"][lang]) + len(halves["test"][lang]) == len(articles[lang])
    # a question is in the same half in every language it exists in
    where: dict[str, set[str]] = {}
    for part, by_lang in halves.items():
        for arts in by_lang.values():
            for q in (q for a in arts for p in a.paragraphs for q in p.questions):
                where.setdefault(q.id, set()).add(part)
    assert len(where) == 1148 and all(len(parts) == 1 for parts in where.values())
    for part, counts in MLQA_SPLIT.items():
        stats = load_lareqa(f"mlqa-r:{part}", lareqa_dir).stats()
        assert {lang: (s["queries"], s["candidates"]) for lang, s in stats.items()} == counts
    whole = UPSTREAM["mlqa-r"]
    assert all(MLQA_SPLIT["train"][lang][0] + MLQA_SPLIT["test"][lang][0] == whole[lang][0] for lang in whole)
    with pytest.raises(InputError, match="not aligned"):  # MLQA-R has no positional alignment
        split_articles(articles, "train")


def test_missing_files_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRIDBATCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HYBRIDBATCH_LAREQA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        load_lareqa("xquad-r")


@pytest.mark.parametrize("content, field", [
    ("{not json", None),
    ('{"data": [{"paragraphs": [{"sentences": ["a"], "sentence_breaks": [[0, 1]]}]}]}', "qas"),
    ('{"data": [{"paragraphs": [{"sentences": ["a"], "sentence_breaks": [[0, 1]], '
     '"qas": [{"id": "x", "question": "", "answers": [{"answer_start": 0}]}]}]}]}', "question"),
    ('{"data": [{"paragraphs": [{"sentences": ["a", "b"], "sentence_breaks": [[0, 1]], "qas": []}]}]}',
     "sentence_breaks"),
])
def test_bad_files_name_file_and_field(tmp_path, content, field):
    path = tmp_path / "en.json"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        parse_lareqa_file(path)
    assert str(path) in str(err.value)
    if field:
        assert field in str(err.value)


class _FakeResponse:
    def __init__(self, payload: bytes):
        self.payload = payload

    def read(self) -> bytes:
        return self.payload

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_verifies_checksums(tmp_path, monkeypatch, lareqa_dir):
    """The public files are fetched and checked against the pinned SHA256 sums (network faked)."""
    import hybridbatch.data.lareqa as lareqa

    urls = []

    def fake_urlopen(url, timeout):
        urls.append(url)
        lang = url.rsplit("/", 1)[1]
        return _FakeResponse((lareqa_dir / "mlqa-r" / lang).read_bytes())

    monkeypatch.setattr(lareqa.urllib.request, "urlopen", fake_urlopen)
    lareqa.download_benchmark("mlqa-r", tmp_path)
    assert len(urls) == 7 and all("/354d67d/mlqa-r/" in u for u in urls)
    assert (tmp_path / "mlqa-r" / "de.json").read_bytes() == (lareqa_dir / "mlqa-r" / "de.json").read_bytes()

    monkeypatch.setattr(lareqa.urllib.request, "urlopen", lambda url, timeout: _FakeResponse(b"{}"))
    with pytest.raises(InputError, match="checksum mismatch"):
        lareqa.download_benchmark("xquad-r", tmp_path / "other")
    assert not (tmp_path / "other" / "xquad-r" / "ar.json").exists()  # nothing half-written


def test_mlqa_train_source_builds_parallel_groups_with_paragraph_negatives(lareqa_dir):
    from hybridbatch.training.training_data import read_groups

    groups = read_groups("mlqa-r:train", str(lareqa_dir))
    test_ids = {q.id for q in load_lareqa("mlqa-r:test", lareqa_dir).queries}
    assert len(groups) == MLQA_SPLIT["train"]["en"][0]
    assert not {f"en:{g.id}" for g in groups} & test_ids
    assert all("en" in g.queries and 2 <= len(g.queries) <= 4 for g in groups)
    bench = load_lareqa("mlqa-r:train", lareqa_dir)
    sentences = {c.id: c.text for c in bench.corpus}
    paragraph_of = {}
    for cid, text in sentences.items():
        paragraph_of.setdefault(cid.rsplit(":", 1)[0], []).append(text)
    group = groups[0]
    for lang, negatives in group.negatives.items():  # the other sentences of the answer's paragraph
        answer_id = next(c for c in bench.qrels[f"{lang}:{group.id}"] if c.startswith(f"{lang}:"))
        paragraph = paragraph_of[answer_id.rsplit(":", 1)[0]]
        assert group.positives[lang] in paragraph and set(negatives) <= set(paragraph) - {group.positives[lang]}
    assert sum(bool(g.negatives) for g in groups) > 0.9 * len(groups)
