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

The corpus is streamed, never held: `load_miracl` makes one pass over each language's (gzipped) JSONL
shards (`iter_corpus`) to count passages and empty ones and to check that docids are unique and that every
judged docid is there, keeping 8 bytes per passage (a 64-bit hash of its docid; a hash seen twice is
confirmed or cleared by a second pass over that language, which also names the file and line) and the set
of judged docids not seen yet. `Benchmark.corpus` is then a `StreamedCorpus`, a sequence that holds no
passage: `retrieval.embeddings.encode_to_store` writes a store from it one shard at a time, and
`evaluation.run.evaluate_model` searches that store shard by shard (`retrieval.store_search`).
"""

from __future__ import annotations

import itertools
import re
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

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
    for _, _, text in _located_passages(root, lang, skipped):
        yield text


def _located_passages(root: Path, lang: str, skipped: Counter | None = None) -> Iterator[tuple[Path, int, Text]]:
    """(file, line, passage) of every non-empty passage of one language."""
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
            yield path, line_no, Text(f"{lang}:{row['docid']}", text, lang)


class StreamedCorpus(Sequence[Text]):
    """The passages of `langs` in order, read from disk on demand; holds nothing but a read position.

    Iteration and consecutive slices stream (each slice continues where the last one ended); any other
    access re-reads from the start, so it is correct but slow. `len` costs one pass, then is remembered.
    """

    def __init__(self, root: str | Path, langs: Sequence[str], length: int | None = None):
        self.root, self.langs = Path(root), list(langs)
        self._length = length  # known to a loader that has counted the passages already
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
    """The benchmark `miracl:ROOT[@langs][#split]` (see the module docstring); its corpus is streamed."""
    root, langs, split = parse_spec(spec)
    langs = langs or available_languages(root)
    skipped: Counter = Counter()
    queries: list[Text] = []
    qrels: dict[str, dict[str, int]] = {}
    passages = 0
    for lang in langs:
        topics = read_topics(topics_file(root, lang, split), lang)
        judged = read_qrels(qrels_file(root, lang, split), lang, skipped)
        unknown = sorted(set(judged) - set(topics))
        if unknown:
            raise InputError(f"qrels name qid {unknown[0].split(':', 1)[1]!r} absent from the topics file",
                             path=qrels_file(root, lang, split))
        passages += check_corpus(root, lang, split, judged, skipped)
        for qid, text in topics.items():
            if qid in judged:
                queries.append(Text(qid, text, lang))
                qrels[qid] = judged[qid]
            else:
                skipped["queries_without_relevant"] += 1
    # no Benchmark.validate: it would hold every docid; topics, qrels and check_corpus checked the same
    return Benchmark(f"miracl-{split}", queries, StreamedCorpus(root, langs, passages), qrels,
                     skipped=dict(skipped), parallel=False)


def check_corpus(root: Path, lang: str, split: str, judged: dict[str, dict[str, int]], skipped: Counter) -> int:
    """The number of passages of `lang`, after one streaming pass that finds duplicate docids and judged
    docids missing from the corpus (a located `InputError`); counts empty passages in `skipped`.

    Keeps a 64-bit hash per passage (8 bytes; sorted once at the end) and the judged docids not seen yet.
    """
    hashes = array("q")
    unseen = {doc for rels in judged.values() for doc in rels}
    for _, _, text in _located_passages(root, lang, skipped):
        hashes.append(hash(text.id))
        unseen.discard(text.id)
    ordered = np.sort(np.frombuffer(hashes, dtype=np.int64))
    repeated = set(ordered[1:][ordered[1:] == ordered[:-1]].tolist())
    del ordered
    if repeated:  # a duplicate docid, or (rarely) two docids of one hash: the second pass tells which
        first: dict[str, tuple[Path, int]] = {}
        for path, line_no, text in _located_passages(root, lang):
            if hash(text.id) in repeated:
                if text.id in first:
                    where = f"{first[text.id][0].name}:{first[text.id][1]}"
                    raise InputError(f"duplicate docid {text.id.split(':', 1)[1]!r} (first at {where})",
                                     path=path, line=line_no, field="docid")
                first[text.id] = (path, line_no)
    if unseen:
        _missing_judged(qrels_file(root, lang, split), lang, unseen)
    return len(hashes)


def _missing_judged(path: Path, lang: str, unseen: set[str]) -> None:
    """Raise for the first relevant qrels line of `path` naming a docid in `unseen`."""
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if len(parts) == 4 and f"{lang}:{parts[2]}" in unseen and int(parts[3]) > 0:
            raise InputError(f"qid {parts[0]}: docid {parts[2]!r} is not in the {lang} corpus", path=path,
                             line=line_no, field="docid")
    raise AssertionError(f"judged docids {sorted(unseen)[:3]} missing from the corpus, but on no line of {path}")
