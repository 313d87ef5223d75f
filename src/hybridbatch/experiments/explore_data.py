"""The data behind the per-query explorer (`hybridbatch explore`), read from evaluation folders.

One evaluation folder (`metrics.json`, `per_query.tsv.gz`, `runs/multilingual.trec`) is one system; a compare
grid's output folder holds one per run and benchmark (`runs/<base>/<system>[/seed<N>]/eval/<benchmark>/`).
What the files lack (query and candidate texts and languages, the relevant answers) comes from the benchmark
itself, loaded by the name metrics.json records (or `benchmark=`). Without it, languages are read from ids of
the form `lang:...` and no answer is marked.

Aggregates (rank histograms of the answers, language mix of the top 10) are computed over every query of the
run; per-query rankings are embedded for a bounded, deterministic sample (stratified by query language, plus
each system's most and least biased queries by rank distance).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from hybridbatch.data.errors import InputError
from hybridbatch.data.jsonl import trec_run_lines

POOLED_RUN = Path("runs") / "multilingual.trec"
BUCKETS = ((1, 1), (2, 2), (3, 3), (4, 5), (6, 10), (11, 20), (21, 50), (51, 100))
_LANG_PREFIX = re.compile(r"^([a-z]{2,3}(?:[-_][A-Za-z0-9]+)?):")  # LAReQA ids: `en:...`
_CAPTION_ID = re.compile(r"/([a-z]{2,3}(?:[-_][A-Za-z0-9]+)?)/\d+$")  # caption ids: `image/en/0`
_SEED = re.compile(r"^seed(\d+)$")


@dataclass
class SystemEval:
    """One evaluation folder: its name in the page, metrics, pooled run and per-query rank distance."""

    name: str
    folder: Path
    metrics: dict
    run: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # qid -> [(doc id, rank)] in file order
    rank_distance: dict[str, float] = field(default_factory=dict)  # qid -> rank distance (pooled setting)


def read_ranked_run(path: Path) -> dict[str, list[tuple[str, int]]]:
    """`qid Q0 docid rank score tag` lines -> {qid: [(docid, rank)]} sorted by the rank column."""
    run: dict[str, list[tuple[str, int]]] = {}
    with open(path, encoding="utf-8") as handle:
        for line_no, parts in trec_run_lines(enumerate(handle, start=1), path):
            try:
                rank = int(parts[3])
            except ValueError as exc:
                raise InputError(f"rank {parts[3]!r} is not an integer", path=path, line=line_no,
                                 field="rank") from exc
            run.setdefault(parts[0], []).append((parts[2], rank))
    for docs in run.values():
        docs.sort(key=lambda d: d[1])
    return run


def read_rank_distance(path: Path) -> dict[str, float]:
    """{query id: rank distance} of the multilingual rows of per_query.tsv.gz (NaN rows left out)."""
    out: dict[str, float] = {}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        header = handle.readline().rstrip("\n").split("\t")
        if header[:2] != ["setting", "query"]:
            raise InputError("expected a header starting 'setting<TAB>query'", path=path, line=1)
        col = header.index("rank_distance") if "rank_distance" in header else None
        for line_no, line in enumerate(handle, start=2):
            row = line.rstrip("\n").split("\t")
            if len(row) != len(header):
                raise InputError(f"expected {len(header)} columns, got {len(row)}", path=path, line=line_no)
            if row[0] != "multilingual" or col is None:
                continue
            try:
                value = float(row[col])
            except ValueError as exc:
                raise InputError(f"not a number: {row[col]!r}", path=path, line=line_no,
                                 field="rank_distance") from exc
            if math.isfinite(value):
                out[row[1]] = value
    return out


def read_metrics(path: Path) -> dict:
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a readable metrics.json ({exc})", path=path) from None
    if not isinstance(metrics, dict):
        raise InputError(f"expected a JSON object, got {type(metrics).__name__}", path=path)
    return metrics


def load_system(folder: Path, name: str) -> SystemEval:
    system = SystemEval(name, folder, read_metrics(folder / "metrics.json"))
    if (folder / POOLED_RUN).is_file():
        try:
            system.run = read_ranked_run(folder / POOLED_RUN)
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=folder / POOLED_RUN) from None
    if (folder / "per_query.tsv.gz").is_file():
        try:
            system.rank_distance = read_rank_distance(folder / "per_query.tsv.gz")
        except (gzip.BadGzipFile, EOFError, UnicodeDecodeError) as exc:
            raise InputError(f"not a readable gzip text file ({exc})", path=folder / "per_query.tsv.gz") from None
    return system


def find_systems(path: str | Path) -> dict[str, list[SystemEval]]:
    """{benchmark folder name: systems}: one evaluation folder, or every one of a compare grid's output.

    In a grid a system with several seeds is shown by its lowest seed (rankings are not averaged)."""
    path = Path(path)
    if (path / "metrics.json").is_file():
        metrics = read_metrics(path / "metrics.json")
        return {str(metrics.get("benchmark") or path.name): [load_system(path, str(metrics.get("model") or path.name))]}
    found = sorted((path / "runs").glob("**/eval/*/metrics.json")) if (path / "runs").is_dir() else []
    if not found:
        raise FileNotFoundError(f"{path}: neither an evaluation folder (metrics.json) nor a compare grid "
                                "output (runs/**/eval/*/metrics.json)")
    chosen: dict[str, dict[str, tuple[int, Path]]] = defaultdict(dict)
    for metrics_file in found:
        folder = metrics_file.parent
        parts = folder.relative_to(path / "runs").parts[:-2]  # base/system[/seedN]
        seed = _SEED.match(parts[-1]) if parts else None
        system = "/".join(parts[:-1] if seed else parts)
        rank = int(seed.group(1)) if seed else -1
        if system not in chosen[folder.name] or rank < chosen[folder.name][system][0]:
            chosen[folder.name][system] = (rank, folder)
    out = {}
    for slug, systems in sorted(chosen.items()):
        loaded = [load_system(folder, system + (f" (seed {seed})" if seed >= 0 else ""))
                  for system, (seed, folder) in sorted(systems.items(), key=lambda kv: _grid_order(kv[0]))]
        label = _label(loaded[0].metrics.get("benchmark"), slug)
        out[slug if label in out else label] = loaded
    return out


def _label(spec: str | None, slug: str) -> str:
    """The benchmark's short name as the report's tables write it (`toy-b@de,en`), else its folder name."""
    from hybridbatch.experiments.grid import benchmark_label

    try:
        return benchmark_label(spec) if spec else slug
    except ValueError:
        return slug


def _grid_order(system: str) -> tuple:
    """zero-shot (or en-en), mono, cross, then hybrid by alpha, then anything else; per base model."""
    base, _, name = system.rpartition("/")
    order = {"zero-shot": 0, "en-en": 0, "mono": 1, "cross": 2}
    alpha = name.split("@", 1)[1] if name.startswith("hybrid@") else ""
    try:
        alpha_key = float(alpha)
    except ValueError:
        alpha_key = 0.0
    return base, order.get(name, 3 if name.startswith("hybrid") else 4), alpha_key, name


def load_benchmark_for(metrics: dict, spec: str | None = None, data_dir: str | None = None):
    """The text-side Benchmark the pooled run was scored on: for image-text evaluations, images against the
    pooled captions. Returns (benchmark or None, why not)."""
    name = spec or metrics.get("benchmark")
    if not name:
        return None, "metrics.json names no benchmark"
    try:
        if metrics.get("kind") == "image-text":
            from hybridbatch.evaluation.image_text import image_to_text_benchmark
            from hybridbatch.experiments.grid import parse_benchmark_spec
            from hybridbatch.training.image_text import load_caption_source

            cs = load_caption_source(parse_benchmark_spec(name)[0])
            langs = metrics.get("languages") or cs.languages
            return image_to_text_benchmark(cs.subset(cs.name, languages=set(langs)), langs), ""
        from hybridbatch.experiments.grid import load_benchmark_spec

        return load_benchmark_spec(name, data_dir), ""
    except Exception as exc:  # noqa: BLE001 - any failure only means: no texts, no answers marked
        return None, f"benchmark {name!r} could not be loaded ({type(exc).__name__}: {exc})"


def lang_from_id(doc_id: str) -> str:
    match = _LANG_PREFIX.match(doc_id) or _CAPTION_ID.search(doc_id)
    return match.group(1) if match else "?"


def buckets_for(depth: int) -> list[tuple[int, int]]:
    """BUCKETS up to the run's depth, and one bucket 101..depth for runs deeper than 100."""
    kept = [(lo, min(hi, depth)) for lo, hi in BUCKETS if lo <= depth]
    return kept + ([(BUCKETS[-1][1] + 1, depth)] if depth > BUCKETS[-1][1] else [])


