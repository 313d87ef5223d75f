"""The claims of an image-text compare, checked like the text claims (`claims.py`, `equivalence.py`).

The research question: how does hybrid batch training change zero-shot cross-lingual image-text retrieval, against
an English-only CLIP-style model (`en-en`: the same towers trained on English captions only) and pretrained
baselines (CLIP, BLIP-2: `grid_baselines.py`)? Per base model and benchmark, with `H` the designated hybrid:

- IT1 `H` beats `en-en` on non-English text -> image (strict; the monolingual setting over caption languages
  other than English).
- IT2 `H` beats every baseline on non-English text -> image (strict; one assertion per baseline). A baseline that
  could not be run makes the claim "not checked", with the reason in its evidence.
- IT3 cross-lingual pairs help caption X -> Y: `cross` beats `mixed-same` on caption X -> caption Y mAP (strict;
  the two differ only by the cross-lingual caption pairs of the loss, `training/image_text_batches.py`).
- IT4 `H` is best or tied with `mono`, `mixed-same` and `cross` in every setting (tie allowed).
- IT5 `H` reduces the rank distance of image -> pooled captions against `mono` and `mixed-same` (strict).
- IT6 on caption languages never trained on, `H` beats `en-en` on text -> image (strict; unseen = languages of
  the benchmark outside the training languages).

The views `monolingual:non-en` and `monolingual:unseen` are the monolingual setting restricted to those caption
languages: on the per-query tables (`per_query_views`, for the paired tests, which resample an image with all its
captions) and on metrics.json (`scores_with_views`, the macro average of the per-language mAP). All the tests
of these claims form one Holm family per base model and benchmark (`image_text_family`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hybridbatch.experiments.claims import (
    SETTINGS,
    ClaimVerdict,
    CompareSource,
    Key,
    Scores,
    TestFamily,
    _family,
    build_family,
)
from hybridbatch.experiments.equivalence import NOT_CHECKED, RANK_DISTANCE, Margins, worst
from hybridbatch.experiments.per_query import PerQuery, query_language

NON_EN, UNSEEN = "monolingual:non-en", "monolingual:unseen"
VIEWS = (NON_EN, UNSEEN)
EN_EN, MIXED = "en-en", "mixed-same"


def _view_languages(languages: Sequence[str], trained: Sequence[str]) -> dict[str, set[str]]:
    return {NON_EN: {lang for lang in languages if lang != "en"},
            UNSEEN: {lang for lang in languages if lang not in set(trained)}}


def per_query_views(per_query: PerQuery, trained: Sequence[str]) -> PerQuery:
    """`per_query` plus the monolingual rows of non-English and of unseen caption languages as two settings."""
    mono = per_query.get("monolingual") or {}
    langs = {query_language(key) for key in mono}
    out = dict(per_query)
    for view, keep in _view_languages(sorted(langs), trained).items():
        rows = {key: row for key, row in mono.items() if query_language(key) in keep}
        if rows:
            out[view] = rows
    return out


def scores_with_views(metrics: Mapping, row: Mapping[str, float], trained: Sequence[str]) -> dict[str, float]:
    """A score row (`claims.scores_from_metrics`) plus the two views: the mean per-language mAP over their
    caption languages (absent when the benchmark has none of them)."""
    per_language = ((metrics.get("monolingual") or {}).get("per_language")) or {}
    out = dict(row)
    for view, keep in _view_languages(sorted(per_language), trained).items():
        values = [float(per_language[lang]["map"]) for lang in sorted(keep)]
        if values:
            out[view] = sum(values) / len(values)
    return out


def claim_keys(systems: Sequence[str], hybrid: str, baselines: Sequence[str]) -> list[Key]:
    """Every test the claims read (where both systems are present), in a fixed order."""
    pairs = [(hybrid, EN_EN, NON_EN), (hybrid, EN_EN, UNSEEN), ("cross", MIXED, "crosslingual")]
    pairs += [(hybrid, b, NON_EN) for b in baselines]
    pairs += [(hybrid, ref, s) for ref in ("mono", MIXED, "cross") for s in SETTINGS]
    pairs += [(hybrid, ref, RANK_DISTANCE) for ref in ("mono", MIXED)]
    return [(a, b, k) for a, b, k in dict.fromkeys(pairs) if a in systems and b in systems and a != b]


def image_text_family(systems: Sequence[str], compare: CompareSource, hybrid: str,
                      baselines: Sequence[str] = ()) -> TestFamily:
    """The one Holm family of the image-text claims on a benchmark."""
    if isinstance(compare, TestFamily):
        return compare
    return build_family(claim_keys(systems, hybrid, baselines), compare)


def check_image_text_claims(scores: Scores, compare: CompareSource = None, *, hybrid: str,
                            baselines: Sequence[str] = (), not_run: Mapping[str, str] | None = None,
                            level: float = 0.05, margins: Margins | None = None) -> list[ClaimVerdict]:
    """IT1-IT6 (module docstring). `baselines`: the baseline systems configured; `not_run`: those of them that
    could not be evaluated, with why (their claim is "not checked", never left out)."""
    not_run = dict(not_run or {})
    family = image_text_family(list(scores), compare, hybrid, [b for b in baselines if b not in not_run])
    margins = margins or Margins()
    specs = [
        ("IT1", f"{hybrid} beats the English-only model (en-en) on non-English text -> image",
         [(hybrid, EN_EN, NON_EN)], True),
        ("IT2", f"{hybrid} beats the pretrained baselines on non-English text -> image",
         [(hybrid, b, NON_EN) for b in baselines if b not in not_run], True),
        ("IT3", "cross-lingual caption pairs help: cross beats mixed-same on caption X -> caption Y",
         [("cross", MIXED, "crosslingual")], True),
        ("IT4", f"{hybrid} is best or tied with mono, mixed-same and cross in every setting",
         [(hybrid, ref, s) for s in SETTINGS for ref in ("mono", MIXED, "cross")], False),
        ("IT5", f"{hybrid} reduces the rank distance of image -> pooled captions against mono and mixed-same",
         [(hybrid, ref, RANK_DISTANCE) for ref in ("mono", MIXED)], True),
        ("IT6", f"{hybrid} beats en-en on text -> image in caption languages never trained on",
         [(hybrid, EN_EN, UNSEEN)], True),
    ]
    out = []
    for cid, text, pairs, strict in specs:
        verdict = _family(cid, text, pairs, strict, scores, family, level, margins) if pairs else None
        if cid == "IT2" and not_run:
            reasons = "; ".join(f"{b}: {why}" for b, why in not_run.items())
            if verdict is None:
                verdict = ClaimVerdict(cid, text, NOT_CHECKED, reasons, {"not_run": not_run})
            else:
                verdict.verdict = worst([verdict.verdict, NOT_CHECKED])
                verdict.evidence += f"; {reasons}"
                verdict.numbers["not_run"] = not_run
        if verdict is not None:
            out.append(verdict)
    return out
