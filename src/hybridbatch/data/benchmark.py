"""The in-memory form of a retrieval benchmark: queries, a corpus and graded relevance judgements.

Every text carries its language beside it. `Benchmark.validate` checks what every evaluator relies on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Text:
    """A query or a candidate: a unique id, the text and its language tag."""

    id: str
    text: str
    lang: str


@dataclass
class Benchmark:
    """Queries, corpus and qrels (query id -> {candidate id: grade > 0}).

    `corpus` is a list, or a sequence that streams from disk and holds no passage (`data.miracl.StreamedCorpus`:
    `evaluation.run.evaluate_model` evaluates it from an embedding store, shard by shard).
    `query_groups` maps a query id to its parallel id (the same question in other languages shares it),
    where the benchmark has parallel queries. `parallel` says whether a query's relevant items are translations
    of one answer (LAReQA): only then is rank distance defined (MIRACL's several judged passages of one
    language are not, so its rank distance is NaN, written as null).
    """

    name: str
    queries: list[Text]
    corpus: Sequence[Text]
    qrels: dict[str, dict[str, int]]
    query_groups: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # what a loader left out, and how much
    parallel: bool = True

    @property
    def query_languages(self) -> list[str]:
        return sorted({q.lang for q in self.queries})

    @property
    def corpus_languages(self) -> list[str]:
        return sorted({c.lang for c in self.corpus})

    def stats(self) -> dict[str, dict[str, int]]:
        """Per language: number of queries and candidates."""
        nq = Counter(q.lang for q in self.queries)
        nc = Counter(c.lang for c in self.corpus)
        return {lang: {"queries": nq.get(lang, 0), "candidates": nc.get(lang, 0)}
                for lang in sorted(set(nq) | set(nc))}

    def validate(self) -> None:
        """Ids unique, every judged id known, every grade positive."""
        for kind, items in (("query", self.queries), ("corpus", self.corpus)):
            dup = [i for i, n in Counter(t.id for t in items).items() if n > 1]
            if dup:
                raise ValueError(f"{self.name}: duplicate {kind} ids, e.g. {dup[:3]}")
        qids = {q.id for q in self.queries}
        cids = {c.id for c in self.corpus}
        for qid, rels in self.qrels.items():
            if qid not in qids:
                raise ValueError(f"{self.name}: qrels name unknown query id {qid!r}")
            for cid, grade in rels.items():
                if cid not in cids:
                    raise ValueError(f"{self.name}: qrels of {qid!r} name unknown corpus id {cid!r}")
                if grade <= 0:
                    raise ValueError(f"{self.name}: qrels of {qid!r} hold non-positive grade for {cid!r}")

    def subset(self, name: str, query_langs: set[str] | None = None,
               corpus_langs: set[str] | None = None) -> Benchmark:
        """The benchmark restricted to some query and corpus languages (qrels follow)."""
        queries = [q for q in self.queries if query_langs is None or q.lang in query_langs]
        corpus = [c for c in self.corpus if corpus_langs is None or c.lang in corpus_langs]
        keep_c = {c.id for c in corpus}
        qrels = {}
        for q in queries:
            rels = {cid: g for cid, g in self.qrels.get(q.id, {}).items() if cid in keep_c}
            if rels:
                qrels[q.id] = rels
        groups = {q.id: self.query_groups[q.id] for q in queries if q.id in self.query_groups}
        return Benchmark(name, queries, corpus, qrels, groups, dict(self.skipped), self.parallel)
