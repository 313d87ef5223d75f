"""A real English image-caption set built offline: Openclipart PNGs x the titles in their SVGs' metadata.

Sources (public domain, Debian packages fetched with `fetch_debian_package`, or trees given by the caller):

- `openclipart-svg`: `usr/share/openclipart/svg/<category>/.../<name>.svg`. Each SVG carries RDF metadata,
  near the top: `<metadata><rdf:RDF><cc:Work><dc:title>Soft Blue Couch</dc:title><dc:subject><rdf:Bag>
  <rdf:li>furniture</rdf:li>...`. The title of the first `cc:Work` is the caption; its `dc:subject` items
  are the keywords. The file is read with `iterparse` only up to that `cc:Work` (or the end of `metadata`).
- `openclipart-png`: `usr/share/openclipart/png/...`, one PNG per SVG at the same relative path (`.png`).

Many paths are symbolic links: one clipart filed under several categories, or SVGs whose PNGs are identical.
An image is one distinct PNG file (after links); its id is the first of its relative paths (sorted), with the
suffix dropped and "/" replaced by "." (`animals.birds.cigno_architetto_frances_01`). Its SVG is the first of
those paths that has one.

Titles are cleaned: HTML entities decoded (`Gelato all&#39;italiana`), UTF-8 or cp1252 read as Latin-1
repaired (`L&Atilde;&copy;zard` -> `Lézard`), "_" -> " ", whitespace collapsed, and a leading credit
`Clipart by <author> - ` dropped. Many titles are not captions but collection names ("gramastar" on 1,375
stars, "Part of the Flat Icon Collection (...)", "Lemon SVG theme", "card"): a title shared (ignoring case)
by more than `max_title_share` images is left out with its images (default 1: only unique titles, so every
caption has exactly one right image). Titles are as their authors wrote them: some are Italian or French
("Cigno", "danger général"), though all files say `dc:language` en. Keywords (`keywords=True`) are extra
captions after the title, without empty ones and the title itself; they mix real words with catalogue tags
("hash", "computer", "theme").

Counted skips (per image, in `CaptionSet.skipped` and `build.json`): PNGs without an SVG, SVGs that are not
well-formed XML, empty or placeholder titles ("", "Untitled", ...), shared titles, PNGs whose header claims
more than `max_source_pixels` (a PNG cannot be decoded at reduced size, and a 623-Mpixel RGBA source would
need 2.5 GB; at the 16-Mpixel default one image stays under ~350 MB while converting), PNGs whose longer side
is below `min_side` (3 x 2 renders), and PNGs that cannot be decoded. `build.json` also counts the SVG files.

On disk (`cache_root()/"data"/"openclipart"`): `images/<id>.png` (RGB through `open_image`, transparency on
white, longer side shrunk to at most `max_side`), `captions.jsonl` (all images, generic layout of
`hybridbatch.data.captions`, language `en`), `split.json` (train / test ids: `split_emoji`'s hash of the id,
stable across machines) and `build.json` (counts, skips, seconds; written last: the finished marker). The
folder is built beside its destination and renamed into place; a finished build is reused unless `force`.
"""

from __future__ import annotations

import html
import json
import os
import re
import statistics
import time
import warnings
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from hybridbatch.data.captions import Caption, CaptionSet, ImageItem, load_caption_jsonl, save_caption_jsonl
from hybridbatch.data.emoji_cldr import (
    MARKER,
    caption_set_build,
    fetch_debian_package,
    finish_build,
    split_emoji,
)
from hybridbatch.data.errors import InputError
from hybridbatch.data.images import open_image
from hybridbatch.io import write_json
from hybridbatch.paths import cache_root

SVG_PACKAGE = "openclipart-svg"
PNG_PACKAGE = "openclipart-png"
SVG_SUBDIR = "usr/share/openclipart/svg"
PNG_SUBDIR = "usr/share/openclipart/png"
MAX_SIDE = 384
MIN_SIDE = 32
MAX_SOURCE_PIXELS = 16_000_000
PLACEHOLDERS = frozenset({"", "untitled", "unnamed", "no title", "title", "drawing", "image", "new document",
                          "layer 1"})
SPLITS = ("train", "test", "all")
DC = "{http://purl.org/dc/elements/1.1/}"
RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
CREDIT = re.compile(r"^clipart by [^-]+? - ", re.IGNORECASE)

