"""The files of an embedding store: meta.json and its checks, shards with checksums, ids/langs listings.

`hybridbatch.retrieval.embeddings` writes, reads and reuses stores with these; this module knows nothing of
models. Every check raises `StoreError` (an `InputError` naming the file and what is wrong) or, for NaN/inf
values, `NonFiniteStoreEmbeddings` naming the text ids.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from hybridbatch.data.errors import InputError
from hybridbatch.io import atomic_write, write_json

FORMAT = "hybridbatch-embeddings/2"  # /1 had no shard checksums and a weaker model signature
META = "meta.json"
DTYPES = ("float32", "float16")
_SHARD_NAME = re.compile(r"emb-\d{5}\.npy")
_ROWS_PER_PASS = 65_536  # rows checked for NaN/inf at a time (a memory-mapped shard is never copied whole)


class StoreError(InputError):
    """An embedding store (or the folder meant for one) that cannot be used: names the file and what is wrong."""


class NonFiniteStoreEmbeddings(ValueError):
    """NaN or inf embeddings, in a stored shard or about to be stored: names the store and the text ids."""


def read_meta(folder: str | Path) -> dict | None:
    """The store's meta.json, or None where there is no store; `StoreError` if it is not a JSON object."""
    path = Path(folder) / META
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, ValueError, RecursionError) as exc:
        raise StoreError(f"not a valid store listing ({type(exc).__name__}: {_first_line(exc)})", path=path) from exc
    if not isinstance(meta, dict):
        raise StoreError(f"expected a JSON object, got {type(meta).__name__}", path=path)
    return meta


def check_destination(folder: Path) -> None:
    """Refuse, before any encoding, a store folder that is a file, or a folder holding anything but a store."""
    if folder.exists() and not folder.is_dir():
        raise StoreError("exists and is not a folder (an embedding store is a folder)", path=folder)
    if (folder / META).exists() and not (folder / META).is_file():
        raise StoreError("is not a file: this folder is not an embedding store", path=folder / META)
    if folder.is_dir() and not (folder / META).exists() and any(folder.iterdir()):
        raise StoreError(f"exists and is not an embedding store (no {META}, other files); not replacing it: "
                         f"choose another folder", path=folder)
    for parent in folder.parents:
        if parent.exists():
            if not parent.is_dir():
                raise StoreError(f"{parent} is a file, not a folder", path=folder)
            break


