"""Embedding stores: one folder per (encoder, text set), written once and reused while it is current.

Layout of a store folder:

    emb-00000.npy ...  (rows, dim) float32 or float16 shards, in text order
    ids.txt, langs.txt one id / language tag per line, aligned with the rows
    meta.json          model, prefix, dtype, dim, count, normalized, a fingerprint, and the shard list:
                       file, rows, dtype and the sha256 of each shard file

The fingerprint is a sha256 over the model (`encode.model_signature`: every weight byte, module classes and
configs, tokenizer, max length, fast-path kind), the prefix, the normalization and every (id, lang, text), so
a store encoded by another checkpoint, pooling, tokenizer or from edited texts is stale and re-encoded by
`ensure_store` / `load_or_encode`. A store is built in a temporary folder beside its destination and renamed
into place: a reader sees no store or a complete one, never a half-written one.

Every read verifies the store (`read_embeddings`): meta.json's keys and types, ids/langs against the count,
each shard's sha256, header, dtype and shape, and that every value is finite. A damaged store is a
`StoreError` (an `InputError`: one line naming the file and what is wrong; bad input, exit 2), NaN or inf
in a shard a `NonFiniteStoreEmbeddings` naming the text ids; neither is ever replaced silently (`hybridbatch
encode --force` replaces a store, never a folder without meta.json). The full check costs less than reading
the shard into memory: for a 100,000 x 384 float32 shard (153.6 MB) sha256 0.30 s, the NaN/inf pass 0.03 s, a
verified `read_embeddings` 0.46 s, where a plain `np.load` of the same file took 1.55 s (2-core AMD EPYC with
SHA extensions, load average 12 from other jobs). So it is always done: no `--verify` flag is needed. Stores
of the first format (no checksums) are stale: `ensure_store` re-encodes them, `read_embeddings` refuses them.

Distributed encoding (`encode_to_store_distributed`, under `accelerate launch` / torchrun): rank r encodes
the r-th contiguous slice of the texts into its own shard files, and the main process checks the slices,
writes the listing and publishes the folder. The folder must be on a file system every rank sees.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from hybridbatch.io import atomic_folder, follow_umask, replace_folder, temp_folder_beside, write_json
from hybridbatch.retrieval.encode import encode_texts, model_signature
from hybridbatch.retrieval.store_format import (
    DTYPES,
    FORMAT,
    META,
    NonFiniteStoreEmbeddings,
    StoreError,
    append_listing,
    check_destination,
    file_sha256,
    make_meta,
    read_listing,
    read_meta,
    save_shard,
    validated_meta,
    verified_shards,
    write_listing,
)

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 100_000  # rows per shard: 150 MB of float32 at dim 384
__all__ = ["DTYPES", "FORMAT", "META", "NonFiniteStoreEmbeddings", "StoreError", "check_destination",
           "encode_to_store", "encode_to_store_distributed", "ensure_store", "load_or_encode", "model_signature",
           "read_embeddings", "read_meta", "store_is_current", "store_status", "texts_fingerprint", "verify_store",
           "write_embeddings"]


class TextLike(Protocol):
    """What a store needs of a text (e.g. `hybridbatch.data.benchmark.Text`)."""

    id: str
    text: str
    lang: str


def texts_fingerprint(texts: Sequence[TextLike], prefix: str, model_sig: str, normalized: bool = True) -> str:
    """sha256 over the model signature, prefix, normalization and every (id, lang, text) in order."""
    digest = hashlib.sha256(json.dumps([model_sig, prefix, normalized]).encode("utf-8"))
    for t in texts:
        digest.update(json.dumps([t.id, t.lang, t.text], ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def model_name_of(model) -> str:
    """The path or hub id the model's transformer was loaded from (recorded in meta.json, not hashed)."""
    try:
        return str(model[0].auto_model.config.name_or_path)
    except (AttributeError, IndexError, KeyError, TypeError):
        return type(model).__name__