def bucket_of(rank: int | None, buckets: list[tuple[int, int]]) -> int:
    """Index in `buckets`, or len(buckets) for an answer beyond the run's depth."""
    for i, (lo, hi) in enumerate(buckets):
        if rank is not None and lo <= rank <= hi:
            return i
    return len(buckets)


def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def run_query_id(qid: str, run: dict) -> str:
    """A per-query key as the run names it (image-text per-query keys carry an `image:` prefix)."""
    return qid if qid in run or ":" not in qid else (qid.split(":", 1)[1] if qid.split(":", 1)[1] in run else qid)


def choose_sample(query_lang: dict[str, str], systems: list[SystemEval], size: int, extremes: int = 10):
    """(sampled query ids, {system: {"most": [...], "least": [...]}}) over the queries every run holds."""
    common = set.intersection(*(set(s.run) for s in systems)) if systems else set()
    biased = {}
    picked: set[str] = set()
    for s in systems:
        scored = sorted(((d, q) for k, d in s.rank_distance.items() if (q := run_query_id(k, s.run)) in common))
        least = [q for _, q in scored[:extremes]]
        most = [q for _, q in sorted(scored, key=lambda t: (-t[0], t[1]))[:extremes]]
        biased[s.name] = {"most": most, "least": least}
        picked.update(most + least)
    if len(common) <= size:
        return sorted(common), biased
    by_lang: dict[str, list[str]] = defaultdict(list)
    for q in sorted(common, key=_key):
        by_lang[query_lang.get(q, "?")].append(q)
    queues = [iter(v) for _, v in sorted(by_lang.items())]
    while len(picked) < size and queues:  # round robin over query languages, in a fixed hashed order
        for queue in list(queues):
            q = next(queue, None)
            if q is None:
                queues.remove(queue)
            elif len(picked) < size:
                picked.add(q)
    return sorted(picked), biased


