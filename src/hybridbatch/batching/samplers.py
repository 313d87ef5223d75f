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

Partially parallel data (`group_languages="available"`, e.g. MLQA-R, whose questions exist in 2 to 4 of its 7
languages): groups are kept when they have at least two of the configured languages, and every draw stays
within the languages its group has. A `cross` (or `mixed-same`) batch takes the epoch's next groups as above and
draws, per example, an ordered pair of different languages (or one language) uniformly among its group's
languages; a `mono` batch in X (X drawn as above) takes `batch_size` groups having X, drawn without replacement
from the per-batch stream, so across batches a group may come back before the epoch ends (the epoch is
nominal: `len(groups) // batch_size` steps). Still a pure function of (seed, epoch, step). The default
`group_languages="all"` needs every group in every configured language and draws as described above.

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
GROUP_LANGUAGES = ("all", "available")


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
                 language_sizes: Mapping[str, int] | None = None, group_languages: str = "all"):
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
        if group_languages not in GROUP_LANGUAGES:
            raise ValueError(f"unknown group_languages {group_languages!r}; expected one of {list(GROUP_LANGUAGES)}")
        self.group_languages = group_languages
        if group_languages == "all":
            _check_parallel(self.groups, self.languages)
        else:
            self._available, self._having = _check_available(self.groups, self.languages, batch_size,
                                                             self._mono_languages())
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
        if self.group_languages == "available":
            btype, picked, query_langs, doc_langs = self._draw_available(rng, picked)
        else:
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

    # ------------------------------------------------------------------- partially parallel groups
    def _kind(self, rng: np.random.Generator) -> str:
        """The batch type under `group_languages="available"`: mono, cross, mixed-same or en-en."""
        raise NotImplementedError

    def _mono_languages(self) -> tuple[str, ...]:
        """Languages a mono batch may be drawn in: each needs `batch_size` groups having it."""
        return self.languages

    def _draw_available(self, rng: np.random.Generator,
                        picked: tuple[int, ...]) -> tuple[str, tuple[int, ...], list[str], list[str]]:
        """(type, groups, query languages, passage languages), each draw within its group's languages."""
        kind, n = self._kind(rng), self.batch_size
        if kind in ("mono", "en-en"):
            lang = "en" if kind == "en-en" else self.languages[rng.choice(len(self.languages), p=self.language_probs)]
            picked = tuple(int(i) for i in rng.choice(self._having[lang], size=n, replace=False))
            return kind, picked, [lang] * n, [lang] * n
        have = [self._available[i] for i in picked]
        first = rng.integers([len(langs) for langs in have])
        if kind == "mixed-same":
            langs = [h[i] for h, i in zip(have, first, strict=True)]
            return kind, picked, langs, list(langs)
        second = rng.integers([len(langs) - 1 for langs in have])
        second = second + (second >= first)  # a different language of the same group
        return (kind, picked, [h[i] for h, i in zip(have, first, strict=True)],
                [h[i] for h, i in zip(have, second, strict=True)])

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

    def _kind(self, rng):
        return "mono"


class CrossSampler(BatchSampler):
    name = SamplerName.CROSS.value
    min_languages = 2

    def _draw_languages(self, rng, n):
        return self._draw_cross(rng, n)

    def _kind(self, rng):
        return "cross"

    def _mono_languages(self):
        return ()


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

    def _kind(self, rng):
        return "mono" if rng.random() < self.alpha else "cross"

    def _mono_languages(self):
        return self.languages if self.alpha > 0 else ()


class MixedSameSampler(BatchSampler):
    """LAReQA's X-X: each example its own language, query and passage in it."""

    name = SamplerName.MIXED_SAME.value

    def _draw_languages(self, rng, n):
        langs = [self.languages[i] for i in rng.choice(len(self.languages), size=n, p=self.language_probs)]
        return "mixed-same", langs, list(langs)

    def _kind(self, rng):
        return "mixed-same"

    def _mono_languages(self):
        return ()


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

    def _kind(self, rng):
        return "en-en"

    def _mono_languages(self):
        return ("en",)


SAMPLERS: dict[str, type[BatchSampler]] = {
    cls.name: cls for cls in (MonoSampler, CrossSampler, HybridSampler, MixedSameSampler, EnEnSampler)
}


def make_sampler(name: str | SamplerName, groups: Sequence[ParallelGroup], languages: Sequence[str],
                 batch_size: int, seed: int, alpha: float = 0.5, hard_negatives: int = 0,
                 language_weighting: str = "uniform",
                 language_sizes: Mapping[str, int] | None = None, group_languages: str = "all") -> BatchSampler:
    """The sampler called `name` (see `SamplerName`); `alpha` is checked always, used by `hybrid` only."""
    key = name.value if isinstance(name, SamplerName) else name
    if key not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; expected one of {sorted(SAMPLERS)}")
    _check_alpha(alpha)
    kwargs = {"hard_negatives": hard_negatives, "language_weighting": language_weighting,
              "language_sizes": language_sizes, "group_languages": group_languages}
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


def _check_available(groups: Sequence[ParallelGroup], languages: Sequence[str], batch_size: int,
                     mono: Sequence[str]) -> tuple[tuple[tuple[str, ...], ...], dict[str, np.ndarray]]:
    """Per group its configured languages (in config order), per language the groups having it. Every group
    needs two of them (one where only one is configured); a language a mono batch may be drawn in needs
    `batch_size` groups."""
    need = min(2, len(languages))
    available = tuple(tuple(lang for lang in languages if lang in group.languages) for group in groups)
    short = [g.id for g, langs in zip(groups, available, strict=True) if len(langs) < need]
    if short:
        raise ValueError(f"{len(short)} groups have fewer than {need} of the languages {list(languages)} (e.g. "
                         f"{short[:3]}); filter them with hybridbatch.data.parallel.restrict_languages first")
    having = {lang: np.array([i for i, langs in enumerate(available) if lang in langs], dtype=np.int64)
              for lang in languages}
    for lang in languages:
        if not len(having[lang]):
            raise ValueError(f"language {lang!r} has no data: no group has a query and a positive in it")
    for lang in mono:
        if len(having[lang]) < batch_size:
            raise ValueError(f"a mono batch in {lang!r} needs {batch_size} groups having it; there are "
                             f"{len(having[lang])}")
    return available, having


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
