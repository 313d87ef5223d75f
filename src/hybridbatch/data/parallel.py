"""The parallel training set: groups of one question and its answer passage in several languages.

A `ParallelGroup` is the unit the batch samplers draw: for each language tag it holds the query and the
positive passage (translations of each other), and optionally hard negatives per passage language. Because
every group has every configured language, a sampler can pick any (query language, passage language) pair
for any group, which is what mono, cross and hybrid batching need.

On disk (JSONL, UTF-8, one group per line; blank lines are skipped)::

    {"id": "g17",
     "queries":   {"en": "who wrote ...?", "de": "wer schrieb ...?"},
     "positives": {"en": "It was written by ...", "de": "Es wurde von ... geschrieben"},
     "negatives": {"en": ["another sentence", "..."], "de": ["..."]}}

`id` is a non-empty string, unique in the file. `queries` and `positives` map language tags to non-empty
texts (valid Unicode: a lone surrogate escape such as `"\\ud800"` is refused; anything else, control
characters and either normalization form included, is kept unchanged). `negatives` is optional and maps a
passage language to a list of non-empty texts. Language tags are normalized (`pt_BR` -> `pt-BR`). Any other
key is an error, so that a typo ("positive") is not silently ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybridbatch.data.errors import InputError
from hybridbatch.data.jsonl import has_lone_surrogate, jsonl_objects
from hybridbatch.data.languages import normalize_lang
from hybridbatch.io import atomic_write

if TYPE_CHECKING:
    from hybridbatch.data.lareqa import Article

_Fail = Callable[..., InputError]
_FIELDS = {"id", "queries", "positives", "negatives"}


@dataclass(frozen=True)
class ParallelGroup:
    """One question in several languages, its answer passage in several languages, hard negatives."""

    id: str
    queries: dict[str, str]
    positives: dict[str, str]
    negatives: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def languages(self) -> frozenset[str]:
        """Languages usable on both sides: the group has a query and a positive in them."""
        return frozenset(self.queries) & frozenset(self.positives)


# --------------------------------------------------------------------------------------------- JSONL
def load_groups_jsonl(path: str | Path) -> list[ParallelGroup]:
    """Read groups from JSONL; any bad line raises `InputError` naming the file, line and field."""
    path = Path(path)
    groups: list[ParallelGroup] = []
    seen: dict[str, int] = {}
    for lineno, record in jsonl_objects(path):
        group = _parse_group(record, path, lineno)
        if group.id in seen:
            raise InputError(f"duplicate id {group.id!r} (first on line {seen[group.id]})",
                             path=path, line=lineno, field="id")
        seen[group.id] = lineno
        groups.append(group)
    if not groups:
        raise InputError("file holds no groups", path=path)
    return groups


def save_groups_jsonl(path: str | Path, groups: Iterable[ParallelGroup]) -> None:
    """Write groups as JSONL atomically (`negatives` only when the group has some)."""
    with atomic_write(path) as handle:
        for group in groups:
            record: dict[str, Any] = {"id": group.id, "queries": group.queries, "positives": group.positives}
            if group.negatives:
                record["negatives"] = {lang: list(texts) for lang, texts in group.negatives.items()}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _parse_group(record: dict[str, Any], path: Path, line: int) -> ParallelGroup:
    def fail(message: str, where: str | None = None) -> InputError:
        return InputError(message, path=path, line=line, field=where)

    unknown = sorted(set(record) - _FIELDS)
    if unknown:
        raise fail(f"unknown field (expected {sorted(_FIELDS)})", unknown[0])
    for name in ("id", "queries", "positives"):
        if name not in record:
            raise fail("missing", name)
    gid = record["id"]
    if not isinstance(gid, str):
        raise fail(f"expected a string, got {type(gid).__name__}", "id")
    if not gid.strip():
        raise fail("empty id", "id")
    if has_lone_surrogate(gid):
        raise fail("not valid Unicode (a lone surrogate escape)", "id")
    queries = _text_map(record["queries"], "queries", fail)
    positives = _text_map(record["positives"], "positives", fail)
    negatives: dict[str, tuple[str, ...]] = {}
    raw_neg = record.get("negatives", {})
    if not isinstance(raw_neg, dict):
        raise fail(f"expected an object of language -> list of texts, got {type(raw_neg).__name__}", "negatives")
    for key, texts in raw_neg.items():
        lang = _lang(key, "negatives", fail, negatives)
        if not isinstance(texts, list):
            raise fail(f"expected a list of texts, got {type(texts).__name__}", f"negatives.{key}")
        for i, item in enumerate(texts):
            _check_text(item, f"negatives.{key}[{i}]", fail)
        negatives[lang] = tuple(texts)
    return ParallelGroup(gid, queries, positives, negatives)


def _text_map(value: object, name: str, fail: _Fail) -> dict[str, str]:
    """A non-empty {language: non-empty text} object."""
    if not isinstance(value, dict):
        raise fail(f"expected an object of language -> text, got {type(value).__name__}", name)
    if not value:
        raise fail("no languages", name)
    out: dict[str, str] = {}
    for key, text in value.items():
        lang = _lang(key, name, fail, out)
        _check_text(text, f"{name}.{key}", fail)
        out[lang] = text
    return out


def _lang(key: str, name: str, fail: _Fail, seen: Mapping[str, object]) -> str:
    try:
        lang = normalize_lang(key)
    except ValueError as exc:
        raise fail(str(exc), f"{name}.{key}") from exc
    if lang in seen:
        raise fail(f"language {lang!r} given twice", f"{name}.{key}")
    return lang


def _check_text(text: object, where: str, fail: _Fail) -> None:
    if not isinstance(text, str):
        raise fail(f"expected a string, got {type(text).__name__}", where)
    if not text.strip():
        raise fail("empty text", where)
    if has_lone_surrogate(text):
        raise fail("not valid Unicode (a lone surrogate escape)", where)


# --------------------------------------------------------------------------------------------- languages
def restrict_languages(groups: Sequence[ParallelGroup], languages: Iterable[str],
                       at_least: int | None = None) -> tuple[list[ParallelGroup], int]:
    """Groups with a query and a positive in every requested language (or in `at_least` of them), cut down to
    those languages.

    Samplers need fully parallel data over the configured languages (any group may be drawn in any
    language), so incomplete groups are dropped; the caller logs `n_dropped`. With `at_least` (the samplers'
    `group_languages="available"`, for partially parallel data) a group is kept when it has that many of them.
    Other languages are removed from the kept groups so that every strategy sees exactly the same training data.
    """
    langs = [normalize_lang(lang) for lang in languages]
    if not langs:
        raise ValueError("no languages requested")
    wanted = set(langs)
    need = len(wanted) if at_least is None else at_least
    kept = []
    for group in groups:
        have = [lang for lang in langs if lang in group.languages]
        if len(have) >= need:
            kept.append(ParallelGroup(
                group.id,
                {lang: group.queries[lang] for lang in have},
                {lang: group.positives[lang] for lang in have},
                {lang: texts for lang, texts in group.negatives.items() if lang in have},
            ))
    return kept, len(groups) - len(kept)


def language_sizes(groups: Iterable[ParallelGroup]) -> dict[str, int]:
    """Per language, how many groups have a query and a positive in it.

    This is the "data size" for `language_weighting="size"`: computed on the groups *before*
    `restrict_languages` (after it, fully parallel data gives every language the same size).
    """
    sizes: dict[str, int] = {}
    for group in groups:
        for lang in group.languages:
            sizes[lang] = sizes.get(lang, 0) + 1
    return dict(sorted(sizes.items()))


# --------------------------------------------------------------------------------------------- LAReQA
def groups_from_lareqa(articles_by_lang: Mapping[str, Sequence[Article]]) -> list[ParallelGroup]:
    """XQuAD-R / MLQA-R training groups: one per question id, across the languages it exists in.

    In each language the positive is the question's answer sentence and the hard negatives are the other
    sentences of the same paragraph (empty sentences and copies of the answer text left out; a question
    whose answer sentence is empty in some language is left out in that language). Groups come in order of
    first appearance (languages in the given order, then articles, paragraphs, questions). Pass the train
    half (`split_articles(..., "train", by=SPLIT_RULE[bench])`) so that test questions never reach training.
    """
    queries: dict[str, dict[str, str]] = {}
    positives: dict[str, dict[str, str]] = {}
    negatives: dict[str, dict[str, tuple[str, ...]]] = {}
    for key, articles in articles_by_lang.items():
        lang = normalize_lang(key)
        for ai, article in enumerate(articles):
            for pi, paragraph in enumerate(article.paragraphs):
                for question in paragraph.questions:
                    where = f"{lang}: article {ai} ({article.title!r}), paragraph {pi}, question {question.id!r}"
                    if not 0 <= question.answer_sentence < len(paragraph.sentences):
                        raise ValueError(f"{where}: answer_sentence {question.answer_sentence} out of range")
                    if lang in queries.get(question.id, {}):
                        raise ValueError(f"{where}: question id appears twice in this language")
                    answer = paragraph.sentences[question.answer_sentence]
                    if not answer.strip():  # unusable in this language; restrict_languages drops the group
                        continue
                    queries.setdefault(question.id, {})[lang] = question.text
                    positives.setdefault(question.id, {})[lang] = answer
                    others = tuple(s for i, s in enumerate(paragraph.sentences)
                                   if i != question.answer_sentence and s.strip() and s != answer)
                    if others:
                        negatives.setdefault(question.id, {})[lang] = others
    return [ParallelGroup(qid, queries[qid], positives[qid], negatives.get(qid, {})) for qid in queries]