def benchmark_data(label: str, systems: list[SystemEval], bench, why_not: str, sample: int, top: int) -> dict:
    """Everything the page shows for one benchmark (see the module docstring)."""
    query_lang = {q.id: q.lang for q in bench.queries} if bench else {}
    query_text = {q.id: q.text for q in bench.queries} if bench else {}
    doc_lang = {c.id: c.lang for c in bench.corpus} if bench else {}
    doc_text = {c.id: c.text for c in bench.corpus} if bench else {}
    qrels = bench.qrels if bench else {}
    for s in systems:
        for qid, docs in s.run.items():
            query_lang.setdefault(qid, lang_from_id(qid))
            for doc_id, _ in docs:
                doc_lang.setdefault(doc_id, lang_from_id(doc_id))
    langs = sorted(set(doc_lang.values()))
    sampled, biased = choose_sample(query_lang, systems, sample)
    docs: dict[str, int] = {}  # doc id -> index in the embedded doc table

    def doc_index(doc_id: str) -> int:
        return docs.setdefault(doc_id, len(docs))

    queries = {}
    for qid in sampled:
        rel = sorted(qrels.get(qid, {}), key=lambda d: (doc_lang.get(d, "?"), d))
        entry = {"lang": query_lang.get(qid, "?"), "text": query_text.get(qid, ""),
                 "rel": [doc_index(d) for d in rel], "sys": []}
        for s in systems:
            ranked = s.run.get(qid, [])
            rank_of = {d: r for d, r in ranked}
            key = qid if qid in s.rank_distance else f"image:{qid}"
            entry["sys"].append({"top": [[doc_index(d), r] for d, r in ranked[:top]],
                                 "relRanks": [rank_of.get(d) for d in rel],
                                 "rd": s.rank_distance.get(key)})
        queries[qid] = entry
    depth = max((r for s in systems for v in s.run.values() for _, r in v), default=0)
    buckets = buckets_for(depth)
    aggregates = [language_aggregates(s, query_lang, doc_lang, qrels, buckets) for s in systems]
    total = len(set.union(*(set(s.run) for s in systems))) if systems else 0
    return {
        "label": label, "benchmark": (systems[0].metrics.get("benchmark") if systems else label),
        "kind": systems[0].metrics.get("kind", "text") if systems else "text",
        "systems": [s.name for s in systems],
        "summary": [_summary(s) for s in systems],
        "langs": langs, "depth": depth, "top": top, "buckets": [_bucket_name(b) for b in buckets] + [f">{depth}"],
        "docs": [[d, langs.index(doc_lang[d]) if doc_lang.get(d) in langs else -1, doc_text.get(d, "")[:300]]
                 for d in docs],
        "queries": queries, "biased": [biased[s.name] for s in systems], "aggregates": aggregates,
        "queriesInRun": total, "queriesEmbedded": len(queries),
        "answersKnown": bench is not None,
        "note": why_not if any(s.run for s in systems) else "No pooled multilingual run (runs/multilingual.trec) "
                "in these evaluations: a benchmark with one candidate language has none.",
    }


