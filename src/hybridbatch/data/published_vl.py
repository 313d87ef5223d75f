"""Loaders for published image-text benchmarks, each read in its own published format into a `CaptionSet`.

Only where the pixels are is recorded (`ImageItem.source`: a path, or encoded bytes); images are opened
later by `hybridbatch.data.images.open_image`. The data sets are not downloaded here.

**Crossmodal-3600** (XM3600, google.github.io/crossmodal-3600): `captions.jsonl`, one JSON object per image::

    {"image/key": "000411001ff7dd4f", "image/locale": "ar",
     "ar": {"caption": ["...", "..."], "caption/tokenized": [...], "caption/tokenized/lowercase": [...]},
     "bn": {...}, ... one key per language, 36 in all}

and `images.tgz`, unpacked into one folder of `<image/key>.jpg`. Every caption is an independent description
(written in its language, not translated), so each caption is its own group. The published code `quz`
(Cusco Quechua, ISO 639-3) is kept as is where `normalize_lang` does not know it.

**Multi30K** task 1 (github.com/multi30k/dataset): `data/task1/raw/<split>.<lang>[.gz]`, one caption per line,
line-aligned across languages (line i is one English caption and its translations), and
`data/task1/image_splits/<split>.txt`, line i naming the image of line i (`1000092795.jpg`; the MSCOCO test
split writes `COCO_val2014_000000398076.jpg#657409`, the part after `#` being a COCO caption id). Captions of
one line share a group. `root` is the repository checkout or its `data/task1` folder.

Bad input raises `InputError` naming the file, line and field. Documented skips, counted in
`CaptionSet.skipped`: empty captions; images missing from `images_dir` (with their captions) unless
`strict=True`, which raises instead.

MMMU and the multilingual xMMMU (parquet) live in `published_mmmu` and are re-exported here.
"""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from hybridbatch.data.captions import Caption, CaptionSet, ImageItem
from hybridbatch.data.errors import InputError
from hybridbatch.data.jsonl import jsonl_objects
from hybridbatch.data.languages import normalize_lang
from hybridbatch.data.published_mmmu import load_mmmu, load_xmmmu

__all__ = ["XM3600_LANGUAGES", "MULTI30K_SPLITS", "load_xm3600", "load_multi30k", "load_mmmu", "load_xmmmu"]

XM3600_LANGUAGES = (
    "ar", "bn", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fil", "fr", "he", "hi", "hr", "hu", "id", "it",
    "ja", "ko", "mi", "nl", "no", "pl", "pt", "quz", "ro", "ru", "sv", "sw", "te", "th", "tr", "uk", "vi", "zh",
)
MULTI30K_SPLITS = ("train", "val", "test_2016_flickr", "test_2017_flickr", "test_2017_mscoco", "test_2018_flickr")


def xm3600_lang(code: object) -> str:
    """`normalize_lang`, except that XM3600's own codes it does not know (`quz`) are kept as published."""
    try:
        return normalize_lang(code)
    except ValueError:
        if isinstance(code, str) and code.strip().lower() in XM3600_LANGUAGES:
            return code.strip().lower()
        raise


def _wanted_languages(languages: Iterable[str] | None, normalize, path: Path) -> set[str] | None:
    if languages is None:
        return None
    if isinstance(languages, str):
        languages = [languages]
    try:
        return {normalize(code) for code in languages}
    except ValueError as exc:
        raise InputError(str(exc), path=path, field="languages") from exc


def _images_folder(images_dir: str | Path) -> Path:
    folder = Path(images_dir)
    if not folder.is_dir():
        raise InputError("images folder not found", path=folder)
    return folder


# ------------------------------------------------------------------------------------------------ XM3600
def load_xm3600(captions_jsonl: str | Path, images_dir: str | Path, languages: Iterable[str] | None = None,
                strict: bool = False) -> CaptionSet:
    """XM3600 from `captions.jsonl` and the folder of `<image/key>.jpg`; all languages unless `languages`.

    Caption ids are `<image/key>/<lang>/<n>` (n counts from 0 in the file's order); image ids are the keys.
    """
    path = Path(captions_jsonl)
    folder = _images_folder(images_dir)
    wanted = _wanted_languages(languages, xm3600_lang, path)
    skipped: Counter = Counter()
    images: list[ImageItem] = []
    captions: list[Caption] = []
    seen: set[str] = set()
    for line_no, row in jsonl_objects(path):
        key = row.get("image/key")
        if not isinstance(key, str) or not key.strip() or "/" in key:
            raise InputError("missing, or not a non-empty string without '/'", path=path, line=line_no,
                             field="image/key")
        if key in seen:
            raise InputError(f"duplicate image key {key!r}", path=path, line=line_no, field="image/key")
        seen.add(key)
        row_captions = list(_xm3600_captions(row, key, wanted, path, line_no, skipped))
        image_path = folder / f"{key}.jpg"
        if not image_path.is_file():
            if strict:
                raise InputError(f"image {image_path} not found", path=path, line=line_no, field="image/key")
            skipped["images missing from images_dir"] += 1
            skipped["captions of missing images"] += len(row_captions)
            continue
        images.append(ImageItem(key, str(image_path)))
        captions.extend(row_captions)
    return CaptionSet("xm3600", images, captions, dict(skipped))


