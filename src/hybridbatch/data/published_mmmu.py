"""MMMU and its multilingual version xMMMU (parquet files as published on the Hugging Face hub) as a `CaptionSet`.

**MMMU** (`MMMU/MMMU`): one folder per subject, `<Subject>/<split>-00000-of-00001.parquet` with split `dev`,
`validation` or `test` (the hub's converted copies, `<Subject>/<split>/0000.parquet`, and single-folder
copies such as `lmms-lab/MMMU`'s `data/<split>-0000n-of-0000m.parquet` are read too). Columns: `id`
(`validation_Art_Theory_12`), `question`, `options` (a string holding a Python list), `explanation`,
`image_1` ... `image_7` (struct `{bytes, path}`, null when unused), `img_type`, `answer`,
`topic_difficulty`, `question_type`, `subfield`. Only `id`, `question` and the image columns are read.

A question becomes one caption (lang `en`, group = the row id) with every `<image n>` placeholder removed
and whitespace collapsed; its images are all non-null `image_k` of the row, with ids `<row id>/image_<k>`
and their encoded bytes as `ImageItem.source` (a struct holding only a `path` gives that path, relative to
the parquet file's folder).

**xMMMU** (`neulab/PangeaBench-xmmmu`, the Pangea paper's translation of 300 MMMU validation questions):
`data/translated_MMMU_val_300_with_image_<Language>.parquet` for Arabic, French, Hindi, Indonesian,
Japanese, Portuguese, and English as `data/validation-00000-of-00001.parquet` (earlier revisions:
`data/en.parquet`), every file with the MMMU columns. Also read: one folder per language code holding
MMMU-style parquet files (`<root>/<lang>/...`, as the hub's converted copy `default/<lang>/0000.parquet`),
and files named `<lang>.parquet` / `<lang>-00000-of-00001.parquet`; a split-named file
(`validation-....parquet`) counts as English only where no other English file exists. Rows are matched
across languages by `id`: translations of one id share a group; each image is taken from one copy
(`image_lang`, else the first language that has the row). That the translated files keep MMMU's `id`
column could not be checked offline; a file without it raises `InputError` naming the column.

Bad input raises `InputError` naming the file, the row (as `line`, counted from 1) and the column: a
missing column, a column of the wrong type, a null or duplicate id, an unrecognised language. Documented
skips, counted in `CaptionSet.skipped`: questions left empty once placeholders are removed, questions
without any image.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hybridbatch.data.captions import Caption, CaptionSet, ImageItem
from hybridbatch.data.errors import InputError
from hybridbatch.data.languages import normalize_lang

MMMU_SPLITS = ("dev", "validation", "test")
IMAGE_COLUMNS = tuple(f"image_{k}" for k in range(1, 8))
PLACEHOLDER = re.compile(r"<image\s*\d+>", re.IGNORECASE)
_SPLIT_FILE = re.compile(r"^(dev|validation|test)(-\d+-of-\d+)?$")
_SHARD = re.compile(r"-\d+-of-\d+$")
_TRANSLATED_FILE = re.compile(r"^translated_.*_([A-Za-z]+)$")
LANGUAGE_NAMES = {  # the names PangeaBench uses in its file names, and a few more
    "arabic": "ar", "bengali": "bn", "chinese": "zh", "english": "en", "french": "fr", "german": "de",
    "hindi": "hi", "indonesian": "id", "italian": "it", "japanese": "ja", "korean": "ko", "portuguese": "pt",
    "russian": "ru", "spanish": "es", "swahili": "sw", "thai": "th", "turkish": "tr", "vietnamese": "vi",
}


@dataclass(frozen=True)
class Row:
    """One question row: where it was read, its id, cleaned text and images (k -> bytes or path)."""

    path: Path
    number: int
    id: str
    text: str
    images: dict[int, str | bytes]


def clean_question(question: str) -> str:
    """The question without `<image n>` placeholders, whitespace collapsed."""
    return " ".join(PLACEHOLDER.sub(" ", question).split())


# ---------------------------------------------------------------------------------------------- reading
def _never(kind: pa.DataType) -> bool:
    """Stands in for the type tests an older pyarrow lacks (string/binary views)."""
    return False


def _is_text(kind: pa.DataType) -> bool:
    return (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)
            or getattr(pa.types, "is_string_view", _never)(kind))


def _is_binary(kind: pa.DataType) -> bool:
    return (pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_null(kind)
            or getattr(pa.types, "is_binary_view", _never)(kind))


def _is_image(kind: pa.DataType) -> bool:
    """An image column: HF's struct {bytes, path} (either may be absent), or plain binary."""
    if _is_binary(kind):
        return True
    if not pa.types.is_struct(kind):
        return False
    fields = {kind.field(i).name: kind.field(i).type for i in range(kind.num_fields)}
    good_bytes = "bytes" not in fields or _is_binary(fields["bytes"])
    good_path = "path" not in fields or _is_text(fields["path"])
    return ("bytes" in fields or "path" in fields) and good_bytes and good_path


