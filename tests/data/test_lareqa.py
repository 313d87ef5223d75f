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


def test_mlqa_has_no_split(lareqa_dir):
    with pytest.raises(ValueError, match="only xquad-r"):
        load_lareqa("mlqa-r:train", lareqa_dir)


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