def write_embeddings(folder: str | Path, ids: Sequence[str], langs: Sequence[str], emb: np.ndarray, *,
                     model_name: str = "", prefix: str = "", dtype: str = "float32", normalized: bool = True,
                     fingerprint: str = "", shard_size: int = DEFAULT_SHARD_SIZE) -> Path:
    """Write `emb` (n, dim), aligned with `ids` and `langs`, as a store at `folder` (replacing a store there)."""
    emb, folder = np.asarray(emb), Path(folder)
    if emb.ndim != 2 or emb.shape[0] != len(ids) or len(ids) != len(langs):
        raise ValueError(f"embeddings {emb.shape} do not align with {len(ids)} ids and {len(langs)} langs")
    check_destination(folder)
    step = _check_shard_size(shard_size)
    with atomic_folder(folder, check=check_destination) as tmp:  # checked again: something may appear meanwhile
        shards = [save_shard(tmp, i, emb[lo:lo + step], dtype, ids[lo:lo + step], folder)
                  for i, lo in enumerate(range(0, len(ids), step))]
        meta = make_meta(model_name, prefix, dtype, emb.shape[1], normalized, fingerprint, shards, processes=1)
        write_listing(tmp, list(ids), list(langs), meta)
    return folder


def read_embeddings(folder: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """(ids, langs, float32 (n, dim) embeddings) of a store, verified (see the module docstring).

    A store of one float32 shard comes back as a read-only memory map; otherwise the shards are read
    through memory maps into one float32 array.
    """
    folder = Path(folder)
    meta, ids, langs = _store_listing(folder)
    parts = list(verified_shards(folder, meta, ids))
    if len(parts) == 1 and parts[0].dtype == np.float32:
        return ids, langs, parts[0]
    emb = np.empty((meta["count"], meta["dim"]), dtype=np.float32)
    row = 0
    for part in parts:
        emb[row:row + len(part)] = part
        row += len(part)
    return ids, langs, emb


def _store_listing(folder: Path) -> tuple[dict, list[str], list[str]]:
    """The validated meta, ids and languages of the store at `folder` (shards not read yet)."""
    meta = read_meta(folder)
    if meta is None:
        raise FileNotFoundError(f"{folder} is not an embedding store (no {META} of format {FORMAT})")
    meta = validated_meta(meta, folder)
    ids, langs = read_listing(folder, meta["count"])
    return meta, ids, langs


def verify_store(folder: str | Path) -> dict:
    """Every check of `read_embeddings` without building the array; returns the validated meta."""
    folder = Path(folder)
    meta, ids, _ = _store_listing(folder)
    for _part in verified_shards(folder, meta, ids):
        pass
    return meta


def store_status(folder: str | Path, fingerprint: str, dtype: str = "float32", normalized: bool = True) -> str:
    """"current" (a store with this fingerprint, dtype and normalization), "stale" (another store, or one of an
    older format) or "missing" (no folder, or an empty one). Only meta.json is read; `StoreError` for a
    damaged one, and (`check_destination`) for a folder that holds something else."""
    folder = Path(folder)
    check_destination(folder)
    meta = read_meta(folder)
    if meta is None:
        return "missing"
    if meta.get("format") != FORMAT:
        return "stale"
    meta = validated_meta(meta, folder)
    same = (meta["fingerprint"] == fingerprint and meta["dtype"] == dtype and meta["normalized"] == normalized)
    return "current" if same else "stale"


def store_is_current(folder: str | Path, fingerprint: str, dtype: str = "float32", normalized: bool = True) -> bool:
    """True when `folder` holds a store with this fingerprint, dtype and normalization (meta.json only)."""
    return store_status(folder, fingerprint, dtype, normalized) == "current"


def ensure_store(model, texts: Sequence[TextLike], folder: str | Path, prefix: str = "", batch_size: int = 64,
                 dtype: str = "float32", shard_size: int = DEFAULT_SHARD_SIZE, normalize: bool = True,
                 model_name: str | None = None, show_progress: bool = False, *, force: bool = False,
                 distributed: bool = False, verify: bool = True, model_sig: str | None = None) -> bool:
    """Make `folder` a current store of `texts` under `model` and `prefix`; True if the store there was reused.

    The one freshness check of the package (`hybridbatch encode`, `eval --embeddings`, `load_or_encode`): a
    current store is reused (with `verify`, its shards checked as on every read); a missing or stale one is
    encoded (`force`: always), sharded over the processes of a distributed launch with `distributed`.
    `model_sig` saves recomputing `model_signature(model)` for several stores of one model.
    """
    folder = Path(folder)
    fingerprint = texts_fingerprint(texts, prefix, model_sig or model_signature(model), normalize)
    status = "stale" if force else store_status(folder, fingerprint, dtype, normalize)
    if status == "current":
        if verify:
            verify_store(folder)
        log.info("%s: reusing %d stored embeddings", folder, len(texts))
        return True
    check_destination(folder)
    if status == "stale":
        log.info("%s: %s, re-encoding", folder, "forced" if force else "stale store (other model, texts or settings)")
    kwargs = {"prefix": prefix, "batch_size": batch_size, "dtype": dtype, "shard_size": shard_size,
              "normalize": normalize, "model_name": model_name, "show_progress": show_progress,
              "fingerprint": fingerprint}
    if distributed:
        encode_to_store_distributed(model, texts, folder, **kwargs)
    else:
        encode_to_store(model, texts, folder, **kwargs)
    return False


def encode_to_store(model, texts: Sequence[TextLike], folder: str | Path, prefix: str = "", batch_size: int = 64,
                    dtype: str = "float32", shard_size: int = DEFAULT_SHARD_SIZE, normalize: bool = True,
                    model_name: str | None = None, show_progress: bool = False, fingerprint: str | None = None) -> Path:
    """Encode `prefix + text` of every text with `encode_texts`, one shard at a time, into a store at `folder`.

    Memory holds one shard's texts and embeddings at a time (ids and languages are written shard by shard),
    so `texts` may stream from disk; the store replaces whatever store was at `folder`.
    """
    folder = Path(folder)
    check_destination(folder)
    fingerprint = fingerprint or texts_fingerprint(texts, prefix, model_signature(model), normalize)
    with atomic_folder(folder, check=check_destination) as tmp:
        with open(tmp / "ids.txt", "w", encoding="utf-8", newline="\n") as ids_file, \
                open(tmp / "langs.txt", "w", encoding="utf-8", newline="\n") as langs_file:
            shards = _encode_shards(model, texts, tmp, 0, prefix, batch_size, dtype, shard_size, normalize,
                                    show_progress, folder, listing=(ids_file, langs_file))
        meta = make_meta(model_name or model_name_of(model), prefix, dtype, model.get_embedding_dimension(),
                     normalize, fingerprint, shards, processes=1)
        write_json(tmp / META, meta)  # last: its presence marks a complete store
    return folder


def load_or_encode(model, texts: Sequence[TextLike], folder: str | Path, prefix: str = "", batch_size: int = 64,
                   dtype: str = "float32", shard_size: int = DEFAULT_SHARD_SIZE, normalize: bool = True,
                   model_name: str | None = None,
                   show_progress: bool = False) -> tuple[list[str], list[str], np.ndarray]:
    """`ensure_store`, then the verified store, whose ids and languages must be those of `texts`."""
    ensure_store(model, texts, folder, prefix, batch_size, dtype, shard_size, normalize, model_name, show_progress,
                 verify=False)  # read_embeddings verifies
    ids, langs, emb = read_embeddings(folder)
    if ids != [t.id for t in texts] or langs != [t.lang for t in texts]:
        raise StoreError("ids.txt / langs.txt do not list the texts this store was encoded from (edited after "
                         "writing?); re-encode it", path=folder)
    return ids, langs, emb


def encode_to_store_distributed(model, texts: Sequence[TextLike], folder: str | Path, prefix: str = "",
                                batch_size: int = 64, dtype: str = "float32", shard_size: int = DEFAULT_SHARD_SIZE,
                                normalize: bool = True, model_name: str | None = None, state=None,
                                show_progress: bool = False, fingerprint: str | None = None) -> Path:
    """`encode_to_store` over every process of `state` (accelerate's `PartialState`; made if None).

    Every process gets all `texts`; rank r encodes the slice [r*n/W, (r+1)*n/W) into shard files numbered
    after the shards of the ranks before it and lists its ids. After all ranks are done the main process
    checks that the listed ids are the texts' ids in order and that every listed shard file is there with its
    checksum (a folder not shared by all ranks fails here), writes ids.txt, langs.txt and meta.json and
    publishes the folder; then every process returns. The store reads back as the single-process one.
    """
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list, gather_object

    state = state or PartialState(cpu=not _cuda_available())
    if state.num_processes == 1:
        return encode_to_store(model, texts, folder, prefix, batch_size, dtype, shard_size, normalize, model_name,
                               show_progress, fingerprint)
    folder, n, world, rank = Path(folder), len(texts), state.num_processes, state.process_index
    check_destination(folder)  # the same answer on every rank (one shared file system), before any work
    fingerprint = fingerprint or texts_fingerprint(texts, prefix, model_signature(model), normalize)
    box = [str(temp_folder_beside(folder)) if state.is_main_process else None]
    tmp = Path(broadcast_object_list(box, from_process=0)[0])  # one temporary folder for every rank
    bounds = [r * n // world for r in range(world + 1)]
    first_shard = sum(-(-(bounds[r + 1] - bounds[r]) // _check_shard_size(shard_size)) for r in range(rank))
    try:
        lo, hi = bounds[rank], bounds[rank + 1]
        shards = _encode_shards(model, texts[lo:hi], tmp, first_shard, prefix, batch_size, dtype, shard_size,
                                normalize, show_progress and state.is_main_process, folder)
        part = {"rank": rank, "ids": [t.id for t in texts[lo:hi]], "shards": shards, "error": None}
    except Exception as exc:  # reported to every rank below, so no process waits forever on the others
        part = {"rank": rank, "error": f"rank {rank}: {type(exc).__name__}: {exc}", "kind": type(exc).__name__}
    parts = sorted(gather_object([part]), key=lambda p: p["rank"])
    failed = [p for p in parts if p["error"]]
    error, kinds = "; ".join(p["error"] for p in failed), {p["kind"] for p in failed}
    if not error and state.is_main_process:
        try:
            if [i for p in parts for i in p["ids"]] != [t.id for t in texts]:
                raise RuntimeError("the ranks' slices do not add up to the texts in order")
            shards = [s for p in parts for s in p["shards"]]
            for shard in shards:  # written by another process: is it here, whole?
                if not (tmp / shard["file"]).is_file() or file_sha256(tmp / shard["file"]) != shard["sha256"]:
                    raise StoreError(f"shard {shard['file']} written by another rank is missing or differs here: "
                                     f"the store folder must be on a file system every rank shares", path=folder)
            meta = make_meta(model_name or model_name_of(model), prefix, dtype, model.get_embedding_dimension(),
                         normalize, fingerprint, shards, processes=world)
            write_listing(tmp, [t.id for t in texts], [t.lang for t in texts], meta)
            follow_umask(tmp)
            replace_folder(tmp, folder, check=check_destination)  # again: something may have appeared there
        except Exception as exc:
            error, kinds = f"main process: {type(exc).__name__}: {exc}", {type(exc).__name__}
    error, kinds = broadcast_object_list([error, kinds], from_process=0)  # also the barrier after publishing
    if state.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    if error:
        message = f"distributed encoding into {folder} failed: {error}"
        typed = {"StoreError": StoreError, "NonFiniteStoreEmbeddings": NonFiniteStoreEmbeddings}
        raise typed[kinds.pop()](message) if len(kinds) == 1 and next(iter(kinds)) in typed else RuntimeError(message)
    return folder


def _encode_shards(model, texts: Sequence[TextLike], tmp: Path, first_index: int, prefix: str, batch_size: int,
                   dtype: str, shard_size: int, normalize: bool, show_progress: bool, store: Path,
                   listing: tuple | None = None) -> list[dict]:
    """The shards' meta.json entries; with `listing` (open ids.txt, langs.txt), each shard's ids and langs."""
    shards = []
    for i, lo in enumerate(range(0, len(texts), _check_shard_size(shard_size))):
        part = texts[lo:lo + shard_size]
        emb = encode_texts(model, [t.text for t in part], prefix, batch_size, normalize=normalize,
                           show_progress=show_progress, desc=f"shard {first_index + i}")
        shards.append(save_shard(tmp, first_index + i, emb, dtype, [t.id for t in part], store))
        if listing is not None:
            append_listing(listing[0], [t.id for t in part], "ids.txt")
            append_listing(listing[1], [t.lang for t in part], "langs.txt")
        del part, emb  # before the next slice is read: one shard of texts in memory, not two
    return shards


def _check_shard_size(shard_size: int) -> int:
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, not {shard_size}")
    return shard_size


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
