"""Benchmark and caption-set names turned into data: the one place every command, grid and script resolves them.

Retrieval benchmarks (`resolve_benchmark`):

- `xquad-r`, `mlqa-r` and their article-disjoint halves `xquad-r:train|test`, `mlqa-r:train|test`
  (`data/lareqa.py`; files under `data_dir`, else `$HYBRIDBATCH_LAREQA_DIR`, else the cache);
- `miracl:ROOT[@langs][#split]` (`data/miracl.py`, which reads only the languages it is given);
- a folder in the generic layout (`data/beir_layout.py`).

Image-caption sets (`resolve_caption_set`): `emoji-cldr:train|test` and `openclipart:train|test|all` (built from
Debian packages into the cache), `xm3600:ROOT` (ROOT/captions.jsonl + ROOT/images/), `multi30k:ROOT` (the dataset
repo's data/task1, test_2016_flickr, images in ROOT/images), `mmmu:ROOT` (dev + validation parquet files;
questions -> images), `xmmmu:ROOT` (PangeaBench-xmmmu), or the path of a caption JSONL file in the generic layout
(`data/captions.py`).

Any name may end in `@languages` (`xquad-r:test@en,de`, `emoji-cldr:test@en,de`; `parse_benchmark_spec`): the
data restricted to those languages, each of which it must have (`MissingLanguages` otherwise). A benchmark keeps
only queries in them, searched over candidates in them, so every setting involves only these languages, and is
named by the whole name; a caption set keeps only captions in them. An `@` whose tail is not a list of language
codes is part of the name (`/data/a@b/folder`), and so is any `@` of an existing folder's name.

This module knows no model, no training, no grid and no command: it loads data by name and nothing else, imports
no torch, and leaves the naming of run folders and config errors to its callers.
"""

from __future__ import annotations

import re
from pathlib import Path

from hybridbatch.data.benchmark import Benchmark
from hybridbatch.data.captions import CaptionSet
from hybridbatch.data.errors import InputError, path_problem
from hybridbatch.data.languages import normalize_lang
from hybridbatch.data.miracl import PREFIX as MIRACL_PREFIX
from hybridbatch.data.miracl import load_miracl

_LANGS = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)*(?:,[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)*)*$")


class MissingLanguages(InputError):
    """A name's `@languages` lists a language the data does not have."""


def parse_benchmark_spec(spec: str) -> tuple[str, list[str] | None]:
    """`xquad-r:test@en,de` -> ('xquad-r:test', ['en', 'de']); without `@languages` -> (spec, None)."""
    base, sep, langs = spec.rpartition("@")
    if not sep or not _LANGS.match(langs):
        return spec, None
    try:
        codes = [normalize_lang(x) for x in langs.split(",")]
    except ValueError as exc:
        raise ValueError(f"benchmark {spec!r}: {exc}") from None
    if len(set(codes)) != len(codes):
        raise ValueError(f"benchmark {spec!r}: a language is listed twice")
    return base, codes


# --------------------------------------------------------------------------------------------- benchmarks
def resolve_benchmark(name: str | Path, data_dir: str | Path | None = None, download: bool = False) -> Benchmark:
    """The benchmark a name stands for (see the module docstring), restricted to its `@languages` if any.

    Without `@languages` the benchmark keeps its loader's name (a generic-layout folder: its last part; MIRACL:
    `miracl-<split>`); restricted, it is named by `name`. MIRACL reads its own `@languages` (only those
    languages' files), so a MIRACL benchmark keeps its loader's name either way.
    """
    spec = str(name)
    if spec.startswith(MIRACL_PREFIX):
        return load_miracl(spec)
    is_folder = path_problem(spec, want="folder") is None  # an existing folder's '@' is part of its name
    base, languages = (spec, None) if is_folder else parse_benchmark_spec(spec)
    bench = _load_benchmark(base, data_dir, download)
    if languages is None:
        return bench
    present = set(bench.query_languages) & set(bench.corpus_languages)
    missing = [lang for lang in languages if lang not in present]
    if missing:
        raise MissingLanguages(f"benchmark {spec!r}: {missing} not among the languages of {base} "
                               f"(queries {bench.query_languages}, candidates {bench.corpus_languages})")
    return bench.subset(spec, set(languages), set(languages))


def _load_benchmark(spec: str, data_dir: str | Path | None, download: bool) -> Benchmark:
    """A LAReQA name or a generic-layout folder."""
    from hybridbatch.data.beir_layout import load_generic
    from hybridbatch.data.lareqa import is_lareqa_spec, load_lareqa

    if is_lareqa_spec(spec):
        return load_lareqa(spec, data_dir=data_dir, download=download)
    problem = path_problem(spec, want="folder")
    if problem == "does not exist":
        raise InputError("unknown benchmark: not xquad-r[:train|:test], mlqa-r[:train|:test] or miracl:ROOT, and no "
                         "folder of that name (a folder in the generic layout: corpus.jsonl, queries.jsonl, "
                         "qrels/test.tsv)", path=spec)
    if problem:
        raise InputError(f"benchmark {problem} (a folder in the generic layout, or xquad-r / mlqa-r)", path=spec)
    return load_generic(spec)  # names each missing or unreadable file of the layout


# --------------------------------------------------------------------------------------------- caption sets
def resolve_caption_set(name: str) -> CaptionSet:
    """The image-caption set a name stands for (see the module docstring), its captions restricted to the
    name's `@languages` if any (the set keeps its loader's name and every image)."""
    base, languages = parse_benchmark_spec(name)
    cs = _load_caption_set(base)
    if languages is None:
        return cs
    missing = [lang for lang in languages if lang not in cs.languages]
    if missing:
        raise MissingLanguages(f"caption set {name!r}: {missing} not among the caption languages of {base} "
                               f"({cs.languages})")
    return cs.subset(cs.name, languages=set(languages))


def _load_caption_set(spec: str) -> CaptionSet:
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("emoji-cldr", "openclipart"):
        from hybridbatch.data import emoji_cldr, openclipart

        module, load = ((emoji_cldr, emoji_cldr.load_emoji_cldr) if kind == "emoji-cldr"
                        else (openclipart, openclipart.load_openclipart))
        if (rest or "train") not in module.SPLITS:
            raise InputError(f"caption set {spec!r}: no split {rest!r}; expected "
                             + " or ".join(f"{kind}:{split}" for split in module.SPLITS))
        return load(rest or "train")
    if sep and kind in ("xm3600", "multi30k", "mmmu", "xmmmu"):
        from hybridbatch.data import published_vl

        root = Path(rest)
        if kind == "xm3600":
            return published_vl.load_xm3600(root / "captions.jsonl", root / "images")
        if kind == "multi30k":
            return published_vl.load_multi30k(root)
        return published_vl.load_mmmu(root) if kind == "mmmu" else published_vl.load_xmmmu(root)
    from hybridbatch.data.captions import load_caption_jsonl

    return load_caption_jsonl(spec)


__all__ = ["MissingLanguages", "parse_benchmark_spec", "resolve_benchmark", "resolve_caption_set"]
