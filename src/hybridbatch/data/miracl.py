"""MIRACL as released on the Hugging Face hub (miracl/miracl and miracl/miracl-corpus), read from disk.

    ROOT/miracl-v1.0-{lang}/topics/topics.miracl-v1.0-{lang}-{split}.tsv   qid <TAB> query
    ROOT/miracl-v1.0-{lang}/qrels/qrels.miracl-v1.0-{lang}-{split}.tsv     qid Q0 docid rel   (TREC)
    ROOT/miracl-corpus-v1.0-{lang}/docs-*.jsonl(.gz)                       {"docid", "title", "text"}

(the two datasets downloaded side by side into one ROOT). `--benchmark miracl:ROOT[@de,fr][#split]`:
languages default to every `miracl-v1.0-*` folder under ROOT, the split to `dev` (`train`, `testA`, ...
name the file suffix as released). MIRACL's qids and docids repeat across languages, so every id is
prefixed with its language (`de:123`, `de:39#0`) and TREC runs carry those ids.

MIRACL is not parallel: the monolingual setting is MIRACL's own; the pooled (multilingual) setting
searches the union of the chosen languages' corpora, the relevant items staying each query's judged
passages, and its bias figure is the own-language share of the top 10 (rank distance does not exist).
Documented skips, counted in `Benchmark.skipped`: qrels with rel <= 0, queries with no relevant passage,
passages with an empty text. A qrels docid not in the corpus, a malformed line, a duplicate id raise
`InputError` naming the file and line.

The corpus is read line by line from the gzip stream (`iter_corpus`). `StreamedCorpus` is a sequence over
it that holds no passage: `retrieval.embeddings.encode_to_store` writes a store from it one shard at a time
(it iterates and takes consecutive slices). `load_miracl` still keeps the chosen corpora in memory, as
every `Benchmark` does: fine for the smaller languages; evaluating over MIRACL's largest corpora (millions
of passages) from a store needs an evaluation that reads ids and languages from the store (not built yet).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from hybridbatch.data.benchmark import Benchmark, Text
from hybridbatch.data.errors import InputError
from hybridbatch.data.jsonl import jsonl_objects
from hybridbatch.data.languages import normalize_lang

PREFIX = "miracl:"
DEFAULT_SPLIT = "dev"
_TOPICS_DIR = re.compile(r"^miracl-v1\.0-([a-z]{2,3})$")


def parse_spec(spec: str) -> tuple[Path, list[str] | None, str]:
    """`miracl:ROOT[@langs][#split]` -> (ROOT, languages or None for all, split)."""
    if not spec.startswith(PREFIX):
        raise ValueError(f"not a MIRACL benchmark spec: {spec!r}")
    rest = spec[len(PREFIX):]
    split = DEFAULT_SPLIT
    if "#" in rest:
        rest, split = rest.rsplit("#", 1)
    langs = None
    if "@" in rest:
        rest, lang_text = rest.rsplit("@", 1)
        try:
            langs = [normalize_lang(x) for x in lang_text.split(",") if x.strip()]
        except ValueError as err:
            raise InputError(f"{spec}: {err}") from err
    if not rest or not split:
        raise InputError(f"{spec}: expected miracl:ROOT[@lang,lang][#split]")
    return Path(rest).expanduser(), langs, split


def topics_file(root: Path, lang: str, split: str) -> Path:
    return root / f"miracl-v1.0-{lang}" / "topics" / f"topics.miracl-v1.0-{lang}-{split}.tsv"


def qrels_file(root: Path, lang: str, split: str) -> Path:
    return root / f"miracl-v1.0-{lang}" / "qrels" / f"qrels.miracl-v1.0-{lang}-{split}.tsv"


def corpus_files(root: Path, lang: str) -> list[Path]:
    folder = root / f"miracl-corpus-v1.0-{lang}"
    files = sorted([*folder.glob("docs-*.jsonl.gz"), *folder.glob("docs-*.jsonl")], key=_shard_order)
    if not files:
        raise FileNotFoundError(f"no MIRACL corpus for {lang!r}: expected {folder}/docs-*.jsonl.gz")
    return files


def _shard_order(path: Path) -> tuple[int, str]:
    digits = re.findall(r"\d+", path.name)
    return (int(digits[-1]) if digits else -1, path.name)


def available_languages(root: Path) -> list[str]:
    if not root.is_dir():
        raise FileNotFoundError(f"MIRACL root {root} does not exist")
    langs = sorted(m.group(1) for p in root.iterdir() if p.is_dir() and (m := _TOPICS_DIR.match(p.name)))
    if not langs:
        raise FileNotFoundError(f"no miracl-v1.0-<lang>/ folders under {root}")
    return langs


def read_topics(path: Path, lang: str) -> dict[str, str]:
    if not path.is_file():
        raise FileNotFoundError(f"MIRACL topics file missing: {path}")
    topics: dict[str, str] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip():
            raise InputError(f"expected 'qid<TAB>query', got {len(parts)} column(s)", path=path, line=line_no)
        qid = f"{lang}:{parts[0].strip()}"
        if qid in topics:
            raise InputError(f"duplicate qid {parts[0].strip()!r}", path=path, line=line_no, field="qid")
        topics[qid] = parts[1].strip()
    return topics


def read_qrels(path: Path, lang: str, skipped: Counter) -> dict[str, dict[str, int]]:
    if not path.is_file():
        raise FileNotFoundError(f"MIRACL qrels file missing: {path} (MIRACL releases no qrels for some splits)")
    qrels: dict[str, dict[str, int]] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 4:
            raise InputError(f"expected 'qid Q0 docid rel', got {len(parts)} column(s)", path=path, line=line_no)
        try:
            rel = int(parts[3])
        except ValueError as err:
            raise InputError(f"not an integer: {parts[3]!r}", path=path, line=line_no, field="rel") from err
        if rel <= 0:
            skipped["qrels_not_relevant"] += 1
            continue
        qrels.setdefault(f"{lang}:{parts[0]}", {})[f"{lang}:{parts[2]}"] = rel
    return qrels


def iter_corpus(root: Path, lang: str, skipped: Counter | None = None) -> Iterator[Text]:
    """The passages of one language, streamed line by line from its (gzipped) JSONL shards."""
    for path in corpus_files(root, lang):
        for line_no, row in jsonl_objects(path):
            for key in ("docid", "text"):
                if not isinstance(row.get(key), str):
                    raise InputError("missing or not a string", path=path, line=line_no, field=key)
            title = row.get("title") or ""
            if not row["text"].strip():
                if skipped is not None:
                    skipped["empty_passages"] += 1
                continue
            text = f"{title} {row['text']}".strip() if title else row["text"]
            yield Text(f"{lang}:{row['docid']}", text, lang)


class StreamedCorpus(Sequence[Text]):
    """The passages of `langs` in order, read from disk on demand; holds nothing but a read position.

    Iteration and consecutive slices stream (each slice continues where the last one ended); any other
    access re-reads from the start, so it is correct but slow. `len` costs one pass, then is remembered.
    """

    def __init__(self, root: str | Path, langs: Sequence[str]):
        self.root, self.langs = Path(root), list(langs)
        self._length: int | None = None
        self._cursor: tuple[int, Iterator[Text]] | None = None

    def __iter__(self) -> Iterator[Text]:
        for lang in self.langs:
            yield from iter_corpus(self.root, lang)

    def __len__(self) -> int:
        if self._length is None:
            self._length = sum(1 for _ in self)
        return self._length

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("StreamedCorpus slices must be contiguous")
            return self._take(start, max(0, stop - start))
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError(index)
        return self._take(position, 1)[0]

    def _take(self, start: int, count: int) -> list[Text]:
        if self._cursor is None or self._cursor[0] > start:
            self._cursor = (0, iter(self))
        position, stream = self._cursor
        for _ in itertools.islice(stream, start - position):
            pass
        taken = list(itertools.islice(stream, count))
        self._cursor = (start + len(taken), stream)
        return taken


def load_miracl(spec: str) -> Benchmark:
    """The benchmark `miracl:ROOT[@langs][#split]` (see the module docstring)."""
    root, langs, split = parse_spec(spec)
    langs = langs or available_languages(root)
    skipped: Counter = Counter()
    queries: list[Text] = []
    corpus: list[Text] = []
    qrels: dict[str, dict[str, int]] = {}
    for lang in langs:
        topics = read_topics(topics_file(root, lang, split), lang)
        judged = read_qrels(qrels_file(root, lang, split), lang, skipped)
        unknown = sorted(set(judged) - set(topics))
        if unknown:
            raise InputError(f"qrels name qid {unknown[0].split(':', 1)[1]!r} absent from the topics file",
                             path=qrels_file(root, lang, split))
        texts = list(iter_corpus(root, lang, skipped))
        ids = {t.id for t in texts}
        if len(ids) != len(texts):
            dup = next(i for i, n in Counter(t.id for t in texts).items() if n > 1)
            raise InputError(f"duplicate docid {dup.split(':', 1)[1]!r}", path=root / f"miracl-corpus-v1.0-{lang}")
        for qid, rels in judged.items():
            missing = [d for d in rels if d not in ids]
            if missing:
                raise InputError(f"qid {qid.split(':', 1)[1]}: docid {missing[0].split(':', 1)[1]!r} is not in "
                                 f"the {lang} corpus", path=qrels_file(root, lang, split))
        for qid, text in topics.items():
            if qid in judged:
                queries.append(Text(qid, text, lang))
                qrels[qid] = judged[qid]
            else:
                skipped["queries_without_relevant"] += 1
        corpus.extend(texts)
    bench = Benchmark(f"miracl-{split}", queries, corpus, qrels, skipped=dict(skipped))
    bench.validate()
    return bench
