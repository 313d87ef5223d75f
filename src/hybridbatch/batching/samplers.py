"""Batch samplers: which groups go in a batch and in which query / passage languages.

Strategies (arXiv 2408.10536; `mixed-same` and `en-en` are the LAReQA baselines):

- `mono`: the whole batch in one language X (query and passage), X drawn per batch.
- `cross`: per example, a query language and a different passage language, uniform over ordered pairs.
- `hybrid`: per batch, `mono` with probability `alpha`, else `cross`.
- `mixed-same`: per example its own language X, query and passage both in X (languages mix in a batch).
- `en-en`: English only.

Every batch is a pure function of (seed, epoch, step): the group order of an epoch is a permutation drawn
from `default_rng([seed, epoch])` (the same for every strategy, so strategies see the same groups in the
same batches), batch `step` takes the next `batch_size` groups of it (the last incomplete batch is dropped),
and the type, languages and hard negatives are drawn from `default_rng([seed, epoch, step, _BATCH_STREAM])`.
So each group is used once per epoch and at most once per batch, the same seed gives the same batches, and
resuming at (epoch, step) continues the same sequence on every process.

`language_weighting="size"` draws X (for `mono`, the mono batches of `hybrid`, and `mixed-same`) in
proportion to each language's data size: the number of groups having that language *before*
`restrict_languages` (`hybridbatch.data.parallel.language_sizes`), passed as `language_sizes`. Without it the
sizes are counted on the groups given, which for fully parallel data is uniform. `cross` is always uniform.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from enum import Enum
from typing import ClassVar

import numpy as np

from hybridbatch.batching.plan import PlannedBatch
from hybridbatch.data.languages import normalize_lang
from hybridbatch.data.parallel import ParallelGroup, language_sizes

_BATCH_STREAM = 0x68796272  # "hybr": separates the per-batch stream from the per-epoch permutation
WEIGHTINGS = ("uniform", "size")


class SamplerName(str, Enum):
    MONO = "mono"
    CROSS = "cross"
    HYBRID = "hybrid"
    MIXED_SAME = "mixed-same"
    EN_EN = "en-en"


class BatchSampler:
    """Shared machinery: validation, per-epoch group order, hard negatives, iteration.

    Subclasses only say how a batch's type and languages are drawn (`_draw_languages`).
    """

    name: ClassVar[str]
    min_languages: ClassVar[int] = 1

    def __init__(self, groups: Sequence[ParallelGroup], languages: Sequence[str], batch_size: int, seed: int,
                 *, hard_negatives: int = 0, language_weighting: str = "uniform",
                 language_sizes: Mapping[str, int] | None = None):
        self.groups = tuple(groups)
        self.languages = _check_languages(languages, self.min_languages, self.name)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if batch_size > len(self.groups):
            raise ValueError(f"batch_size {batch_size} is larger than the number of groups ({len(self.groups)})")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not isinstance(hard_negatives, int) or hard_negatives < 0:
            raise ValueError(f"hard_negatives must be a non-negative integer, got {hard_negatives!r}")
        _check_parallel(self.groups, self.languages)
        self.batch_size = batch_size
        self.seed = int(seed)
        self.hard_negatives = hard_negatives
        self.language_weighting = language_weighting
        self.language_probs = _language_probs(self.groups, self.languages, language_weighting, language_sizes)
        self.steps_per_epoch = len(self.groups) // batch_size
        self._order: tuple[int, np.ndarray] | None = None

    # ----------------------------------------------------------------------------------------- plan
    def epoch_order(self, epoch: int) -> np.ndarray:
        """The permutation of group indices used in `epoch` (cached for the current epoch)."""
        cached = self._order
        if cached is None or cached[0] != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.groups))
            order.flags.writeable = False  # shared by every batch of the epoch
            cached = self._order = (epoch, order)
        return cached[1]

    def batch_at(self, epoch: int, step: int) -> PlannedBatch:
        """The global batch at (epoch, step within the epoch); a pure function of (seed, epoch, step)."""
        if not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        if not isinstance(step, int) or not 0 <= step < self.steps_per_epoch:
            raise ValueError(f"step {step!r} is outside the epoch [0, {self.steps_per_epoch})")
        start = step * self.batch_size
        picked = tuple(int(i) for i in self.epoch_order(epoch)[start:start + self.batch_size])
        rng = np.random.default_rng([self.seed, epoch, step, _BATCH_STREAM])
        btype, query_langs, doc_langs = self._draw_languages(rng, self.batch_size)
        negatives = self._draw_negatives(rng, picked, doc_langs)
        return PlannedBatch(step, epoch, btype, picked, tuple(query_langs), tuple(doc_langs), negatives,
                            self.global_step(epoch, step))

    def iter_batches(self, start_epoch: int = 0, start_step: int = 0,
                     total_steps: int | None = None) -> Iterator[PlannedBatch]:
        """Batches from (start_epoch, start_step) on, across epochs.

        `total_steps` is the global step to stop before (training length, counted from the very first
        batch, so a resumed run stops where an uninterrupted one would); None walks on forever.
        """
        epoch, step = start_epoch, start_step
        if not 0 <= step < self.steps_per_epoch:
            raise ValueError(f"start_step {step!r} is outside the epoch [0, {self.steps_per_epoch})")
        while total_steps is None or self.global_step(epoch, step) < total_steps:
            yield self.batch_at(epoch, step)
            step += 1
            if step == self.steps_per_epoch:
                epoch, step = epoch + 1, 0

    def global_step(self, epoch: int, step: int) -> int:
        return epoch * self.steps_per_epoch + step

    def position(self, global_step: int) -> tuple[int, int]:
        """(epoch, step) of a global step: where to resume."""
        return divmod(global_step, self.steps_per_epoch)

    # ----------------------------------------------------------------------------------------- draws
    def _draw_languages(self, rng: np.random.Generator, n: int) -> tuple[str, list[str], list[str]]:
        """(batch type, query languages, passage languages) for `n` examples."""
        raise NotImplementedError

    def _draw_mono(self, rng: np.random.Generator, n: int) -> tuple[str, list[str], list[str]]:
        lang = self.languages[rng.choice(len(self.languages), p=self.language_probs)]
        return "mono", [lang] * n, [lang] * n

    def _draw_cross(self, rng: np.random.Generator, n: int) -> tuple[str, list[str], list[str]]:
        n_langs = len(self.languages)
        query = rng.integers(n_langs, size=n)
        doc = rng.integers(n_langs - 1, size=n)
        doc = doc + (doc >= query)  # skip the query's language: uniform over ordered pairs q != d
        return ("cross", [self.languages[i] for i in query], [self.languages[i] for i in doc])

    def _draw_negatives(self, rng: np.random.Generator, picked: Sequence[int],
                        doc_langs: Sequence[str]) -> tuple[tuple[int, ...], ...]:
        if not self.hard_negatives:
            return tuple(() for _ in picked)
        out = []
        for gi, lang in zip(picked, doc_langs, strict=True):
            available = len(self.groups[gi].negatives.get(lang, ()))
            k = min(self.hard_negatives, available)
            chosen = rng.choice(available, size=k, replace=False) if k else ()
            out.append(tuple(sorted(int(i) for i in chosen)))
        return tuple(out)


class MonoSampler(BatchSampler):
    name = SamplerName.MONO.value

    def _draw_languages(self, rng, n):
        return self._draw_mono(rng, n)


class CrossSampler(BatchSampler):
    name = SamplerName.CROSS.value
    min_languages = 2

    def _draw_languages(self, rng, n):
        return self._draw_cross(rng, n)


class HybridSampler(BatchSampler):
    """Mono with probability `alpha` per batch, else cross."""

    name = SamplerName.HYBRID.value
    min_languages = 2

    def __init__(self, *args, alpha: float = 0.5, **kwargs):
        self.alpha = _check_alpha(alpha)
        super().__init__(*args, **kwargs)

    def _draw_languages(self, rng, n):
        mono = rng.random() < self.alpha  # alpha=0 never, alpha=1 always
        return self._draw_mono(rng, n) if mono else self._draw_cross(rng, n)


class MixedSameSampler(BatchSampler):
    """LAReQA's X-X: each example its own language, query and passage in it."""

    name = SamplerName.MIXED_SAME.value

    def _draw_languages(self, rng, n):
        langs = [self.languages[i] for i in rng.choice(len(self.languages), size=n, p=self.language_probs)]
        return "mixed-same", langs, list(langs)


