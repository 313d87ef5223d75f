"""The generic multilingual layout: BEIR's files with a language field.

    DIR/corpus.jsonl    {"_id": "...", "text": "...", "lang": "de", "title": "..." (optional)}
    DIR/queries.jsonl   {"_id": "...", "text": "...", "lang": "en"}
    DIR/qrels/test.tsv  query-id <TAB> corpus-id <TAB> score   (header line optional; score > 0 is relevant)

Bad input raises `InputError` naming the file, line and field: a line that is not valid UTF-8, malformed
JSON, a missing or non-string field (a title may be absent or null), a lone surrogate escape in a text, an
unknown language code, a duplicate id, a qrels line with the wrong number of columns, a non-integer or
non-finite score, a score outside [-10**6, 10**6] (trec_eval's memory grows with the grade), two different judgements of one
(query, candidate) pair (both lines named), or an id that is not in queries/corpus. Documented skips,
counted in `Benchmark.skipped`: texts that are empty or only whitespace (and the judgements naming them),
qrels lines with score <= 0 (judged non-relevant), a judgement repeated with the same score, and queries
left with no relevant item (not evaluated). A UTF-8 byte order mark at the start of a file is ignored.
A title, when present, is prepended to the text as BEIR does ("title text").

Language tags are compared exactly (`en-US` is not `en`): a query language that matches no corpus language
exactly but shares its base language with one (queries `en-US`, corpus `en`) is an error naming both, since
it would silently put those queries out of the monolingual setting; use one tag in both files.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from hybridbatch.data.benchmark import Benchmark, Text
from hybridbatch.data.errors import InputError, path_problem, require_path
from hybridbatch.data.jsonl import has_lone_surrogate, jsonl_objects, utf8_lines
from hybridbatch.data.languages import normalize_lang
from hybridbatch.io import atomic_write

QRELS_HEADER = "query-id\tcorpus-id\tscore"
# trec_eval (pytrec_eval) holds grades as int32 and allocates memory per grade level: 2**31 - 1 took 14 GB and
# was killed, 10**7 costs ~100 MB, 10**6 ~30 MB. Real grades are small (0-3); the bound is generous.
GRADE_MIN, GRADE_MAX = -(10**6), 10**6


def is_generic_layout(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "corpus.jsonl").is_file() and (p / "queries.jsonl").is_file()


def read_texts(path: Path, skipped: Counter, kind: str) -> list[Text]:
    texts: list[Text] = []
    seen: set[str] = set()
    for line_no, row in jsonl_objects(require_path(path, f"{kind} file")):
        for key in ("_id", "text", "lang"):
            if key not in row:
                raise InputError("missing", path=path, line=line_no, field=key)
        if not isinstance(row["_id"], (str, int)) or isinstance(row["_id"], bool) or str(row["_id"]) == "":
            raise InputError("must be a non-empty string", path=path, line=line_no, field="_id")
        if not isinstance(row["text"], str):
            raise InputError(f"must be a string, got {type(row['text']).__name__}", path=path,
                             line=line_no, field="text")
        title = "" if row.get("title") is None else row["title"]
        if not isinstance(title, str):
            raise InputError(f"must be a string, got {type(title).__name__}", path=path, line=line_no,
                             field="title")
        for key, value in (("_id", row["_id"]), ("text", row["text"]), ("title", title)):
            if isinstance(value, str) and has_lone_surrogate(value):
                raise InputError("not valid Unicode (a lone surrogate escape)", path=path, line=line_no,
                                 field=key)
        try:
            lang = normalize_lang(row["lang"])
        except ValueError as exc:
            raise InputError(str(exc), path=path, line=line_no, field="lang") from exc
        tid = str(row["_id"])
        if any(ch.isspace() for ch in tid):
            raise InputError(f"id {tid!r} contains whitespace (TREC runs cannot hold it)", path=path,
                             line=line_no, field="_id")
        if tid in seen:
            raise InputError(f"duplicate id {tid!r}", path=path, line=line_no, field="_id")
        seen.add(tid)
        text = f"{title} {row['text']}".strip() if title else row["text"]
        if not text.strip():
            skipped[f"empty {kind} texts"] += 1
            continue
        texts.append(Text(tid, text, lang))
    return texts


def read_qrels(path: Path, query_ids: set[str], corpus_ids: set[str], dropped_ids: set[str],
               skipped: Counter) -> dict[str, dict[str, int]]:
    """BEIR tsv (`query-id corpus-id score`) or TREC qrels (`query-id 0 corpus-id score`)."""
    qrels: dict[str, dict[str, int]] = {}
    judged: dict[tuple[str, str], tuple[int, int]] = {}  # (query, candidate) -> (grade, line)
    with open(require_path(path, "qrels file"), "rb") as handle:
        for line_no, line in utf8_lines(handle, path):
            parts = line.split()
            if not parts or (line_no == 1 and parts[0] == "query-id"):
                continue
            if len(parts) == 4:
                parts = [parts[0], parts[2], parts[3]]
            if len(parts) != 3:
                raise InputError(f"expected 3 columns (query-id, corpus-id, score), got {len(parts)}",
                                 path=path, line=line_no)
            qid, cid, score = parts
            try:
                value = float(score)
            except ValueError as exc:
                raise InputError(f"score {score!r} is not a number", path=path, line=line_no,
                                 field="score") from exc
            if not math.isfinite(value) or value != int(value):
                raise InputError(f"score {score!r} is not an integer", path=path, line=line_no, field="score")
            grade = int(value)
            if not GRADE_MIN <= grade <= GRADE_MAX:
                raise InputError(f"score {score!r} is outside [{GRADE_MIN}, {GRADE_MAX}] (trec_eval holds grades "
                                 "as 32-bit integers and allocates memory per grade level)", path=path, line=line_no,
                                 field="score")
            earlier = judged.get((qid, cid))
            if earlier is not None:
                if earlier[0] != grade:
                    raise InputError(f"({qid}, {cid}) judged {grade} here and {earlier[0]} at line {earlier[1]}: "
                                     "conflicting judgements of one pair", path=path, line=line_no)
                skipped["repeated identical judgements"] += 1
                continue
            judged[(qid, cid)] = (grade, line_no)
            if qid in dropped_ids or cid in dropped_ids:
                skipped["judgements of skipped texts"] += 1
                continue
            if query_ids is not None and qid not in query_ids:
                raise InputError(f"unknown query id {qid!r}", path=path, line=line_no, field="query-id")
            if corpus_ids is not None and cid not in corpus_ids:
                raise InputError(f"unknown corpus id {cid!r}", path=path, line=line_no, field="corpus-id")
            if grade <= 0:
                skipped["non-relevant judgements (score <= 0)"] += 1
                continue
            qrels.setdefault(qid, {})[cid] = grade
    return qrels


def _all_ids(path: Path) -> set[str]:
    ids = set()
    with open(path, encoding="utf-8-sig") as handle:
        for line in handle:
            if line.strip():
                ids.add(str(json.loads(line).get("_id")))
    return ids


def check_language_tags(queries: list[Text], corpus: list[Text], where: Path) -> None:
    """A query language that matches no corpus language exactly but shares its base language with one is an error."""
    corpus_langs = {c.lang for c in corpus}
    by_base: dict[str, set[str]] = {}
    for lang in corpus_langs:
        by_base.setdefault(lang.split("-", 1)[0], set()).add(lang)
    for lang in sorted({q.lang for q in queries} - corpus_langs):
        near = by_base.get(lang.split("-", 1)[0])
        if near:
            raise InputError(f"queries in {lang!r} but the corpus has {', '.join(map(repr, sorted(near)))}: tags "
                             "are compared exactly, so these queries would have no monolingual candidates; use "
                             "the same tag in queries.jsonl and corpus.jsonl", path=where)


def load_generic(folder: str | Path, split: str = "test") -> Benchmark:
    folder = require_path(folder, "benchmark folder", want="folder")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for needed in (folder / "corpus.jsonl", folder / "queries.jsonl", qrels_path):
        problem = path_problem(needed)
        if problem:
            raise InputError(f"missing file of the generic layout (corpus.jsonl, queries.jsonl, "
                             f"qrels/{split}.tsv): it {problem}", path=needed)
    skipped: Counter = Counter()
    corpus = read_texts(folder / "corpus.jsonl", skipped, "corpus")
    queries = read_texts(folder / "queries.jsonl", skipped, "query")
    kept = {t.id for t in corpus} | {t.id for t in queries}
    dropped = (_all_ids(folder / "corpus.jsonl") | _all_ids(folder / "queries.jsonl")) - kept
    check_language_tags(queries, corpus, folder / "queries.jsonl")
    qrels = read_qrels(qrels_path, {q.id for q in queries}, {c.id for c in corpus}, dropped, skipped)
    unjudged = [q for q in queries if q.id not in qrels]
    if unjudged:
        skipped["queries with no relevant item"] += len(unjudged)
        queries = [q for q in queries if q.id in qrels]
    if not queries:
        raise InputError("no query has a relevant item", path=qrels_path)
    bench = Benchmark(folder.name, queries, corpus, qrels, skipped=dict(skipped))
    bench.validate()
    return bench


def write_generic(bench: Benchmark, folder: str | Path, split: str = "test", replace: bool = False) -> Path:
    """Export any benchmark to the generic layout (each file written atomically). A folder that exists and is not
    empty is refused (it may be someone's benchmark) unless `replace`."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError("exists and is not a folder", path=folder)
    if not replace and folder.is_dir() and any(folder.iterdir()):
        raise InputError("folder exists and is not empty; not replacing its files (choose another folder, or "
                         "--force to replace corpus.jsonl, queries.jsonl and qrels/)", path=folder)
    for name, items in (("corpus.jsonl", bench.corpus), ("queries.jsonl", bench.queries)):
        with atomic_write(folder / name) as handle:
            for t in items:
                handle.write(json.dumps({"_id": t.id, "text": t.text, "lang": t.lang}, ensure_ascii=False) + "\n")
    with atomic_write(folder / "qrels" / f"{split}.tsv") as handle:
        handle.write(QRELS_HEADER + "\n")
        for qid, rels in bench.qrels.items():
            for cid, grade in rels.items():
                handle.write(f"{qid}\t{cid}\t{grade}\n")
    return folder
