"""Parallel groups: which per-query rows are translations of one item, the unit the significance tests resample.

A group is one question with all its translations (XQuAD-R / MLQA-R: the rows of `qas.id` in every language,
every target of its cross-lingual rows included), or, for image-text, one image with all its captions. The
per-query files (`per_query.tsv.gz`) carry no group column, so the group is read from the row key, by a rule
that depends on how the benchmark names its queries:

- `lareqa` (xquad-r, mlqa-r and their parts): keys `lang:<qas.id>`, cross-lingual `lang:<qas.id>>y`;
  the group is `<qas.id>`.
- `caption` (image-text grids): text queries `lang:<image>/<lang>/<pos>` (cross-lingual with `>y`), image
  queries `image:<image>`; the group is `<image>`.
- `question` (image-text grids on `mmmu:ROOT` / `xmmmu:ROOT`, `data/published_mmmu.py`): text queries
  `lang:<row id>` (MMMU) or `lang:<row id>/<lang>` (xMMMU, cross-lingual with `>y`), image queries
  `image:<row id>/image_<k>`; the group is `<row id>`: one question with all its translations and images.
- `line` (image-text grids on `multi30k:ROOT`, `data/published_vl.py`): text queries `lang:<split>/<line>/<lang>`
  (cross-lingual with `>y`), the group `<split>/<line>` (one image's caption and its translations); image
  queries `image:<image>`, the group `<image>`. (The `caption` rule would read every caption's image as `<split>`.)
- `none`: no parallel structure known (MIRACL: its questions are not translations of each other; a generic
  layout folder not listed in `significance.parallel_benchmarks`): queries are resampled, and the report
  says so. A generic-layout folder whose query ids are `lang:<id shared by translations>` (e.g. one written
  from XQuAD-R) is named in `significance.parallel_benchmarks` to get the `lareqa` rule.
"""

from __future__ import annotations

from collections.abc import Callable

GroupOf = Callable[[str, str], str]  # (setting, row key) -> group
LAREQA_FAMILIES = ("xquad-r", "mlqa-r")


def lareqa_group(setting: str, key: str) -> str:
    """`de:56be...` and `de:56be...>en` -> `56be...` (the question's `qas.id`)."""
    query = key.rpartition(">")[0] if setting == "crosslingual" else key
    lang, sep, qid = query.partition(":")
    if not sep or not qid:
        raise ValueError(f"query id {query!r} is not `lang:<parallel id>`; cannot tell its parallel group")
    return qid


def caption_group(setting: str, key: str) -> str:
    """`de:img7/de/0`, `de:img7/de/0>en`, `image:img7` -> `img7`: an image with all its captions."""
    query = key.rpartition(">")[0] if setting == "crosslingual" else key
    _, sep, rest = query.partition(":")
    if not sep or not rest:
        raise ValueError(f"query id {query!r} is not `lang:<caption id>` or `image:<image id>`")
    if setting == "multilingual":  # the image is the query
        return rest
    image, *tail = rest.rsplit("/", 2)
    if len(tail) != 2:
        raise ValueError(f"caption id {rest!r} is not `<image>/<lang>/<pos>`; cannot tell its image")
    return image


def question_group(setting: str, key: str) -> str:
    """`en:validation_Art_1`, `fr:validation_Art_1/fr>ja`, `image:validation_Art_1/image_2` -> `validation_Art_1`:
    an MMMU question (row ids hold no `/`) with all its translations and images."""
    query = key.rpartition(">")[0] if setting == "crosslingual" else key
    _, sep, rest = query.partition(":")
    row_id = rest.split("/", 1)[0]
    if not sep or not row_id:
        raise ValueError(f"query id {query!r} is not `lang:<MMMU row id>[/<lang>]` or `image:<row id>/image_<k>`")
    return row_id


def line_group(setting: str, key: str) -> str:
    """`de:test_2016_flickr/7/de`, `de:test_2016_flickr/7/de>en` -> `test_2016_flickr/7`; `image:1000092795` ->
    `1000092795`: a Multi30K line (one image) with all its translations."""
    query = key.rpartition(">")[0] if setting == "crosslingual" else key
    _, sep, rest = query.partition(":")
    if setting == "multilingual" and sep and rest:  # the image is the query
        return rest
    line, slash, lang = rest.rpartition("/")
    if not sep or not slash or not line or not lang:
        raise ValueError(f"query id {query!r} is not `lang:<split>/<line>/<lang>` or `image:<image id>`")
    return line


RULES: dict[str, GroupOf | None] = {"lareqa": lareqa_group, "caption": caption_group, "question": question_group,
                                    "line": line_group, "none": None}
IMAGE_TEXT_RULES = {"mmmu": "question", "xmmmu": "question", "multi30k": "line"}  # by family; else `caption`


def benchmark_family(spec: str) -> str:
    """`xquad-r:test@de,en` -> `xquad-r`; `miracl:/data/miracl@de` -> `miracl`; a folder -> its spec."""
    return spec.split(":", 1)[0].split("@", 1)[0] if ":" in spec or "@" in spec else spec


def grouping_rule(spec: str, kind: str = "text", parallel_benchmarks: tuple[str, ...] | list[str] = ()) -> str:
    """The rule naming the parallel groups of a benchmark (a key of RULES); see the module docstring."""
    if kind == "image-text":
        return IMAGE_TEXT_RULES.get(benchmark_family(spec), "caption")
    if benchmark_family(spec) in LAREQA_FAMILIES:
        return "lareqa"
    base = spec.rpartition("@")[0] if "@" in spec else spec
    if spec in parallel_benchmarks or base in parallel_benchmarks:
        return "lareqa"
    return "none"


def describe_rule(rule: str) -> str:
    return {"lareqa": "a question with all its translations (rows sharing `qas.id`)",
            "caption": "an image with all its captions",
            "question": "an MMMU question with all its translations and images",
            "line": "a Multi30K line (an image) with all its translations",
            "none": "none known"}[rule]