class EnEnSampler(BatchSampler):
    """English queries and passages only (the other configured languages are not drawn)."""

    name = SamplerName.EN_EN.value

    def __init__(self, groups, languages, *args, **kwargs):
        languages = list(languages)
        if "en" not in [_normalize(lang) for lang in languages]:
            raise ValueError(f"sampler 'en-en' needs 'en' among the languages, got {list(languages)}")
        super().__init__(groups, languages, *args, **kwargs)

    def _draw_languages(self, rng, n):
        return "en-en", ["en"] * n, ["en"] * n


SAMPLERS: dict[str, type[BatchSampler]] = {
    cls.name: cls for cls in (MonoSampler, CrossSampler, HybridSampler, MixedSameSampler, EnEnSampler)
}


def make_sampler(name: str | SamplerName, groups: Sequence[ParallelGroup], languages: Sequence[str],
                 batch_size: int, seed: int, alpha: float = 0.5, hard_negatives: int = 0,
                 language_weighting: str = "uniform",
                 language_sizes: Mapping[str, int] | None = None) -> BatchSampler:
    """The sampler called `name` (see `SamplerName`); `alpha` is checked always, used by `hybrid` only."""
    key = name.value if isinstance(name, SamplerName) else name
    if key not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; expected one of {sorted(SAMPLERS)}")
    _check_alpha(alpha)
    kwargs = {"hard_negatives": hard_negatives, "language_weighting": language_weighting,
              "language_sizes": language_sizes}
    if key == SamplerName.HYBRID.value:
        kwargs["alpha"] = alpha
    return SAMPLERS[key](groups, languages, batch_size, seed, **kwargs)


