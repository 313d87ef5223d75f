"""The E5S1 reader against files written by an independent writer that follows e5.c's layout."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertModel

from hybridbatch.models.e5s1 import (
    E5S1FormatError,
    E5S1Header,
    bert_config,
    bert_state_dict,
    dequantize_q4_0,
    expected_shapes,
    hf_name,
    load_bert_from_e5s1,
    read_e5s1,
)

SIZES = {"hidden": 64, "layers": 2, "heads": 2, "ff": 128, "vocab": 40, "max_positions": 16, "type_vocab": 2}
EPS = 1e-12
F32, Q4 = 0, 1


def quantize_q4_0(x: np.ndarray) -> bytes:
    """ggml-style Q4_0: per 32 weights, d = (value of largest magnitude) / -8, q = clip(round(x/d) + 8)."""
    blocks = x.astype(np.float32).reshape(-1, 32)
    out = bytearray()
    for block in blocks:
        peak = block[np.argmax(np.abs(block))]
        d = np.float16(peak / -8.0)
        inv = 1.0 / float(d) if float(d) != 0.0 else 0.0
        q = np.clip(np.floor(block * inv + 8.5), 0, 15).astype(np.uint8)
        out += d.tobytes() + bytes((q[:16] | (q[16:] << 4)).tolist())
    return bytes(out)


def reference_dequantize(raw: bytes) -> np.ndarray:
    """Block by block, exactly as e5.c `deq_row` reads them."""
    values = []
    for start in range(0, len(raw), 18):
        (d,) = np.frombuffer(raw[start : start + 2], dtype="<f2")
        qs = raw[start + 2 : start + 18]
        block = [0.0] * 32
        for j in range(16):
            block[j] = ((qs[j] & 0x0F) - 8) * float(d)
            block[j + 16] = ((qs[j] >> 4) - 8) * float(d)
        values += block
    return np.array(values, dtype=np.float32)


def random_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    header = E5S1Header(version=1, **SIZES, eps=EPS, block=32)
    weights = {}
    for name, shape in expected_shapes(header).items():
        scale = 1.0 if name.endswith("ln.w") else 0.2
        base = 1.0 if name.endswith("ln.w") else 0.0
        weights[name] = (base + scale * rng.standard_normal(shape)).astype(np.float32)
    return weights


def is_quantized(name: str) -> bool:
    return name == "emb.word" or (
        name.endswith(".w") and name.split(".")[1] in {"q", "k", "v", "ao", "fi", "fo"}
    )


def write_e5s1(
    path: Path, weights: dict[str, np.ndarray], pieces: list[str], dtypes: dict | None = None
) -> dict:
    """Write an E5S1 file; returns {name: raw tensor bytes} for comparisons."""
    dtypes = dtypes or {}
    head = b"E5S1" + struct.pack("<I7ifi", 1, *SIZES.values(), EPS, 32)
    blob = b"".join(p.encode() for p in pieces)
    offsets = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    scores = -np.arange(len(pieces), dtype="<f4") / 10
    vocab = (
        struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob)) + offsets.tobytes() + scores.tobytes() + blob
    )
    norm = struct.pack("<iI", 1, 9) + struct.pack("<IBI", 0x3000, 1, 0x20)  # one map entry, like e5.c's
    raws = {
        name: quantize_q4_0(w) if is_quantized(name) else w.astype("<f4").tobytes()
        for name, w in weights.items()
    }
    entries = [(name, dtypes.get(name, Q4 if is_quantized(name) else F32)) for name in weights]
    dir_size = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n, _ in entries)
    offset = len(head) + len(vocab) + len(norm) + dir_size
    directory, data = struct.pack("<i", len(entries)), b""
    for name, dtype in entries:
        raw = raws[name]
        directory += (
            struct.pack("<H", len(name))
            + name.encode()
            + struct.pack("<BIQQ", dtype, weights[name].size, offset, len(raw))
        )
        data += raw
        offset += len(raw)
    path.write_bytes(head + vocab + norm + directory + data)
    return raws


PIECES = ["<s>", "<pad>", "</s>", "<unk>"] + [f"▁w{i}" for i in range(35)] + ["<mask>"]


@pytest.fixture
def e5s1_file(tmp_path):
    weights = random_weights()
    path = tmp_path / "tiny.bin"
    raws = write_e5s1(path, weights, PIECES)
    return path, weights, raws


def test_header_and_vocabulary(e5s1_file):
    path, _, _ = e5s1_file
    model = read_e5s1(path)
    h = model.header
    assert (h.version, h.hidden, h.layers, h.heads, h.ff, h.vocab) == (1, 64, 2, 2, 128, 40)
    assert (h.max_positions, h.type_vocab, h.block) == (16, 2, 32)
    assert h.eps == pytest.approx(EPS)
    assert model.pieces == PIECES
    assert model.special_ids == {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    np.testing.assert_allclose(model.scores[:3], [0.0, -0.1, -0.2], rtol=1e-6)


def test_dequantized_values_match_reference_and_originals(e5s1_file):
    path, weights, raws = e5s1_file
    model = read_e5s1(path)
    for name in ("emb.word", "l0.q.w", "l1.fi.w", "l1.fo.w"):
        got = model.tensor(name)
        assert got.shape == weights[name].shape
        np.testing.assert_array_equal(got.ravel(), reference_dequantize(raws[name]))
        block_peak = np.abs(weights[name].reshape(-1, 32)).max(axis=1, keepdims=True)
        error = np.abs(got.reshape(-1, 32) - weights[name].reshape(-1, 32))
        assert np.all(error <= block_peak / 8 + 1e-3)  # at most one quantization step
    np.testing.assert_array_equal(model.tensor("emb.pos"), weights["emb.pos"])
    np.testing.assert_array_equal(model.tensor("l1.oln.b"), weights["l1.oln.b"])


def test_dequantize_nibble_order():
    scale = np.float16(0.5).tobytes()
    qs = bytes([(j % 16) | (((15 - j) % 16) << 4) for j in range(16)])
    values = dequantize_q4_0(np.frombuffer(scale + qs, dtype=np.uint8), 32)
    np.testing.assert_array_equal(values[:16], (np.arange(16) - 8) * 0.5)
    np.testing.assert_array_equal(values[16:], (15 - np.arange(16) - 8) * 0.5)


def test_name_mapping():
    assert hf_name("emb.word") == "embeddings.word_embeddings.weight"
    assert hf_name("emb.type") == "embeddings.token_type_embeddings.weight"
    assert hf_name("emb.ln.b") == "embeddings.LayerNorm.bias"
    assert hf_name("l0.q.w") == "encoder.layer.0.attention.self.query.weight"
    assert hf_name("l11.ao.b") == "encoder.layer.11.attention.output.dense.bias"
    assert hf_name("l3.aln.w") == "encoder.layer.3.attention.output.LayerNorm.weight"
    assert hf_name("l3.fi.w") == "encoder.layer.3.intermediate.dense.weight"
    assert hf_name("l3.fo.b") == "encoder.layer.3.output.dense.bias"
    assert hf_name("l3.oln.b") == "encoder.layer.3.output.LayerNorm.bias"
    with pytest.raises(KeyError):
        hf_name("l0.pool.w")


def test_state_dict_loads_strictly_into_bert(e5s1_file):
    path, _, _ = e5s1_file
    state, config = load_bert_from_e5s1(path)
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (64, 2, 128)
    assert (config.vocab_size, config.max_position_embeddings, config.pad_token_id) == (40, 16, 1)
    assert config.hidden_act == "gelu" and config.layer_norm_eps == EPS
    model = BertModel(config, add_pooling_layer=False)
    model.load_state_dict(state, strict=True)


def e5c_forward(model, ids: list[int]) -> np.ndarray:
    """The encoder of e5.c in numpy (fp32 activations), mean-pooled; an independent check that
    weights are [out, in] and each tensor lands in the right slot (square matrices fool shape checks)."""
    h = model.header
    t = model.tensor

    def ln(x, w, b):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + h.eps) * w + b

    def gelu(x):
        return 0.5 * x * (1 + torch.erf(torch.from_numpy(x / np.sqrt(2))).numpy())

    x = t("emb.word")[ids] + t("emb.pos")[: len(ids)] + t("emb.type")[0]
    x = ln(x, t("emb.ln.w"), t("emb.ln.b"))
    hd = h.hidden // h.heads
    for i in range(h.layers):
        q, k, v = (x @ t(f"l{i}.{n}.w").T + t(f"l{i}.{n}.b") for n in "qkv")
        ctx = np.zeros_like(x)
        for head in range(h.heads):
            sl = slice(head * hd, (head + 1) * hd)
            scores = q[:, sl] @ k[:, sl].T / np.sqrt(hd)
            probs = np.exp(scores - scores.max(-1, keepdims=True))
            ctx[:, sl] = (probs / probs.sum(-1, keepdims=True)) @ v[:, sl]
        x = ln(x + ctx @ t(f"l{i}.ao.w").T + t(f"l{i}.ao.b"), t(f"l{i}.aln.w"), t(f"l{i}.aln.b"))
        mid = gelu(x @ t(f"l{i}.fi.w").T + t(f"l{i}.fi.b"))
        x = ln(x + mid @ t(f"l{i}.fo.w").T + t(f"l{i}.fo.b"), t(f"l{i}.oln.w"), t(f"l{i}.oln.b"))
    return x.mean(0)


def test_bert_forward_matches_e5c_algorithm(e5s1_file):
    path, _, _ = e5s1_file
    parsed = read_e5s1(path)
    model = BertModel(bert_config(parsed), add_pooling_layer=False).eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in bert_state_dict(parsed).items()})
    ids = [0, 5, 17, 9, 33, 2]
    with torch.no_grad():
        ours = model(input_ids=torch.tensor([ids])).last_hidden_state[0].mean(0).numpy()
    np.testing.assert_allclose(ours, e5c_forward(parsed, ids), atol=1e-4)


@pytest.mark.parametrize("keep", [3, 60, 2000, -100])
def test_truncated_file_gives_clear_error(e5s1_file, keep):
    path, _, _ = e5s1_file
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    with pytest.raises(E5S1FormatError, match="truncated"):
        read_e5s1(path)


def test_bad_magic(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(E5S1FormatError, match="not an E5S1 file"):
        read_e5s1(path)


def test_unknown_dtype_and_wrong_size_are_rejected(tmp_path):
    weights = random_weights()
    write_e5s1(tmp_path / "a.bin", weights, PIECES, dtypes={"emb.pos": 7})
    with pytest.raises(E5S1FormatError, match="dtype code 7"):
        read_e5s1(tmp_path / "a.bin")
    write_e5s1(tmp_path / "b.bin", weights, PIECES, dtypes={"emb.pos": Q4})
    with pytest.raises(E5S1FormatError, match="claims"):
        read_e5s1(tmp_path / "b.bin")


def test_missing_tensor(tmp_path):
    weights = random_weights()
    del weights["l1.oln.b"]
    write_e5s1(tmp_path / "m.bin", weights, PIECES)
    with pytest.raises(E5S1FormatError, match="l1.oln.b"):
        read_e5s1(tmp_path / "m.bin")