def save_shard(folder: Path, index: int, emb: np.ndarray, dtype: str, ids: Sequence[str], store: Path) -> dict:
    """Write one shard (refusing NaN/inf, also where float16 overflows); its entry in meta.json."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    with np.errstate(over="ignore"):  # a float16 overflow becomes inf, refused just below
        data = np.ascontiguousarray(emb, dtype=dtype)
    bad = non_finite_rows(data)
    if len(bad):
        raise NonFiniteStoreEmbeddings(f"{store}: NaN or inf {dtype} embeddings for {name_ids(ids, bad)}; "
                                       f"nothing was stored")
    name = f"emb-{index:05d}.npy"
    np.save(folder / name, data)
    return {"file": name, "rows": int(data.shape[0]), "dtype": dtype, "sha256": file_sha256(folder / name)}


def make_meta(model_name: str, prefix: str, dtype: str, dim: int, normalized: bool, fingerprint: str,
          shards: list[dict], processes: int) -> dict:
    return {"format": FORMAT, "model": model_name, "prefix": prefix, "dtype": dtype, "dim": int(dim),
            "count": sum(s["rows"] for s in shards), "normalized": normalized, "fingerprint": fingerprint,
            "shards": shards, "processes": processes}


_META_TYPES = {"format": str, "model": str, "prefix": str, "dtype": str, "dim": int, "count": int,
               "normalized": bool, "fingerprint": str, "shards": list, "processes": int}


def validated_meta(meta: dict, folder: Path) -> dict:
    """`meta` if it is a meta.json of this format with every key of the right type; else `StoreError`."""
    path = folder / META
    if meta.get("format") != FORMAT:
        raise StoreError(f"format {str(meta.get('format'))[:60]!r}, expected {FORMAT!r} (a store of an older "
                         f"version has no checksums: re-encode it with `hybridbatch encode --force`)", path=path)
    for key, kind in _META_TYPES.items():
        if key not in meta:
            raise StoreError("missing", path=path, field=key)
        if not isinstance(meta[key], kind) or (kind is int and isinstance(meta[key], bool)):
            raise StoreError(f"expected {kind.__name__}, got {type(meta[key]).__name__}", path=path, field=key)
    if meta["dtype"] not in DTYPES or meta["dim"] < 1 or meta["count"] < 0 or meta["processes"] < 1:
        raise StoreError(f"dtype must be one of {DTYPES}, dim >= 1, count >= 0, processes >= 1; got "
                         f"{meta['dtype']!r}, {meta['dim']}, {meta['count']}, {meta['processes']}", path=path)
    files = set()
    for i, shard in enumerate(meta["shards"]):
        ok = (isinstance(shard, dict) and isinstance(shard.get("file"), str) and _SHARD_NAME.fullmatch(shard["file"])
              and type(shard.get("rows")) is int and shard["rows"] >= 0 and shard.get("dtype") == meta["dtype"]
              and isinstance(shard.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", shard["sha256"])
              and shard["file"] not in files)
        if not ok:
            raise StoreError("expected {file: emb-NNNNN.npy (each once), rows: int >= 0, dtype: the store's, "
                             "sha256: 64 hex digits}", path=path, field=f"shards[{i}]")
        files.add(shard["file"])
    if sum(s["rows"] for s in meta["shards"]) != meta["count"]:
        raise StoreError(f"the shards hold {sum(s['rows'] for s in meta['shards'])} rows, count says "
                         f"{meta['count']}: ids, langs and shards disagree", path=path)
    return meta


def read_listing(folder: Path, count: int) -> tuple[list[str], list[str]]:
    lists = []
    for name in ("ids.txt", "langs.txt"):
        try:
            lists.append(_read_lines(folder / name))
        except (OSError, UnicodeError) as exc:
            raise StoreError(f"cannot be read ({type(exc).__name__}: {_first_line(exc)})", path=folder / name) from exc
    if len(lists[0]) != count or len(lists[1]) != count:
        raise StoreError(f"ids, langs and shards disagree with count={count} ({len(lists[0])} ids, "
                         f"{len(lists[1])} langs)", path=folder)
    return lists[0], lists[1]


def verified_shards(folder: Path, meta: dict, ids: list[str]):
    """Each shard as a read-only memory map, after its checksum, header, dtype, shape and values are checked."""
    row = 0
    for shard in meta["shards"]:
        yield verified_shard(folder, shard, meta["dim"], ids[row:row + shard["rows"]])
        row += shard["rows"]


def streamed_shards(folder: Path) -> Iterator[tuple[list[str], list[str], np.ndarray]]:
    """(ids, langs, embeddings) of each shard in order, each verified as `verified_shards` does; ids.txt and
    langs.txt are read alongside, so memory holds one shard (a memory map) and its ids, never the whole store."""
    meta = _listed_meta(folder)
    with _listing_files(folder) as (ids_file, langs_file):
        for shard in meta["shards"]:
            ids = [line.removesuffix("\n") for line in itertools.islice(ids_file, shard["rows"])]
            langs = [line.removesuffix("\n") for line in itertools.islice(langs_file, shard["rows"])]
            if len(ids) != shard["rows"] or len(langs) != shard["rows"]:
                raise StoreError(f"ids.txt / langs.txt end before the rows of {shard['file']} do", path=folder)
            yield ids, langs, verified_shard(folder, shard, meta["dim"], ids)


def streamed_listing(folder: Path) -> Iterator[tuple[str, str]]:
    """(id, lang) of every row of the store, read line by line (its row count checked against meta.json)."""
    meta = _listed_meta(folder)
    rows = 0
    with _listing_files(folder) as (ids_file, langs_file):
        for text_id, lang in zip(ids_file, langs_file, strict=False):
            rows += 1
            yield text_id.removesuffix("\n"), lang.removesuffix("\n")
    if rows != meta["count"]:
        raise StoreError(f"ids.txt / langs.txt list {rows} rows, meta.json count={meta['count']}", path=folder)


def _listed_meta(folder: Path) -> dict:
    meta = read_meta(folder)
    if meta is None:
        raise FileNotFoundError(f"{folder} is not an embedding store (no {META} of format {FORMAT})")
    return validated_meta(meta, folder)


@contextmanager
def _listing_files(folder: Path):
    try:  # only "\n" ends a line (write_listing refuses values holding a line break)
        with open(folder / "ids.txt", encoding="utf-8", newline="\n") as ids_file, \
                open(folder / "langs.txt", encoding="utf-8", newline="\n") as langs_file:
            yield ids_file, langs_file
    except (OSError, UnicodeError) as exc:
        raise StoreError(f"ids.txt / langs.txt cannot be read ({type(exc).__name__}: {_first_line(exc)})",
                         path=folder) from exc


def verified_shard(folder: Path, shard: dict, dim: int, ids: Sequence[str]) -> np.ndarray:
    """One shard (its meta.json entry) as a read-only memory map, checked; `ids`: its rows' ids."""
    path = folder / shard["file"]
    if not path.is_file():
        raise StoreError("shard file missing", path=path)
    if file_sha256(path) != shard["sha256"]:
        raise StoreError("checksum mismatch: the shard changed after the store was written (truncated, "
                         "overwritten or edited); re-encode the store (`hybridbatch encode --force`)", path=path)
    try:
        part = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise StoreError(f"not a readable .npy shard ({_first_line(exc)})", path=path) from exc
    if part.dtype != np.dtype(shard["dtype"]) or part.shape != (shard["rows"], dim):
        raise StoreError(f"{part.dtype} shape {part.shape}, meta.json says {shard['dtype']} shape "
                         f"{(shard['rows'], dim)}", path=path)
    bad = non_finite_rows(part)
    if len(bad):
        raise NonFiniteStoreEmbeddings(f"{folder}: {shard['file']} holds NaN or inf embeddings for "
                                       f"{name_ids(ids, bad)}")
    return part