MALFORMED = "SVG not well-formed XML"
PLACEHOLDER = "SVG with an empty or placeholder title"
NO_SVG = "PNG without an SVG"
SHARED = "title shared by several images (a collection name)"
TOO_LARGE = "PNG above max_source_pixels"
TOO_SMALL = "PNG smaller than min_side"
UNREADABLE = "PNG that cannot be decoded"


class SvgMeta(NamedTuple):
    title: str
    keywords: tuple[str, ...]


# ---- metadata --------------------------------------------------------------------------------------------

def clean_text(text: str | None) -> str:
    """Entities decoded, mojibake repaired, "_" -> " ", whitespace collapsed (see the module docstring)."""
    text = html.unescape(text or "")
    if any("\x80" <= ch <= "\xff" for ch in text):
        for codec in ("utf-8", "cp1252"):
            try:
                text = text.encode("latin-1").decode(codec)
                break
            except UnicodeError:
                continue
    return " ".join(text.replace("_", " ").split())


def parse_svg_metadata(path: str | Path) -> SvgMeta:
    """Raw title and keywords of the first `cc:Work` of one SVG ("" and () without one); `ET.ParseError`
    or `OSError` for a file that cannot be read that far."""
    with open(path, "rb") as handle:
        for _, elem in ET.iterparse(handle, events=("end",)):
            if elem.tag.endswith("}Work"):
                title = elem.find(f"{DC}title")
                items = elem.findall(f"{DC}subject/{RDF}Bag/{RDF}li")
                return SvgMeta((title.text or "") if title is not None else "", tuple(li.text or "" for li in items))
            if elem.tag.endswith("}metadata"):
                break
    return SvgMeta("", ())


def read_openclipart_metadata(svg_root: str | Path) -> tuple[dict[str, SvgMeta | str], Counter]:
    """Relative path without suffix -> cleaned `SvgMeta`, or the reason it is unusable (`MALFORMED`,
    `PLACEHOLDER`), for every `*.svg` under `svg_root`; and counts of distinct SVG files by outcome."""
    svg_root = Path(svg_root)
    if not svg_root.is_dir():
        raise InputError("openclipart SVG folder not found", path=svg_root)
    out: dict[str, SvgMeta | str] = {}
    by_file: dict[str, SvgMeta | str] = {}
    for path in sorted(svg_root.rglob("*.svg")):
        real = os.path.realpath(path)
        if real not in by_file:
            try:
                raw = parse_svg_metadata(path)
            except (ET.ParseError, OSError, UnicodeError):
                by_file[real] = MALFORMED
            else:
                title = CREDIT.sub("", clean_text(raw.title))
                if title.casefold() in PLACEHOLDERS:
                    by_file[real] = PLACEHOLDER
                else:
                    words = (clean_text(w) for w in raw.keywords)
                    keep = dict.fromkeys(w for w in words if w and w.casefold() != title.casefold())
                    by_file[real] = SvgMeta(title, tuple(keep))
        out[path.relative_to(svg_root).with_suffix("").as_posix()] = by_file[real]
    counts = Counter("usable" if isinstance(v, SvgMeta) else v for v in by_file.values())
    counts["paths"], counts["files"] = len(out), len(by_file)
    return out, counts


def match_pngs(png_root: str | Path, metadata: dict[str, SvgMeta | str]
               ) -> tuple[list[tuple[str, Path, SvgMeta]], Counter]:
    """One (id, PNG path, metadata) per distinct PNG file under `png_root` with usable metadata, in path
    order; and the skips per image (`NO_SVG`, `MALFORMED`, `PLACEHOLDER`)."""
    png_root = Path(png_root)
    if not png_root.is_dir():
        raise InputError("openclipart PNG folder not found", path=png_root)
    groups: dict[str, list[str]] = {}
    for path in sorted(png_root.rglob("*.png")):
        groups.setdefault(os.path.realpath(path), []).append(path.relative_to(png_root).with_suffix("").as_posix())
    items, skipped = [], Counter()
    for stems in groups.values():
        found = [(stem, metadata[stem]) for stem in stems if stem in metadata]
        usable = [(stem, meta) for stem, meta in found if isinstance(meta, SvgMeta)]
        if usable:
            stem, meta = usable[0]
            items.append((stem.replace("/", "."), png_root / f"{stem}.png", meta))
        else:
            skipped[found[0][1] if found else NO_SVG] += 1
    return items, skipped


# ---- build, load -----------------------------------------------------------------------------------------

def default_dest() -> Path:
    return cache_root() / "data" / "openclipart"


