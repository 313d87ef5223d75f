"""Figures for the sampler comparison, as PNG bytes or files.

Each function takes plain numbers (blocks of metrics.json, or small dicts built from them) and draws one
figure with matplotlib's object API and the Agg canvas: no pyplot, so nothing global changes and no
display is needed. With `out=None` the PNG bytes are returned, else the file is written and its path
returned.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

SETTINGS = ("monolingual", "crosslingual", "multilingual")
PerPair = Mapping[str, Mapping[str, float]]  # "x-y" -> {measure: value}, metrics["crosslingual"]["per_pair"]


def _label(measure: str) -> str:
    return "mAP" if measure == "map" else measure


def _new(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def _finish(fig: Figure, out: str | Path | None) -> bytes | Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    if out is None:
        return buffer.getvalue()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def _split_pair(key: str) -> tuple[str, str]:
    """`de-en` -> (de, en); `pt-BR-en` -> (pt-BR, en): the target starts at the first lowercase tag."""
    match = re.match(r"^(.+?)-([a-z]{2,3}(?:-.+)?)$", key)
    if not match:
        raise ValueError(f"cannot split language pair {key!r}")
    return match.group(1), match.group(2)


def pair_matrix(per_pair: PerPair, measure: str = "map", diagonal: Mapping[str, float] | None = None,
                langs: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """(languages, matrix[query language, target language]); missing pairs are NaN.

    `diagonal` (e.g. the monolingual per-language mAP) fills X-X, which the cross-lingual setting lacks.
    """
    pairs = {_split_pair(key): row[measure] for key, row in per_pair.items()}
    names = list(langs) if langs else sorted({x for pair in pairs for x in pair} | set(diagonal or {}))
    index = {lang: i for i, lang in enumerate(names)}
    matrix = np.full((len(names), len(names)), np.nan)
    for (x, y), value in pairs.items():
        if x in index and y in index:
            matrix[index[x], index[y]] = value
    for lang, value in (diagonal or {}).items():
        if lang in index:
            matrix[index[lang], index[lang]] = value
    return names, matrix


def _heatmap(ax, fig: Figure, names: list[str], matrix: np.ndarray, cmap: str, norm=None,
             vmin=None, vmax=None, label: str = "", fmt: str = "{:.2f}") -> None:
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, norm=norm, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("target (candidate) language")
    ax.set_ylabel("query language")
    if len(names) <= 16:  # values stay legible up to XQuAD-R's 11 languages and a few more
        for (i, j), value in np.ndenumerate(matrix):
            if np.isfinite(value):
                shown = round(value, 2) + 0.0  # + 0.0 turns -0.0 into 0.0: no "-0.00" cells
                ax.text(j, i, fmt.format(shown), ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label=label, shrink=0.85)


def cross_lingual_heatmap(per_pair: PerPair, system: str = "", measure: str = "map",
                          diagonal: Mapping[str, float] | None = None,
                          out: str | Path | None = None) -> bytes | Path:
    """Cross-lingual `measure` of one system for every (query language, target language) pair."""
    names, matrix = pair_matrix(per_pair, measure, diagonal)
    fig, (ax,) = _new(max(6.5, 1.0 + 0.55 * len(names)), max(4.0, 0.5 + 0.5 * len(names)))  # room for the title
    _heatmap(ax, fig, names, matrix, "viridis", vmin=np.nanmin(matrix), vmax=np.nanmax(matrix),
             label=_label(measure))
    ax.set_title(f"Cross-lingual {_label(measure)}" + (f": {system}" if system else "")
                 + (" (diagonal: monolingual)" if diagonal else ""))
    return _finish(fig, out)


def cross_lingual_difference_heatmap(per_pair_a: PerPair, per_pair_b: PerPair, name_a: str, name_b: str,
                                     measure: str = "map", out: str | Path | None = None) -> bytes | Path:
    """`name_a` - `name_b` per language pair, diverging colours centred at 0 (red: a is better)."""
    names_a, a = pair_matrix(per_pair_a, measure)
    names, b = pair_matrix(per_pair_b, measure, langs=names_a)
    diff = a - b
    bound = float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 0.0
    bound = bound or 1e-3  # an all-zero difference still needs a non-degenerate colour scale
    fig, (ax,) = _new(max(6.5, 1.0 + 0.55 * len(names)), max(4.0, 0.5 + 0.5 * len(names)))  # room for the title
    _heatmap(ax, fig, names, diff, "RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound),
             label=f"{_label(measure)}: {name_a} - {name_b}", fmt="{:+.2f}")
    ax.set_title(f"Cross-lingual {_label(measure)}: {name_a} - {name_b}")
    return _finish(fig, out)


def rank_distance_bars(per_language: Mapping[str, Mapping[str, float]], out: str | Path | None = None,
                       title: str = "Rank distance per query language (lower is better)") -> bytes | Path:
    """Grouped bars: for each query language, one bar per system.

    per_language: system -> {language: rank distance}, i.e. each system's
    `{lang: row["rank_distance"] for lang, row in metrics["multilingual"]["per_language"].items()}`.
    """
    systems = list(per_language)
    langs = sorted({lang for row in per_language.values() for lang in row})
    width = 0.8 / max(1, len(systems))
    fig, (ax,) = _new(min(14.0, max(6.0, 0.35 * len(langs) * (1 + len(systems)))), 4.0)
    x = np.arange(len(langs))
    for i, system in enumerate(systems):
        values = [per_language[system].get(lang, np.nan) for lang in langs]
        ax.bar(x + (i - (len(systems) - 1) / 2) * width, values, width, label=system)
    ax.set_xticks(x, langs)
    ax.set_xlabel("query language")
    ax.set_ylabel("rank distance")
    ax.set_title(title)
    ax.legend(title="system", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return _finish(fig, out)


def alpha_curve(points: Mapping[float, Sequence[Mapping[str, float]]], measure: str = "map",
                references: Mapping[str, Mapping[str, float]] | None = None,
                out: str | Path | None = None,
                title: str = "Hybrid batch: mixing ratio alpha",
                intervals: Mapping[float, Mapping[str, tuple[float, float]]] | None = None) -> bytes | Path:
    """mAP per setting (left) and rank distance (right) against alpha, mean +- std over seeds.

    points: alpha -> one score row per seed, `{setting: mAP, "rank_distance": ...}` (alpha = the share of
    monolingual batches: 1 is `mono`, 0 is `cross`). references: name -> row, drawn as dotted lines
    (e.g. the zero-shot model). Error bars appear where an alpha has more than one seed. intervals:
    alpha -> {setting or "rank_distance": (low, high)}, e.g. bootstrap intervals over parallel groups
    (`report.alpha_intervals`), drawn as shaded bands.
    """
    alphas = sorted(points)
    fig, (left, right) = _new(10.0, 4.0, ncols=2)

    def curve(ax, key: str, label: str, colour) -> None:
        rows = [[r[key] for r in points[a] if key in r] for a in alphas]
        keep = [i for i, r in enumerate(rows) if r]
        if not keep:
            return
        mean = [float(np.mean(rows[i])) for i in keep]
        err = [float(np.std(rows[i], ddof=1)) if len(rows[i]) > 1 else 0.0 for i in keep]
        ax.errorbar([alphas[i] for i in keep], mean, yerr=err if any(err) else None, marker="o",
                    capsize=3, label=label, color=colour)
        band = [a for a in alphas if key in (intervals or {}).get(a, {})]
        if len(band) > 1:
            ax.fill_between(band, [intervals[a][key][0] for a in band], [intervals[a][key][1] for a in band],
                            color=colour, alpha=0.15, linewidth=0)

    colours = dict(zip(SETTINGS, ("tab:blue", "tab:orange", "tab:green"), strict=True))
    for setting in SETTINGS:
        curve(left, setting, setting, colours[setting])
    curve(right, "rank_distance", "rank distance", "tab:red")
    for name, row in (references or {}).items():
        for setting in SETTINGS:
            if setting in row:
                left.axhline(row[setting], color=colours[setting], linestyle=":", linewidth=1)
        if "rank_distance" in row:
            right.axhline(row["rank_distance"], color="tab:red", linestyle=":", linewidth=1, label=name)
        left.plot([], [], color="grey", linestyle=":", label=name)
    left.set_xlabel("alpha (share of monolingual batches)")
    left.set_ylabel(_label(measure))
    left.set_title(f"{_label(measure)} per setting")
    left.legend(fontsize=8)
    right.set_xlabel("alpha (share of monolingual batches)")
    right.set_ylabel("rank distance (lower is better)")
    right.set_title("multilingual rank distance")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    seeds = max(len(rows) for rows in points.values()) if points else 0
    fig.suptitle(title + (f" (mean ± sd over up to {seeds} seeds)" if seeds > 1 else ""))
    return _finish(fig, out)