def read_rows(path: Path) -> Iterator[Row]:
    """The question rows of one MMMU-style parquet file, columns and types checked first."""
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"cannot read parquet ({exc})", path=path) from exc
    schema = parquet.schema_arrow
    for column in ("id", "question"):
        if column not in schema.names:
            raise InputError("missing column", path=path, field=column)
        if not _is_text(schema.field(column).type):
            raise InputError(f"must be a string column, is {schema.field(column).type}", path=path, field=column)
    image_columns = [c for c in IMAGE_COLUMNS if c in schema.names]
    if not image_columns:
        raise InputError("missing column (no image_1 ... image_7)", path=path, field="image_1")
    for column in image_columns:
        if not _is_image(schema.field(column).type):
            raise InputError(f"must be an image struct {{bytes, path}}, is {schema.field(column).type}",
                             path=path, field=column)
    number = 0
    for batch in parquet.iter_batches(batch_size=64, columns=["id", "question", *image_columns]):
        for record in batch.to_pylist():
            number += 1
            row_id = record["id"]
            if not isinstance(row_id, str) or not row_id.strip():
                raise InputError("null or empty id", path=path, line=number, field="id")
            images: dict[int, str | bytes] = {}
            for column in image_columns:
                source = _image_source(record[column], path)
                if source is not None:
                    images[int(column.rsplit("_", 1)[1])] = source
            yield Row(path, number, row_id.strip(), clean_question(record["question"] or ""), images)


def _image_source(value: object, path: Path) -> str | bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    data, where = value.get("bytes"), value.get("path")
    if data:
        return data
    if where:
        return str(path.parent / where)
    return None


def _subject_of(row_id: str) -> str:
    """`validation_Art_Theory_12` -> `Art_Theory`."""
    parts = row_id.split("_")
    return "_".join(parts[1:-1]) if len(parts) >= 3 else ""


def _subject_folder(root: Path, path: Path) -> str | None:
    """The subject folder a file sits in (`Art_Theory/validation-....parquet`), None for single-folder copies."""
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) >= 2 and parts[0] not in ("data", *MMMU_SPLITS) else None


def find_mmmu_files(root: Path, splits: Iterable[str] | None) -> list[Path]:
    """Parquet files under `root` that belong to `splits` (by file name or folder name); None: all files."""
    files = sorted(root.rglob("*.parquet"))
    if splits is None:
        return files
    wanted = set(splits)
    found = []
    for path in files:
        match = _SPLIT_FILE.match(path.stem)
        split = match.group(1) if match else (path.parent.name if path.parent.name in MMMU_SPLITS else None)
        if split in wanted:
            found.append(path)
    return found


# ------------------------------------------------------------------------------------------------- MMMU
def load_mmmu(root: str | Path, splits: Iterable[str] = ("dev", "validation"),
              subjects: Iterable[str] | None = None) -> CaptionSet:
    """The MMMU questions of `splits` (and `subjects`, folder names such as `Art_Theory`) as English captions."""
    root = Path(root)
    splits = [splits] if isinstance(splits, str) else list(splits)
    unknown = [s for s in splits if s not in MMMU_SPLITS]
    if unknown:
        raise InputError(f"unknown split {unknown[0]!r} (MMMU has {', '.join(MMMU_SPLITS)})", path=root,
                         field="splits")
    files = find_mmmu_files(root, splits) if root.is_dir() else []
    if not files:
        raise InputError(f"no parquet files of split(s) {', '.join(splits)} found", path=root)
    wanted = None if subjects is None else ({subjects} if isinstance(subjects, str) else set(subjects))
    folders = {path: _subject_folder(root, path) for path in files}
    present = {s for s in folders.values() if s}
    if wanted is not None and present:  # per-subject folders: read only the wanted ones
        unknown = sorted(wanted - present)
        if unknown:
            raise InputError(f"unknown subject {unknown[0]!r} (found: {', '.join(sorted(present))})", path=root,
                             field="subjects")
        files = [p for p in files if folders[p] in wanted]
    builder = _Builder("mmmu")
    for path in files:
        for row in read_rows(path):
            if wanted is not None and _subject_of(row.id) not in wanted:
                continue
            builder.add(row, "en", group=row.id, caption_id=row.id)
    return builder.result()


