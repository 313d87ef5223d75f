"""Embedding stores: one folder per (encoder, text set), written once and reused while it is current.

Layout of a store folder:

    emb-00000.npy ...  (rows, dim) float32 or float16 shards, in text order
    ids.txt, langs.txt one id / language tag per line, aligned with the rows
    meta.json          model, prefix, dtype, dim, count, normalized, shard list and a fingerprint

The fingerprint is a sha256 over the model (a signature of its weights and max length), the prefix, the
normalization and every (id, lang, text), so a store encoded by another checkpoint or from edited texts is
detected as stale and re-encoded by `load_or_encode`. A store is built in a temporary folder beside its
destination and renamed into place: a reader sees no store or a complete one, never a half-written one.

Distributed encoding (`encode_to_store_distributed`, under `accelerate launch` / torchrun): rank r encodes
the r-th contiguous slice of the texts into its own shard files, and the main process checks the slices,
writes the listing and publishes the folder. The folder must be on a file system every rank sees.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from hybridbatch.io import atomic_write, write_json
from hybridbatch.retrieval.encode import encode_texts

log = logging.getLogger(__name__)

FORMAT = "hybridbatch-embeddings/1"
META = "meta.json"
DEFAULT_SHARD_SIZE = 100_000  # rows per shard: 150 MB of float32 at dim 384
DTYPES = ("float32", "float16")


class TextLike(Protocol):
    """What a store needs of a text (e.g. `hybridbatch.data.benchmark.Text`)."""

    id: str
    text: str
    lang: str


def model_signature(model) -> str:
    """sha256 over the model's parameter names, shapes and first values, and its max sequence length.

    Cheap (a few values per tensor) yet any fine-tuning step changes it; independent of where the model
    was loaded from, so `me5-small` and its cache folder share stores.
    """
    import torch

    digest = hashlib.sha256(f"max_seq_length={getattr(model, 'max_seq_length', None)}".encode())
    with torch.no_grad():
        for name, param in model.named_parameters():
            head = param.detach().flatten()[:64].float().cpu().numpy()
            digest.update(f"{name}{tuple(param.shape)}".encode())
            digest.update(head.tobytes())
    return digest.hexdigest()


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
    emb = np.asarray(emb)
    if emb.ndim != 2 or emb.shape[0] != len(ids) or len(ids) != len(langs):
        raise ValueError(f"embeddings {emb.shape} do not align with {len(ids)} ids and {len(langs)} langs")
    tmp = _temp_folder(Path(folder))
    try:
        shards = [_save_shard(tmp, i, emb[lo:lo + shard_size], dtype)
                  for i, lo in enumerate(range(0, len(ids), _check_shard_size(shard_size)))]
        meta = _meta(model_name, prefix, dtype, emb.shape[1], normalized, fingerprint, shards, processes=1)
        _write_listing(tmp, list(ids), list(langs), meta)
        _publish(tmp, Path(folder))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Path(folder)


def read_meta(folder: str | Path) -> dict | None:
    """The store's meta.json, or None where there is no store."""
    path = Path(folder) / META
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def read_embeddings(folder: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """(ids, langs, float32 (n, dim) embeddings) of a store.

    A store of one float32 shard comes back as a read-only memory map; otherwise the shards are read
    through memory maps into one float32 array.
    """
    folder = Path(folder)
    meta = read_meta(folder)
    if meta is None or meta.get("format") != FORMAT:
        raise FileNotFoundError(f"{folder} is not an embedding store (no {META} of format {FORMAT})")
    ids = _read_lines(folder / "ids.txt")
    langs = _read_lines(folder / "langs.txt")
    count, dim = meta["count"], meta["dim"]
    if len(ids) != count or len(langs) != count or sum(s["rows"] for s in meta["shards"]) != count:
        raise ValueError(f"{folder}: ids, langs and shards disagree with count={count}")
    parts = [np.load(folder / s["file"], mmap_mode="r") for s in meta["shards"]]
    for part, shard in zip(parts, meta["shards"], strict=True):
        if part.shape != (shard["rows"], dim):
            raise ValueError(f"{folder / shard['file']}: shape {part.shape}, meta says {(shard['rows'], dim)}")
    if len(parts) == 1 and parts[0].dtype == np.float32:
        return ids, langs, parts[0]
    emb = np.empty((count, dim), dtype=np.float32)
    row = 0
    for part in parts:
        emb[row:row + len(part)] = part
        row += len(part)
    return ids, langs, emb


def store_is_current(folder: str | Path, fingerprint: str, dtype: str = "float32", normalized: bool = True) -> bool:
    """True when `folder` holds a complete store with this fingerprint, dtype and normalization."""
    meta = read_meta(folder)
    return (meta is not None and meta.get("format") == FORMAT and meta.get("fingerprint") == fingerprint
            and meta.get("dtype") == dtype and meta.get("normalized") == normalized)


def encode_to_store(model, texts: Sequence[TextLike], folder: str | Path, prefix: str = "", batch_size: int = 64,
                    dtype: str = "float32", shard_size: int = DEFAULT_SHARD_SIZE, normalize: bool = True,
                    model_name: str | None = None, show_progress: bool = False) -> Path:
    """Encode `prefix + text` of every text with `encode_texts`, one shard at a time, into a store at `folder`.

    Memory holds one shard's embeddings at a time; the store replaces whatever store was at `folder`.
    """
    folder = Path(folder)
    fingerprint = texts_fingerprint(texts, prefix, model_signature(model), normalize)
    tmp = _temp_folder(folder)
    try:
        shards = _encode_shards(model, texts, tmp, 0, prefix, batch_size, dtype, shard_size, normalize,
                                show_progress)
        meta = _meta(model_name or model_name_of(model), prefix, dtype, model.get_embedding_dimension(),
                     normalize, fingerprint, shards, processes=1)
        _write_listing(tmp, [t.id for t in texts], [t.lang for t in texts], meta)
        _publish(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_or_encode(model, texts: Sequence[TextLike], folder: str | Path, prefix: str = "", batch_size: int = 64,
                   dtype: str = "float32", shard_size: int = DEFAULT_SHARD_SIZE, normalize: bool = True,
                   model_name: str | None = None,
                   show_progress: bool = False) -> tuple[list[str], list[str], np.ndarray]:
    """Read the store at `folder` if its fingerprint matches `texts`, `prefix` and `model`; else encode it."""
    fingerprint = texts_fingerprint(texts, prefix, model_signature(model), normalize)
    if store_is_current(folder, fingerprint, dtype, normalize):
        log.info("%s: reusing %d stored embeddings", folder, len(texts))
    else:
        if read_meta(folder) is not None:
            log.info("%s: stale store (other model, texts or settings), re-encoding", folder)
        encode_to_store(model, texts, folder, prefix, batch_size, dtype, shard_size, normalize, model_name,
                        show_progress)
    return read_embeddings(folder)


def encode_to_store_distributed(model, texts: Sequence[TextLike], folder: str | Path, prefix: str = "",
                                batch_size: int = 64, dtype: str = "float32", shard_size: int = DEFAULT_SHARD_SIZE,
                                normalize: bool = True, model_name: str | None = None, state=None,
                                show_progress: bool = False) -> Path:
    """`encode_to_store` over every process of `state` (accelerate's `PartialState`; made if None).

    Every process gets all `texts`; rank r encodes the slice [r*n/W, (r+1)*n/W) into shard files numbered
    after the shards of the ranks before it and lists its ids. After all ranks are done the main process
    checks that the listed ids are the texts' ids in order, writes ids.txt, langs.txt and meta.json and
    publishes the folder; then every process returns. The store reads back as the single-process one.
    """
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list, gather_object

    state = state or PartialState(cpu=not _cuda_available())
    if state.num_processes == 1:
        return encode_to_store(model, texts, folder, prefix, batch_size, dtype, shard_size, normalize, model_name,
                               show_progress)
    folder, n, world, rank = Path(folder), len(texts), state.num_processes, state.process_index
    fingerprint = texts_fingerprint(texts, prefix, model_signature(model), normalize)
    box = [str(_temp_folder(folder)) if state.is_main_process else None]
    tmp = Path(broadcast_object_list(box, from_process=0)[0])  # one temporary folder for every rank
    bounds = [r * n // world for r in range(world + 1)]
    first_shard = sum(-(-(bounds[r + 1] - bounds[r]) // _check_shard_size(shard_size)) for r in range(rank))
    try:
        lo, hi = bounds[rank], bounds[rank + 1]
        shards = _encode_shards(model, texts[lo:hi], tmp, first_shard, prefix, batch_size, dtype, shard_size,
                                normalize, show_progress and state.is_main_process)
        part = {"rank": rank, "ids": [t.id for t in texts[lo:hi]], "shards": shards, "error": None}
    except Exception as exc:  # reported to every rank below, so no process waits forever on the others
        part = {"rank": rank, "error": f"rank {rank}: {type(exc).__name__}: {exc}"}
    parts = sorted(gather_object([part]), key=lambda p: p["rank"])
    error = "; ".join(p["error"] for p in parts if p["error"])
    if not error and state.is_main_process:
        try:
            if [i for p in parts for i in p["ids"]] != [t.id for t in texts]:
                raise RuntimeError("the ranks' slices do not add up to the texts in order")
            meta = _meta(model_name or model_name_of(model), prefix, dtype, model.get_embedding_dimension(),
                         normalize, fingerprint, [s for p in parts for s in p["shards"]], processes=world)
            _write_listing(tmp, [t.id for t in texts], [t.lang for t in texts], meta)
            _publish(tmp, folder)
        except Exception as exc:
            error = f"main process: {type(exc).__name__}: {exc}"
    error = broadcast_object_list([error], from_process=0)[0]  # also the barrier after publishing
    if state.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    if error:
        raise RuntimeError(f"distributed encoding into {folder} failed: {error}")
    return folder


def _encode_shards(model, texts: Sequence[TextLike], tmp: Path, first_index: int, prefix: str, batch_size: int,
                   dtype: str, shard_size: int, normalize: bool, show_progress: bool) -> list[dict]:
    shards = []
    for i, lo in enumerate(range(0, len(texts), _check_shard_size(shard_size))):
        chunk = [t.text for t in texts[lo:lo + shard_size]]
        emb = encode_texts(model, chunk, prefix, batch_size, normalize=normalize, show_progress=show_progress,
                           desc=f"shard {first_index + i}")
        shards.append(_save_shard(tmp, first_index + i, emb, dtype))
    return shards


def _save_shard(folder: Path, index: int, emb: np.ndarray, dtype: str) -> dict:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    name = f"emb-{index:05d}.npy"
    np.save(folder / name, np.ascontiguousarray(emb, dtype=dtype))
    return {"file": name, "rows": int(emb.shape[0])}


def _meta(model_name: str, prefix: str, dtype: str, dim: int, normalized: bool, fingerprint: str,
          shards: list[dict], processes: int) -> dict:
    return {"format": FORMAT, "model": model_name, "prefix": prefix, "dtype": dtype, "dim": int(dim),
            "count": sum(s["rows"] for s in shards), "normalized": normalized, "fingerprint": fingerprint,
            "shards": shards, "processes": processes}


def _write_listing(folder: Path, ids: list[str], langs: list[str], meta: dict) -> None:
    """ids.txt, langs.txt, then meta.json last (its presence marks a complete store)."""
    for name, values in (("ids.txt", ids), ("langs.txt", langs)):
        if any("\n" in v or "\r" in v for v in values):
            raise ValueError(f"{name}: values must not contain line breaks")
        with atomic_write(folder / name) as handle:
            handle.write("".join(f"{v}\n" for v in values))
    write_json(folder / META, meta)


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def _check_shard_size(shard_size: int) -> int:
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, not {shard_size}")
    return shard_size


def _temp_folder(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.writing-", dir=dest.parent))


def _publish(tmp: Path, dest: Path) -> None:
    """Rename `tmp` onto `dest`; an existing store (or empty folder) at `dest` is replaced, anything else kept."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [tmp, *tmp.iterdir()]:  # mkdtemp/mkstemp make owner-only entries; follow the umask instead
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
    old = None
    if dest.exists():
        if not (dest / META).is_file() and any(dest.iterdir()):
            raise FileExistsError(f"{dest} exists and is not an embedding store; not replacing it")
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        os.replace(dest, old / "store")
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