# --------------------------------------------------------------------------------------------- checks
def _normalize(lang: str) -> str:
    try:
        return normalize_lang(lang)
    except ValueError as exc:
        raise ValueError(f"bad language in sampler config: {exc}") from exc


def _check_languages(languages: Sequence[str], minimum: int, name: str) -> tuple[str, ...]:
    if isinstance(languages, str):
        raise ValueError(f"languages must be a list of codes, got the string {languages!r}")
    langs = tuple(_normalize(lang) for lang in languages)
    if len(set(langs)) != len(langs):
        raise ValueError(f"languages listed twice: {list(languages)}")
    if len(langs) < minimum:
        raise ValueError(f"sampler {name!r} needs at least {minimum} languages, got {list(langs)}")
    return langs


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or math.isnan(alpha) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    return float(alpha)


def _check_parallel(groups: Sequence[ParallelGroup], languages: Sequence[str]) -> None:
    """Every group must have a query and a positive in every language (any pair may be drawn)."""
    missing: dict[str, list[str]] = {lang: [] for lang in languages}
    for group in groups:
        for lang in languages:
            if lang not in group.queries or lang not in group.positives:
                missing[lang].append(group.id)
    for lang, ids in missing.items():
        if groups and len(ids) == len(groups):
            raise ValueError(f"language {lang!r} has no data: no group has a query and a positive in it")
    for lang, ids in missing.items():
        if ids:
            raise ValueError(f"{len(ids)} groups lack a query or positive in {lang!r} (e.g. {ids[:3]}); "
                             "filter them with hybridbatch.data.parallel.restrict_languages first")


def _language_probs(groups: Sequence[ParallelGroup], languages: Sequence[str], weighting: str,
                    sizes: Mapping[str, int] | None) -> np.ndarray:
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown language_weighting {weighting!r}; expected one of {list(WEIGHTINGS)}")
    if weighting == "uniform":
        return np.full(len(languages), 1.0 / len(languages))
    if sizes is None:
        sizes = language_sizes(groups)
    sizes = {_normalize(lang): n for lang, n in sizes.items()}
    counts = np.array([sizes.get(lang, 0) for lang in languages], dtype=float)
    empty = [lang for lang, n in zip(languages, counts, strict=True) if n <= 0]
    if empty:
        raise ValueError(f"language_sizes gives no data for {empty}")
    return counts / counts.sum()