class _Builder:
    """Collects captions and images, first copy of an image wins; checks id uniqueness per language."""

    def __init__(self, name: str):
        self.name = name
        self.images: dict[str, ImageItem] = {}
        self.captions: list[Caption] = []
        self.skipped: Counter = Counter()
        self.seen: dict[tuple[str, str], Row] = {}

    def add(self, row: Row, lang: str, group: str, caption_id: str) -> None:
        first = self.seen.get((lang, row.id))
        if first is not None:
            raise InputError(f"duplicate id {row.id!r} (also {first.path}, row {first.number})", path=row.path,
                             line=row.number, field="id")
        self.seen[(lang, row.id)] = row
        if not row.text:
            self.skipped["questions empty without their image placeholders"] += 1
            return
        if not row.images:
            self.skipped["questions without images"] += 1
            return
        image_ids = []
        for k, source in sorted(row.images.items()):
            image_id = f"{row.id}/image_{k}"
            self.images.setdefault(image_id, ImageItem(image_id, source))
            image_ids.append(image_id)
        self.captions.append(Caption(caption_id, row.text, lang, tuple(image_ids), group))

    def result(self) -> CaptionSet:
        return CaptionSet(self.name, list(self.images.values()), self.captions, dict(self.skipped))


# ------------------------------------------------------------------------------------------------ xMMMU
def xmmmu_sources(root: Path) -> dict[str, list[Path]]:
    """Language code -> its parquet files, in the layouts the module docstring lists."""
    base = next((b for b in (root / "data", root / "default") if b.is_dir()), root)
    if not base.is_dir():
        raise InputError("xMMMU folder not found", path=root)
    sources: dict[str, list[Path]] = {}
    english_split_files: list[Path] = []
    for entry in sorted(base.iterdir()):
        if entry.is_dir():
            try:
                lang = normalize_lang(entry.name)
            except ValueError:
                continue  # not a language folder (e.g. a README's assets)
            files = find_mmmu_files(entry, ("validation",)) or find_mmmu_files(entry, None)
            sources.setdefault(lang, []).extend(files)
        elif entry.suffix == ".parquet":
            stem = entry.stem
            if _SPLIT_FILE.match(stem):
                english_split_files.append(entry)
                continue
            translated = _TRANSLATED_FILE.match(stem)
            if translated:
                lang = LANGUAGE_NAMES.get(translated.group(1).lower())
                if lang is None:
                    raise InputError(f"unknown language name {translated.group(1)!r} in the file name",
                                     path=entry, field="language")
            else:
                try:
                    lang = normalize_lang(_SHARD.sub("", stem))
                except ValueError as exc:
                    raise InputError(f"cannot tell the language of this file ({exc})", path=entry,
                                     field="language") from exc
            sources.setdefault(lang, []).append(entry)
    if english_split_files and "en" not in sources:
        sources["en"] = [p for p in english_split_files if p.stem.startswith("validation")] or english_split_files
    if not sources:
        raise InputError("no xMMMU parquet files found", path=base)
    return sources


def load_xmmmu(root: str | Path, languages: Iterable[str] | None = None, image_lang: str = "en",
               complete_only: bool = False) -> CaptionSet:
    """xMMMU: MMMU questions in several languages, translations of one id sharing a group.

    Caption ids are `<row id>/<lang>`, groups the row id, image ids `<row id>/image_<k>` as in MMMU.
    `complete_only` keeps only ids present in every loaded language (e.g. the 900 English validation
    questions, of which ~300 were translated); the others are counted in `skipped`.
    """
    root = Path(root)
    sources = xmmmu_sources(root)
    if languages is not None:
        try:
            wanted = {normalize_lang(code) for code in ([languages] if isinstance(languages, str) else languages)}
        except ValueError as exc:
            raise InputError(str(exc), path=root, field="languages") from exc
        missing = sorted(wanted - set(sources))
        if missing:
            raise InputError(f"no files for language {missing[0]!r} (found: {', '.join(sorted(sources))})",
                             path=root, field="languages")
        sources = {lang: files for lang, files in sources.items() if lang in wanted}
    try:
        first = normalize_lang(image_lang)
    except ValueError as exc:
        raise InputError(str(exc), path=root, field="image_lang") from exc
    order = sorted(sources, key=lambda lang: (lang != first, lang))  # the copy whose images are kept first
    shared = None
    if complete_only:  # ids only, so that no language's images are held while the others are read
        shared = set.intersection(*({i for path in sources[lang] for i in _read_ids(path)} for lang in order))
    builder = _Builder("xmmmu")
    for lang in order:
        for path in sources[lang]:
            for row in read_rows(path):
                if shared is not None and row.id not in shared:
                    builder.skipped["questions not in every language"] += 1
                    continue
                builder.add(row, lang, group=row.id, caption_id=f"{row.id}/{lang}")
    return builder.result()


def _read_ids(path: Path) -> set[str]:
    try:
        schema = pq.read_schema(path)
        if "id" not in schema.names:
            raise InputError("missing column", path=path, field="id")
        ids = pq.read_table(path, columns=["id"]).column("id").to_pylist()
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"cannot read parquet ({exc})", path=path) from exc
    return {i.strip() for i in ids if isinstance(i, str)}