def non_finite_rows(emb: np.ndarray) -> np.ndarray:
    bad = [lo + np.nonzero(~np.isfinite(emb[lo:lo + _ROWS_PER_PASS]).all(axis=1))[0]
           for lo in range(0, len(emb), _ROWS_PER_PASS)]
    return np.concatenate(bad) if bad else np.zeros(0, dtype=np.int64)


def name_ids(ids: Sequence[str], rows: np.ndarray, shown: int = 5) -> str:
    named = ", ".join(repr(ids[int(r)]) for r in rows[:shown])
    return f"{len(rows)} text(s): {named}" + (f" and {len(rows) - shown} more" if len(rows) > shown else "")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def write_listing(folder: Path, ids: list[str], langs: list[str], meta: dict) -> None:
    """ids.txt, langs.txt, then meta.json last (its presence marks a complete store)."""
    for name, values in (("ids.txt", ids), ("langs.txt", langs)):
        with atomic_write(folder / name) as handle:
            append_listing(handle, values, name)
    write_json(folder / META, meta)


def append_listing(handle, values: Sequence[str], name: str) -> None:
    """One value a line, to ids.txt or langs.txt (`name`) open in `handle`."""
    if any("\n" in v or "\r" in v for v in values):
        raise ValueError(f"{name}: values must not contain line breaks")
    handle.write("".join(f"{v}\n" for v in values))


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]