def _package_roots(svg_root, png_root) -> tuple[Path, Path]:
    svg = Path(svg_root) if svg_root is not None else fetch_debian_package(SVG_PACKAGE) / SVG_SUBDIR
    png = Path(png_root) if png_root is not None else fetch_debian_package(PNG_PACKAGE) / PNG_SUBDIR
    return svg, png


def _thumbnail(path: Path, max_side: int, min_side: int, max_source_pixels: int) -> Image.Image | str:
    """The RGB image shrunk to `max_side`, or the reason it is skipped (checked from the header first)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError:  # a header above twice Pillow's own limit
        return TOO_LARGE
    except (OSError, SyntaxError, ValueError):
        return UNREADABLE
    if width * height > max_source_pixels:
        return TOO_LARGE
    if max(width, height) < min_side:
        return TOO_SMALL
    try:
        image = open_image(path, max_pixels=max_source_pixels)
    except InputError:
        return UNREADABLE
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


def build_openclipart(dest: str | Path | None = None, force: bool = False, max_side: int = MAX_SIDE,
                      max_source_pixels: int = MAX_SOURCE_PIXELS, keywords: bool = False,
                      svg_root: str | Path | None = None, png_root: str | Path | None = None,
                      test_fraction: float = 0.2, max_title_share: int = 1, min_side: int = MIN_SIDE) -> Path:
    """Build the Openclipart caption set into `dest` (see the module docstring) and return `dest`.

    A finished set is reused unless `force`. Without `svg_root` / `png_root` (the folders holding the
    category trees) the Debian packages are fetched into the cache.
    """
    dest = Path(dest) if dest is not None else default_dest()
    if (dest / MARKER).is_file() and not force:
        return dest
    started = time.time()
    svg_root, png_root = _package_roots(svg_root, png_root)
    metadata, svg_counts = read_openclipart_metadata(svg_root)
    matched, skipped = match_pngs(png_root, metadata)
    share = Counter(meta.title.casefold() for _, _, meta in matched)
    with caption_set_build(dest) as tmp:
        (tmp / "images").mkdir()
        images, captions = [], []
        for image_id, png, meta in matched:
            if share[meta.title.casefold()] > max_title_share:
                skipped[SHARED] += 1
                continue
            image = _thumbnail(png, max_side, min_side, max_source_pixels)
            if isinstance(image, str):
                skipped[image] += 1
                continue
            target = tmp / "images" / f"{image_id}.png"
            image.save(target)
            images.append(ImageItem(image_id, str(target)))
            texts = [meta.title, *meta.keywords] if keywords else [meta.title]
            captions += [Caption(f"{image_id}/en/{pos}", text, "en", (image_id,), f"{image_id}#{pos}")
                         for pos, text in enumerate(texts)]
        full = CaptionSet("openclipart", images, captions, dict(skipped))
        full.validate()
        save_caption_jsonl(tmp / "captions.jsonl", full)
        train, test = split_emoji([i.id for i in images], test_fraction)
        write_json(tmp / "split.json", {"test_fraction": test_fraction, "train": train, "test": test})
        titles = [c.text for c in captions if c.id.endswith("/0")]
        finish_build(tmp, started, {
            "name": "openclipart", "svg_root": str(svg_root), "png_root": str(png_root), "keywords": keywords,
            "max_side": max_side, "min_side": min_side, "max_source_pixels": max_source_pixels,
            "max_title_share": max_title_share, "test_fraction": test_fraction,
            "png_images": len(images) + sum(skipped.values()), "images": len(images), "train": len(train),
            "test": len(test), "captions": len(captions),
            "median_title_words": _median([len(t.split()) for t in titles]),
            "median_title_chars": _median([len(t) for t in titles]),
            "svg_files": dict(sorted(svg_counts.items())), "skipped": dict(sorted(skipped.items())),
        })
    return dest


def _median(values: list[int]) -> float | None:
    return statistics.median(values) if values else None


def load_openclipart(split: str, dest: str | Path | None = None) -> CaptionSet:
    """The `train`, `test` or `all` part of the Openclipart set (built first if missing), with its skips."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    dest = build_openclipart(dest)
    info = json.loads((dest / MARKER).read_text(encoding="utf-8"))
    full = load_caption_jsonl(dest / "captions.jsonl", name=f"openclipart:{split}")
    full.skipped = dict(info.get("skipped", {}))
    if split == "all":
        return full
    ids = json.loads((dest / "split.json").read_text(encoding="utf-8"))[split]
    return full.subset(f"openclipart:{split}", image_ids=set(ids))