def _xm3600_captions(row: dict, key: str, wanted: set[str] | None, path: Path, line_no: int,
                     skipped: Counter) -> Iterable[Caption]:
    for field, value in row.items():
        if field.startswith("image/"):  # image/key, image/locale, image/url ...
            continue
        try:
            lang = xm3600_lang(field)
        except ValueError as exc:
            raise InputError(str(exc), path=path, line=line_no, field=field) from exc
        if wanted is not None and lang not in wanted:
            continue
        texts = value.get("caption") if isinstance(value, dict) else None
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise InputError("must be a list of strings", path=path, line=line_no, field=f"{field}.caption")
        for n, text in enumerate(texts):
            text = " ".join(text.split())
            if not text:
                skipped["empty captions"] += 1
                continue
            yield Caption(f"{key}/{lang}/{n}", text, lang, (key,))


# ---------------------------------------------------------------------------------------------- Multi30K
def _task1_folder(root: Path) -> Path:
    for candidate in (root / "data" / "task1", root):
        if (candidate / "raw").is_dir() and (candidate / "image_splits").is_dir():
            return candidate
    raise InputError("not a Multi30K checkout: expected data/task1/raw and data/task1/image_splits", path=root)


def _read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as handle:
            return [line.rstrip("\r\n") for line in handle]
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise InputError(f"cannot read ({exc})", path=path) from exc


def _caption_file(raw: Path, split: str, lang: str) -> Path:
    for name in (f"{split}.{lang}", f"{split}.{lang}.gz"):
        if (raw / name).is_file():
            return raw / name
    present = sorted({p.name.split(".")[1] for p in raw.glob(f"{split}.*")})
    raise InputError(f"no {lang} captions for split {split!r} (languages present: {present or 'none'})",
                     path=raw / f"{split}.{lang}[.gz]")


def load_multi30k(root: str | Path, split: str = "test_2016_flickr",
                  languages: Iterable[str] = ("en", "de", "fr", "cs"), images_dir: str | Path | None = None,
                  strict: bool = False) -> CaptionSet:
    """One Multi30K task-1 split in `languages`; images looked up as `images_dir/<file name>`.

    `images_dir` is where the split's images were unpacked (e.g. `flickr30k-images/`); by default
    `<task1>/images`. Image ids are file names without `.jpg`; caption ids `<split>/<line>/<lang>`, group
    `<split>/<line>` (lines counted from 1). A caption file whose line count differs from the image split
    file raises `InputError` naming the caption file.
    """
    root = Path(root)
    task1 = _task1_folder(root)
    folder = _images_folder(images_dir if images_dir is not None else task1 / "images")
    langs = sorted(_wanted_languages(languages, normalize_lang, root) or ())
    if not langs:
        raise InputError("no languages requested", path=root, field="languages")
    split_path = task1 / "image_splits" / f"{split}.txt"
    if not split_path.is_file():
        raise InputError(f"unknown split {split!r} (published: {', '.join(MULTI30K_SPLITS)})", path=split_path)
    names = _read_lines(split_path)
    texts: dict[str, list[str]] = {}
    for lang in langs:
        path = _caption_file(task1 / "raw", split, lang)
        texts[lang] = _read_lines(path)
        if len(texts[lang]) != len(names):
            raise InputError(f"{len(texts[lang])} lines, but {split_path.name} names {len(names)} images "
                             f"(the files must be line-aligned)", path=path)
    skipped: Counter = Counter()
    images: dict[str, ImageItem] = {}
    captions: list[Caption] = []
    for line_no, entry in enumerate(names, start=1):
        file_name = entry.split("#", 1)[0].strip()
        if not file_name:
            raise InputError("empty image name", path=split_path, line=line_no)
        image_id = file_name[:-4] if file_name.lower().endswith(".jpg") else file_name
        image_path = folder / file_name
        if image_id not in images:
            if not image_path.is_file():
                if strict:
                    raise InputError(f"image {image_path} not found", path=split_path, line=line_no)
                skipped["lines whose image is missing"] += 1
                continue
            images[image_id] = ImageItem(image_id, str(image_path))
        group = f"{split}/{line_no}"
        for lang in langs:
            text = " ".join(texts[lang][line_no - 1].split())
            if not text:
                skipped["empty captions"] += 1
                continue
            captions.append(Caption(f"{group}/{lang}", text, lang, (image_id,), group))
    return CaptionSet(f"multi30k-{split}", list(images.values()), captions, dict(skipped))
