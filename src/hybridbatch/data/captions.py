"""The in-memory form of an image-caption set: images, captions in several languages, and which caption
describes which image.

Images and captions are separate lists because the relation is many-to-many in the published sets: an
XM3600 image has several captions per language, an MMMU question refers to up to seven images. Each
caption carries its language and a `group`: captions that are translations of each other share a group
(CLDR names of one emoji, one MMMU question in several languages); independent captions of one image get
their own groups. Evaluation needs only `image_ids` (relevance) and `lang`; training draws one caption per
(image, language) through `caption_groups`.

The generic on-disk layout (`load_caption_jsonl` / `save_caption_jsonl`) is one JSONL file, one image per line:

    {"id": "img1", "image": "images/img1.png", "captions": {"en": ["a cat"], "de": ["eine Katze"]}}

- `id`: a non-empty string without whitespace, unique in the file.
- `image`: the image file, relative to the JSONL file's folder (or absolute); with `check_images=True` it
  must exist.
- `captions`: language tag -> list of non-empty caption strings (an empty object or list is allowed: an image
  with no captions is a distractor). Tags are normalized (`pt_BR` -> `pt-BR`); an unknown or malformed tag,
  or two tags that normalize to the same language, is an error on field `captions.<tag>`.
- Captions of one image in different languages at the same list position are translations of each other:
  they share the group `f"{id}#{pos}"`. A caption's id is `f"{id}/{lang}/{pos}"`.
- Any other key, malformed JSON, a missing or mistyped field, or a duplicate id raises `InputError` naming
  the file, line and field. Blank lines are skipped.

Saving keeps, per image, its captions per language in list order; ids and groups are derived again on load,
so a set is written unchanged only if it follows these conventions.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridbatch.data.errors import InputError
from hybridbatch.data.jsonl import has_lone_surrogate, jsonl_objects
from hybridbatch.data.languages import normalize_lang
from hybridbatch.io import atomic_write

LAYOUT_KEYS = ("id", "image", "captions")


@dataclass(frozen=True)
class ImageItem:
    """An image: a unique id and where its pixels are (a file path, or the encoded bytes themselves)."""

    id: str
    source: str | bytes


@dataclass(frozen=True)
class Caption:
    """A caption (or a question) in one language, describing one or more images."""

    id: str
    text: str
    lang: str
    image_ids: tuple[str, ...]
    group: str = ""  # translations share a group; "" means the caption's own id


@dataclass
class CaptionSet:
    name: str
    images: list[ImageItem]
    captions: list[Caption]
    skipped: dict[str, int] = field(default_factory=dict)  # what a loader left out, and how much

    @property
    def languages(self) -> list[str]:
        return sorted({c.lang for c in self.captions})

    def stats(self) -> dict[str, int]:
        """Captions per language."""
        return dict(sorted(Counter(c.lang for c in self.captions).items()))

    def validate(self) -> None:
        """Ids unique, every caption names at least one known image."""
        for kind, ids in (("image", [i.id for i in self.images]), ("caption", [c.id for c in self.captions])):
            dup = [i for i, n in Counter(ids).items() if n > 1]
            if dup:
                raise ValueError(f"{self.name}: duplicate {kind} ids, e.g. {dup[:3]}")
        known = {i.id for i in self.images}
        for c in self.captions:
            if not c.image_ids:
                raise ValueError(f"{self.name}: caption {c.id!r} names no image")
            missing = [i for i in c.image_ids if i not in known]
            if missing:
                raise ValueError(f"{self.name}: caption {c.id!r} names unknown image {missing[0]!r}")

    def subset(self, name: str, image_ids: set[str] | None = None, languages: set[str] | None = None) -> CaptionSet:
        """Restricted to some images and caption languages; captions left with no image are dropped."""
        images = [i for i in self.images if image_ids is None or i.id in image_ids]
        keep = {i.id for i in images}
        captions = []
        for c in self.captions:
            if languages is not None and c.lang not in languages:
                continue
            ids = tuple(i for i in c.image_ids if i in keep)
            if ids:
                captions.append(Caption(c.id, c.text, c.lang, ids, c.group))
        return CaptionSet(name, images, captions, dict(self.skipped))

    def captions_by_image(self) -> dict[str, dict[str, list[Caption]]]:
        """image id -> language -> its captions in that language (file order)."""
        out: dict[str, dict[str, list[Caption]]] = defaultdict(lambda: defaultdict(list))
        for c in self.captions:
            for image_id in c.image_ids:
                out[image_id][c.lang].append(c)
        return {k: dict(v) for k, v in out.items()}


def _parse_row(row: Any, folder: Path, path: Path, line: int, check_images: bool
               ) -> tuple[ImageItem, list[Caption]]:
    """One line of the generic layout -> its image and captions (or `InputError`)."""
    if not isinstance(row, dict):
        raise InputError("expected a JSON object", path=path, line=line)
    for key in row:
        if key not in LAYOUT_KEYS:
            raise InputError(f"unknown key (expected {', '.join(LAYOUT_KEYS)})", path=path, line=line, field=key)
    for key in LAYOUT_KEYS:
        if key not in row:
            raise InputError("missing", path=path, line=line, field=key)
    image_id = row["id"]
    if not isinstance(image_id, str) or not image_id or any(ch.isspace() for ch in image_id):
        raise InputError(f"must be a non-empty string without whitespace, got {image_id!r}", path=path, line=line,
                         field="id")
    image = row["image"]
    if not isinstance(image, str) or not image.strip():
        raise InputError(f"must be a non-empty path string, got {image!r}", path=path, line=line, field="image")
    image_path = Path(image) if os.path.isabs(image) else folder / image
    if check_images and not image_path.is_file():
        raise InputError(f"image file not found: {image_path}", path=path, line=line, field="image")
    by_lang = row["captions"]
    if not isinstance(by_lang, dict):
        raise InputError(f"must be an object language -> list of captions, got {type(by_lang).__name__}",
                         path=path, line=line, field="captions")
    captions: list[Caption] = []
    seen_langs: dict[str, str] = {}
    for key, texts in by_lang.items():
        where = f"captions.{key}"
        try:
            lang = normalize_lang(key)
        except ValueError as exc:
            raise InputError(str(exc), path=path, line=line, field=where) from exc
        if lang in seen_langs:
            raise InputError(f"language {lang!r} given twice (also as {seen_langs[lang]!r})", path=path, line=line,
                             field=where)
        seen_langs[lang] = key
        if not isinstance(texts, list):
            raise InputError(f"must be a list of strings, got {type(texts).__name__}", path=path, line=line,
                             field=where)
        for pos, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"caption {pos} must be a non-empty string, got {text!r}", path=path, line=line,
                                 field=where)
            captions.append(Caption(f"{image_id}/{lang}/{pos}", text, lang, (image_id,), f"{image_id}#{pos}"))
    return ImageItem(image_id, str(image_path)), captions


def load_caption_jsonl(path: str | Path, check_images: bool = True, name: str | None = None) -> CaptionSet:
    """Read a caption set in the generic layout (see the module docstring); `name` defaults to the file stem."""
    path = Path(path)
    if not path.is_file():
        raise InputError("caption file not found", path=path)
    folder = path.absolute().parent
    images: list[ImageItem] = []
    captions: list[Caption] = []
    first_line: dict[str, int] = {}
    for line_no, row in jsonl_objects(path):  # a bad byte or a bad row is named by its line
        if has_lone_surrogate(row):
            raise InputError("not valid Unicode (a lone surrogate escape)", path=path, line=line_no,
                             field="captions")
        image, image_captions = _parse_row(row, folder, path, line_no, check_images)
        if image.id in first_line:
            raise InputError(f"duplicate id {image.id!r} (first on line {first_line[image.id]})", path=path,
                             line=line_no, field="id")
        first_line[image.id] = line_no
        images.append(image)
        captions.extend(image_captions)
    return CaptionSet(name or path.stem, images, captions)


def save_caption_jsonl(path: str | Path, caption_set: CaptionSet) -> Path:
    """Write `caption_set` in the generic layout, atomically.

    Image paths inside the JSONL file's folder are written relative to it (POSIX separators), others absolute.
    Images held as bytes, and captions that name more or fewer than one image, cannot be written: `ValueError`.
    """
    path = Path(path)
    folder = Path(os.path.abspath(path)).parent
    by_image: dict[str, dict[str, list[str]]] = {i.id: {} for i in caption_set.images}
    for c in caption_set.captions:
        if len(c.image_ids) != 1:
            raise ValueError(f"{caption_set.name}: caption {c.id!r} names {len(c.image_ids)} images; the layout "
                             "holds captions of exactly one image")
        if c.image_ids[0] not in by_image:
            raise ValueError(f"{caption_set.name}: caption {c.id!r} names unknown image {c.image_ids[0]!r}")
        by_image[c.image_ids[0]].setdefault(c.lang, []).append(c.text)
    rows = []
    for image in caption_set.images:
        if isinstance(image.source, bytes):
            raise ValueError(f"{caption_set.name}: image {image.id!r} is held as bytes; write it to a file first")
        source = Path(os.path.abspath(image.source))
        try:
            shown = source.relative_to(folder).as_posix()
        except ValueError:
            shown = str(source)
        rows.append({"id": image.id, "image": shown, "captions": by_image[image.id]})
    with atomic_write(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