def _bucket_name(bucket: tuple[int, int]) -> str:
    return str(bucket[0]) if bucket[0] == bucket[1] else f"{bucket[0]}-{bucket[1]}"


def _summary(s: SystemEval) -> dict:
    block = s.metrics.get("multilingual") or {}
    return {"map": block.get("map"), "rank_distance": block.get("rank_distance"),
            "own_language_top10": block.get("own_language_top10"), "queries": len(s.run)}


def language_aggregates(s: SystemEval, query_lang: dict, doc_lang: dict, qrels: dict,
                        buckets: list[tuple[int, int]]) -> dict:
    """Per query language, over every query of the run: where its answers in each language rank (counts per
    bucket, last = beyond the run's depth) and the mean language mix of its top 10."""
    hist: dict[str, dict[str, list[int]]] = {}
    mix: dict[str, dict[str, float]] = {}
    count: dict[str, int] = defaultdict(int)
    for qid, ranked in s.run.items():
        ql = query_lang.get(qid, "?")
        count[ql] += 1
        rank_of = {d: r for d, r in ranked}
        for d in qrels.get(qid, {}):
            row = hist.setdefault(ql, {}).setdefault(doc_lang.get(d, "?"), [0] * (len(buckets) + 1))
            row[bucket_of(rank_of.get(d), buckets)] += 1
        top10 = [doc_lang.get(d, "?") for d, r in ranked if r <= 10]
        shares = mix.setdefault(ql, {})
        for lang in top10:
            shares[lang] = shares.get(lang, 0.0) + 1.0 / max(len(top10), 1)
    for ql, shares in mix.items():
        for lang in shares:
            shares[lang] = round(shares[lang] / count[ql], 4)
    return {"hist": hist, "mix": mix, "queries": dict(count)}
