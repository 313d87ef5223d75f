"""scripts/device: the EmbeddingGemma grids' numbers came from a model packed here and rebuilt on a GPU machine.
The round trip on a small Gemma-shaped folder: sent rows come back as their bf16 values, rows no text uses come
back as zeros, a broken part or a text that needs an unsent row stops the rebuild."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models, pre_tokenizers

from helpers.scripts import load_script

VOCAB = 1000  # ids < 300 are always sent; the words below get ids 500..


def _load(name: str):
    return load_script(f"scripts/device/{name}.py")


@pytest.fixture()
def gemma_like(tmp_path) -> Path:
    """A folder with Gemma's file layout: model.safetensors (embed_tokens.weight + a layer), two Dense folders,
    a word-level tokenizer.json and a config file."""
    folder = tmp_path / "model"
    (folder / "2_Dense").mkdir(parents=True)
    (folder / "3_Dense").mkdir()
    words = ["hello", "world", "bonjour", "monde", "unused", "never"]
    vocab = {f"<t{i}>": i for i in range(VOCAB) if not 500 <= i < 500 + len(words)}
    vocab.update({w: 500 + i for i, w in enumerate(words)})
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<t3>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    g = torch.Generator().manual_seed(0)
    save_file({"embed_tokens.weight": torch.randn(VOCAB, 8, generator=g), "layers.0.w": torch.randn(8, 8, generator=g)},
              str(folder / "model.safetensors"))
    for dense in ("2_Dense", "3_Dense"):
        save_file({"linear.weight": torch.randn(8, 8, generator=g)}, str(folder / dense / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    data = tmp_path / "data"
    for bench in ("xquad-r", "mlqa-r"):
        (data / bench).mkdir(parents=True)
        (data / bench / "en.json").write_text("{}")
    return folder


def test_round_trip_sends_used_rows_in_bf16_and_zeros_the_rest(gemma_like, tmp_path):
    pack, rebuild = _load("pack_gemma"), _load("rebuild_gemma")
    out = tmp_path / "out"
    texts = ["hello world", "bonjour monde"]
    assert pack.main(out, model_dir=gemma_like, texts=texts, data_dir=gemma_like.parent / "data",
                     call_bytes=4096) == 0
    assert len(list(out.glob("c*"))) > 2  # cut into several calls' parts
    dest = tmp_path / "rebuilt"
    assert rebuild.main(out, dest=dest, texts=texts) == 0

    original, rebuilt = load_file(str(gemma_like / "model.safetensors")), load_file(str(dest / "model.safetensors"))
    sent = sorted(set(range(300)) | {500, 501, 502, 503})
    unsent = [i for i in range(VOCAB) if i not in sent]
    embedding = original["embed_tokens.weight"]
    assert torch.equal(rebuilt["embed_tokens.weight"][sent], embedding[sent].bfloat16().float())
    assert not rebuilt["embed_tokens.weight"][unsent].any()
    assert torch.equal(rebuilt["layers.0.w"], original["layers.0.w"].bfloat16().float())
    assert (rebuilt["layers.0.w"] - original["layers.0.w"]).abs().max() > 0  # rounded, not copied
    for dense in ("2_Dense", "3_Dense"):
        a, b = load_file(str(gemma_like / dense / "model.safetensors")), load_file(str(dest / dense / "model.safetensors"))
        assert torch.equal(b["linear.weight"], a["linear.weight"].bfloat16().float())
    assert (dest / "config.json").read_text() == (gemma_like / "config.json").read_text()
    assert (dest / ".complete").is_file()


def test_a_text_needing_an_unsent_row_or_a_broken_part_stops_the_rebuild(gemma_like, tmp_path):
    pack, rebuild = _load("pack_gemma"), _load("rebuild_gemma")
    out = tmp_path / "out"
    pack.main(out, model_dir=gemma_like, texts=["hello world"], data_dir=gemma_like.parent / "data", call_bytes=4096)
    with pytest.raises(SystemExit, match="1 token ids"):
        rebuild.main(out, dest=tmp_path / "a", texts=["hello never"])  # 'never' (id 505) was not sent

    part = sorted(out.glob("c*/part-*.bin"))[1]
    blob = bytearray(part.read_bytes())
    blob[0] ^= 0xFF
    part.write_bytes(bytes(blob))
    with pytest.raises(SystemExit, match="sha256"):
        rebuild.main(out, dest=tmp_path / "b", texts=["hello world"])
    assert not (tmp_path / "b" / ".complete").exists()


def test_used_token_ids_keeps_the_low_ids_and_what_texts_use(gemma_like):
    pack = _load("pack_gemma")
    tokenizer = Tokenizer.from_file(str(gemma_like / "tokenizer.json"))
    ids = pack.used_token_ids(tokenizer, ["monde monde", "hello"])
    assert isinstance(ids, np.ndarray) and ids.tolist() == [*range(300), 500, 503]
