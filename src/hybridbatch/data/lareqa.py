"""XQuAD-R and MLQA-R (LAReQA): SQuAD-style JSON with sentence breaks, turned into retrieval benchmarks.

The retrieval unit is a sentence: every sentence of every paragraph is a candidate, in every language.
A question's relevant sentence in language L is the sentence of the L paragraph whose span contains
`answers[0].answer_start`; the same question in other languages shares its `qas.id`. In the pooled
(multilingual) setting a question is relevant to its answer sentence in every language it exists in.

Where the files come from, in order: the `data_dir` argument, `$HYBRIDBATCH_LAREQA_DIR`, the per-user cache
(`<cache>/data/lareqa`), and, when `download=True`, the public files (checked against pinned SHA256 sums).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from hybridbatch.data.benchmark import Benchmark, Text
from hybridbatch.data.errors import InputError, require_path
from hybridbatch.io import atomic_write
from hybridbatch.paths import cache_dir

DATA_ENV = "HYBRIDBATCH_LAREQA_DIR"
LANGUAGES = {
    "xquad-r": ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"),
    "mlqa-r": ("ar", "de", "en", "es", "hi", "vi", "zh"),
}
# MLQA-R was removed from the upstream head; 354d67d is its last published version.
_URL = "https://raw.githubusercontent.com/google-research-datasets/lareqa/{rev}/{bench}/{lang}.json"
_REV = {"xquad-r": "master", "mlqa-r": "354d67d"}
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # legal as a JSON escape, but not text any tokenizer can take
SHA256 = {
    "mlqa-r/ar.json": "2132fbc03208535c0fe01f2e2c5121d06f9c2aa799af93b0a719dbc105bdf137",
    "mlqa-r/de.json": "ce9454dc5aa6f2d85c23cd6e49cb367fbb7c4c6e62d7f71e355c6b5dae4d0886",
    "mlqa-r/en.json": "fedd9a5cc0848dda80caf84aa36f482adaae230526a3f6e9e86926a93ef3b1e4",
    "mlqa-r/es.json": "70ecba276b8c96a692b120693a595d076ce94ad21d4b28311538a9fcbfe0f9d7",
    "mlqa-r/hi.json": "4dd0fb3c06f737a5481d705bc1dcac7876712a5815c9265908fbb3a0696cb654",
    "mlqa-r/vi.json": "9d3baff6ba03e6793b25594217265ea59a136b9733833dca8a9582a84a78ff85",
    "mlqa-r/zh.json": "57f01d2fff50cf3392805635b01445339f225ad5bf28ba8443b12f8dbd1e69dc",
    "xquad-r/ar.json": "c52922d3b8ac1ae03ed5ac38647ad59870dca3dda2beefe18ecdc30729acb69d",
    "xquad-r/de.json": "16fb0f4bf4916154b585a20c24c66074591c9718a1affe764ff4697572328949",
    "xquad-r/el.json": "163fd43ee785a30eb534ae2061e9eaa766a7ee4e8ffce5e4b422480c150f64b6",
    "xquad-r/en.json": "7b0954f39297c27a31fef610f0883337dd2907fa8699151dc922afdd0fa12ffe",
    "xquad-r/es.json": "f8e836b2d91009c4363e04315f7ede363eedbbb49c67dda60de6c4aa782f58de",
    "xquad-r/hi.json": "ea45ba8ae4513d1533b222bebdc02a90bc319c055d3aeea68584a053d2e92872",
    "xquad-r/ru.json": "7f4dff853538b9a5fcc28c070b8bb983a5c5d190ac747b8e005a1ada9cab18f1",
    "xquad-r/th.json": "c3a041864c3a9fb0b4dd91cfdf99cf36b411b3e704c58a303c97bc6dc786cfe4",
    "xquad-r/tr.json": "f3e8c13002bbce154a4578f535f7533cb70f3da08840e6b62735935baec7bd94",
    "xquad-r/vi.json": "e35926bf5cc6fc6ecbdfca49467aabeb454f08d152d7818143a906bd31dde995",
    "xquad-r/zh.json": "80c2cde7b9c2fb134c303cbb52f2ba396ead9eb0014aec43993543d2ba9e93ed",
}


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    answer_sentence: int  # index into Paragraph.sentences


@dataclass(frozen=True)
class Paragraph:
    sentences: tuple[str, ...]
    questions: tuple[Question, ...]


@dataclass(frozen=True)
class Article:
    title: str
    paragraphs: tuple[Paragraph, ...]


# --------------------------------------------------------------------------------------------- files
def find_data_dir(data_dir: str | Path | None = None, download: bool = False) -> Path:
    """The folder holding `xquad-r/` and `mlqa-r/`; downloads into the cache only when asked."""
    candidates = [Path(data_dir)] if data_dir else []
    if os.environ.get(DATA_ENV):
        candidates.append(Path(os.environ[DATA_ENV]))
    cached = cache_dir("data", "lareqa")
    candidates.append(cached)
    for folder in candidates:
        if (folder / "xquad-r" / "en.json").is_file():
            return folder
    if data_dir:
        raise FileNotFoundError(f"no LAReQA files under {data_dir} (expected {data_dir}/xquad-r/en.json)")
    if download:
        for bench in LANGUAGES:
            download_benchmark(bench, cached)
        return cached
    raise FileNotFoundError(
        "XQuAD-R / MLQA-R files not found. Put the LAReQA folders xquad-r/ and mlqa-r/ in "
        f"{cached}, or point --data-dir or ${DATA_ENV} at the folder holding them, "
        "or run with --download on a machine with internet access."
    )


def download_benchmark(bench: str, dest: Path) -> None:
    """Fetch the public files of one benchmark and verify their pinned SHA256 sums."""
    for lang in LANGUAGES[bench]:
        rel = f"{bench}/{lang}.json"
        target = dest / rel
        if target.is_file() and _sha256(target) == SHA256[rel]:
            continue
        url = _URL.format(rev=_REV[bench], bench=bench, lang=lang)
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - fixed https URL
            payload = response.read()
        digest = hashlib.sha256(payload).hexdigest()
        if digest != SHA256[rel]:
            raise InputError(f"checksum mismatch for {url}: got {digest}, expected {SHA256[rel]}", path=target)
        with atomic_write(target, "wb") as handle:
            handle.write(payload)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------- parsing
def parse_lareqa_file(path: Path) -> list[Article]:
    """One language file -> articles; errors name the file and the JSON path of the bad field.

    Texts must be strings of valid Unicode (a lone surrogate escape is refused) and are kept unchanged;
    question ids are unique within the file; `sentence_breaks` are `[start, end]` integer pairs.
    """
    data = require_path(path, "LAReQA language file").read_bytes()
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})", path=path,
                         line=data.count(b"\n", 0, exc.start) + 1) from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc.msg}", path=path, line=exc.lineno) from exc
    except (ValueError, RecursionError) as exc:  # a number too long to convert, nesting too deep
        raise InputError(f"malformed JSON: {exc}", path=path) from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise InputError("expected an object with a 'data' list", path=path, field="data")
    articles = []
    seen_ids: set[str] = set()
    for ai, art in enumerate(raw["data"]):
        paragraphs = []
        for pi, par in enumerate(_get(art, "paragraphs", list, path, f"data[{ai}]")):
            where = f"data[{ai}].paragraphs[{pi}]"
            sentences = tuple(_get(par, "sentences", list, path, where))
            for si, sentence in enumerate(sentences):
                _check_text(sentence, path, f"{where}.sentences[{si}]")
            breaks = _get(par, "sentence_breaks", list, path, where)
            if len(breaks) != len(sentences) or not sentences:
                raise InputError("sentences and sentence_breaks differ in length or are empty",
                                 path=path, field=f"{where}.sentence_breaks")
            for bi, pair in enumerate(breaks):
                if not (isinstance(pair, list) and len(pair) == 2 and all(_is_int(x) for x in pair)):
                    raise InputError(f"expected a [start, end] pair of integers, got {pair!r}"[:200], path=path,
                                     field=f"{where}.sentence_breaks[{bi}]")
            questions = []
            for qi, qa in enumerate(_get(par, "qas", list, path, where)):
                qwhere = f"{where}.qas[{qi}]"
                answers = _get(qa, "answers", list, path, qwhere)
                if not answers or not isinstance(answers[0], dict) or not _is_int(answers[0].get("answer_start")):
                    raise InputError("no answers[0].answer_start", path=path, field=f"{qwhere}.answers")
                text = _get(qa, "question", str, path, qwhere)
                if not text.strip():
                    raise InputError("empty question", path=path, field=f"{qwhere}.question")
                _check_text(text, path, f"{qwhere}.question")
                qid = _get(qa, "id", str, path, qwhere)
                _check_text(qid, path, f"{qwhere}.id")
                if qid in seen_ids:
                    raise InputError(f"duplicate question id {qid!r}", path=path, field=f"{qwhere}.id")
                seen_ids.add(qid)
                answer = _sentence_at(breaks, answers[0]["answer_start"])
                questions.append(Question(qid, text, answer))
            paragraphs.append(Paragraph(sentences, tuple(questions)))
        title = art.get("title", "")
        _check_text(title, path, f"data[{ai}].title")
        articles.append(Article(title, tuple(paragraphs)))
    return articles


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_text(value: object, path: Path, field: str) -> None:
    if not isinstance(value, str):
        raise InputError(f"expected str, got {type(value).__name__}", path=path, field=field)
    if _LONE_SURROGATE.search(value):
        raise InputError("not valid Unicode (a lone surrogate escape)", path=path, field=field)


def _get(obj: object, key: str, kind: type, path: Path, where: str):
    if not isinstance(obj, dict) or key not in obj:
        raise InputError("missing", path=path, field=f"{where}.{key}")
    value = obj[key]
    if not isinstance(value, kind):
        raise InputError(f"expected {kind.__name__}, got {type(value).__name__}", path=path,
                         field=f"{where}.{key}")
    return value


def _sentence_at(breaks: list, offset: int) -> int:
    """Index of the sentence whose [start, end) span holds `offset` (the last one starting before it)."""
    best = 0
    for i, (start, _end) in enumerate(breaks):
        if start <= offset:
            best = i
    return best


def is_lareqa_spec(spec: str) -> bool:
    """`xquad-r`, `mlqa-r`, with or without a `:part` (the part itself is checked when loading)."""
    return spec.partition(":")[0] in LANGUAGES


def load_lareqa_articles(benchmark: str, data_dir: str | Path | None = None,
                         download: bool = False) -> dict[str, list[Article]]:
    """Articles per language for `xquad-r` or `mlqa-r`."""
    if benchmark not in LANGUAGES:
        raise InputError(f"unknown LAReQA benchmark {benchmark!r}; expected one of {sorted(LANGUAGES)}")
    root = find_data_dir(data_dir, download=download)
    return {lang: parse_lareqa_file(root / benchmark / f"{lang}.json") for lang in LANGUAGES[benchmark]}


# --------------------------------------------------------------------------------------------- split
SPLIT_RULE = {"xquad-r": "position", "mlqa-r": "question-ids"}


def split_articles(articles_by_lang: dict[str, list[Article]], part: str,
                   by: str = "position") -> dict[str, list[Article]]:
    """Article-disjoint half of XQuAD-R or MLQA-R: the same articles in every language.

    `by="position"` (XQuAD-R): the 48 articles come in the same order in every language file; even
    positions go to `train`, odd positions to `test` (24 articles each; see README for sizes). Checked by
    question ids. `by="question-ids"` (MLQA-R): see `split_linked_articles`.
    """
    if part not in ("train", "test"):
        raise ValueError(f"unknown split part {part!r}; expected 'train' or 'test'")
    if by == "question-ids":
        return split_linked_articles(articles_by_lang, part)
    if by != "position":
        raise ValueError(f"unknown split rule {by!r}; expected 'position' or 'question-ids'")
    reference = None
    for lang, articles in articles_by_lang.items():
        ids = [frozenset(q.id for p in a.paragraphs for q in p.questions) for a in articles]
        if reference is None:
            reference = ids
        elif ids != reference:
            raise InputError(f"articles of {lang} are not aligned with the other languages; cannot split")
    keep = 0 if part == "train" else 1
    return {lang: [a for i, a in enumerate(arts) if i % 2 == keep] for lang, arts in articles_by_lang.items()}


def article_components(articles_by_lang: dict[str, list[Article]]) -> list[list[tuple[str, int]]]:
    """Articles linked across languages: (lang, index) pairs joined when they share a question id.

    MLQA-R's files are not aligned by position (each language has its own articles and order; a question
    exists in English and one to three other languages), so an article's translations are found through
    the question ids they share. Components come in order of their first article in the first language
    (English first when present), members in language order, then file order.
    """
    langs = sorted(articles_by_lang, key=lambda lang: (lang != "en", lang))
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def find(node):
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    owner: dict[str, tuple[str, int]] = {}
    for lang in langs:
        for ai, article in enumerate(articles_by_lang[lang]):
            node = (lang, ai)
            parent[node] = node
            for paragraph in article.paragraphs:
                for question in paragraph.questions:
                    if question.id in owner:
                        parent[find(node)] = find(owner[question.id])
                    else:
                        owner[question.id] = node
    components: dict[tuple[str, int], list[tuple[str, int]]] = {}
    for lang in langs:
        for ai in range(len(articles_by_lang[lang])):
            components.setdefault(find((lang, ai)), []).append((lang, ai))
    return sorted(components.values(), key=lambda members: (langs.index(members[0][0]), members[0][1]))


def split_linked_articles(articles_by_lang: dict[str, list[Article]], part: str) -> dict[str, list[Article]]:
    """MLQA-R's article-disjoint halves: linked articles (`article_components`) stay together; even-numbered
    components go to `train`, odd ones to `test`. Every question is in one half in all its languages;
    articles keep their file order. Counts are in the README and tested."""
    keep = 0 if part == "train" else 1
    chosen = {node for ci, members in enumerate(article_components(articles_by_lang)) if ci % 2 == keep
              for node in members}
    return {lang: [a for ai, a in enumerate(arts) if (lang, ai) in chosen] for lang, arts in articles_by_lang.items()}


# --------------------------------------------------------------------------------------------- benchmark
def articles_to_benchmark(name: str, articles_by_lang: dict[str, list[Article]]) -> Benchmark:
    """Queries `lang:qid`, candidates `lang:article:paragraph:sentence`, pooled qrels over languages."""
    queries: list[Text] = []
    corpus: list[Text] = []
    answers_by_qid: dict[str, list[str]] = defaultdict(list)
    groups: dict[str, str] = {}
    for lang, articles in articles_by_lang.items():
        for ai, art in enumerate(articles):
            for pi, par in enumerate(art.paragraphs):
                ids = [f"{lang}:{ai}:{pi}:{si}" for si in range(len(par.sentences))]
                corpus.extend(Text(cid, s, lang) for cid, s in zip(ids, par.sentences, strict=True))
                for q in par.questions:
                    qid = f"{lang}:{q.id}"
                    queries.append(Text(qid, q.text, lang))
                    groups[qid] = q.id
                    answers_by_qid[q.id].append(ids[q.answer_sentence])
    qrels = {q.id: {cid: 1 for cid in answers_by_qid[groups[q.id]]} for q in queries}
    bench = Benchmark(name, queries, corpus, qrels, groups)
    bench.validate()
    return bench


def load_lareqa(spec: str, data_dir: str | Path | None = None, download: bool = False) -> Benchmark:
    """`xquad-r`, `mlqa-r`, or their article-disjoint halves (`xquad-r:train`, `mlqa-r:test`, ...) as a Benchmark."""
    bench, _, part = spec.partition(":")
    articles = load_lareqa_articles(bench, data_dir, download=download)
    if part:
        articles = split_articles(articles, part, by=SPLIT_RULE[bench])
    return articles_to_benchmark(spec, articles)
