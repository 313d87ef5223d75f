"""Issue 15, embedding stores, model folders and image memory: stale stores, damaged shards, unsafe model
folders and eval-vl decoding every image at once. Each test failed before its fix (see README, round 2)."""

from __future__ import annotations

import json
import pickle
import shutil
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from hybridbatch.cli import main
from hybridbatch.data.beir_layout import write_generic
from hybridbatch.data.benchmark import Benchmark, Text
from hybridbatch.retrieval import embeddings as store
from hybridbatch.retrieval.embeddings import (
    NonFiniteStoreEmbeddings,
    StoreError,
    ensure_store,
    model_signature,
    read_embeddings,
    write_embeddings,
)
from hybridbatch.retrieval.encode import encode_texts

WORDS = {"en": ["house", "water", "tree", "dog"], "de": ["Haus", "Wasser", "Baum", "Hund"]}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A generic-layout benchmark and a tiny model folder."""
    from hybridbatch.models.tiny import build_tiny_sentence_transformer

    root = tmp_path_factory.mktemp("stores")
    queries = [Text(f"{lang}-q{i}", f"where is the {w}", lang) for lang, ws in WORDS.items() for i, w in enumerate(ws)]
    corpus = [Text(f"{lang}-c{i}", f"the {w} is here", lang) for lang, ws in WORDS.items() for i, w in enumerate(ws)]
    qrels = {q.id: {f"{y}-c{q.id.split('-q')[1]}": 1 for y in WORDS} for q in queries}
    write_generic(Benchmark("toy", queries, corpus, qrels), root / "bench")
    model = build_tiny_sentence_transformer(root / "model", texts=[t.text for t in queries + corpus], seed=0)
    return root, model, corpus


def _load(folder):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu")


def _encode_cli(root: Path, model: Path, out: Path, capsys, *extra: str) -> dict:
    assert main(["encode", "--model", str(model), "--benchmark", str(root / "bench"), "--out", str(out),
                 *extra]) == 0
    return json.loads(capsys.readouterr().out)


# ------------------------------------------------------------------------------------------- stale stores
def test_the_signature_sees_every_weight_the_pooling_and_the_tokenizer(toy):
    from tokenizers.normalizers import Lowercase, Sequence

    _, folder, _ = toy
    model = _load(folder)
    before = model_signature(model)
    assert model_signature(model) == before
    weight = model[0].auto_model.encoder.layer[-1].output.dense.weight
    kept = weight[-1, -1].item()
    with torch.no_grad():
        weight[-1, -1] += 1e-3  # far past the first 64 values the old signature sampled
    assert model_signature(model) != before
    with torch.no_grad():
        weight[-1, -1] = kept
    assert model_signature(model) == before
    encode_texts(model, ["a long text to truncate " * 50], batch_size=1, show_progress=False)
    assert model_signature(model) == before  # encoding leaves truncation state in the tokenizer: not hashed
    model[1].pooling_mode = "cls"  # another pooling, the same weights
    assert model_signature(model) != before
    model = _load(folder)
    backend = model.tokenizer.backend_tokenizer
    backend.normalizer = Sequence([Lowercase(), *([backend.normalizer] if backend.normalizer else [])])
    assert model_signature(model) != before


def test_encode_reencodes_a_store_of_another_pooling_or_changed_weights(toy, tmp_path, capsys):
    root, folder, _ = toy
    out = tmp_path / "emb"
    assert not _encode_cli(root, folder, out, capsys)["corpus"]["reused"]
    assert _encode_cli(root, folder, out, capsys)["corpus"]["reused"]
    cls = tmp_path / "cls-model"
    shutil.copytree(folder, cls)
    pooling = json.loads((cls / "1_Pooling" / "config.json").read_text())
    pooling.update({k: False for k in pooling if k.startswith("pooling_mode_")}, pooling_mode_cls_token=True)
    if "pooling_mode" in pooling:
        pooling["pooling_mode"] = "cls"
    (cls / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    assert not _encode_cli(root, cls, out, capsys)["corpus"]["reused"]
    from safetensors.torch import load_file, save_file

    tail = tmp_path / "tail-model"
    shutil.copytree(folder, tail)
    weights = load_file(tail / "model.safetensors")
    name = max(weights, key=lambda k: weights[k].numel())
    weights[name].view(-1)[-1] += 0.5  # the last value of the largest tensor
    save_file(weights, tail / "model.safetensors", metadata={"format": "pt"})
    assert not _encode_cli(root, folder, out, capsys)["corpus"]["reused"]  # back to the first model
    assert not _encode_cli(root, tail, out, capsys)["corpus"]["reused"]


def test_encode_uses_the_one_freshness_check(toy, tmp_path, capsys, monkeypatch):
    root, folder, _ = toy
    calls = []
    real = store.ensure_store
    monkeypatch.setattr(store, "ensure_store", lambda *a, **kw: calls.append(a[2]) or real(*a, **kw))
    _encode_cli(root, folder, tmp_path / "emb", capsys)
    assert [Path(c).name for c in calls] == ["queries", "corpus"]


# ----------------------------------------------------------------------------------------- damaged shards
def _store(tmp_path: Path, n: int = 6, dim: int = 4) -> tuple[Path, np.ndarray]:
    emb = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    ids = [f"id{i}" for i in range(n)]
    return write_embeddings(tmp_path / "s", ids, ["en"] * n, emb, fingerprint="f"), emb


def _overwrite(shard: Path, array: np.ndarray) -> None:
    np.save(shard, array, allow_pickle=True)


DAMAGE = {
    "a NaN row": lambda s, e: _overwrite(s, np.where(np.arange(len(e))[:, None] == 2, np.nan, e).astype(np.float32)),
    "random values": lambda s, e: _overwrite(s, np.random.default_rng(1).normal(size=e.shape).astype(np.float32)),
    "reversed rows": lambda s, e: _overwrite(s, e[::-1].copy()),
    "a float16 shard over a float32 one": lambda s, e: _overwrite(s, e.astype(np.float16)),
    "a truncated shard": lambda s, e: s.write_bytes(s.read_bytes()[:-10]),
    "a garbage header": lambda s, e: s.write_bytes(b"\x93NUMPY garbage" + s.read_bytes()[14:]),
    "an object-dtype npy": lambda s, e: _overwrite(s, np.array([{"x": 1}] * len(e), dtype=object)),
    "a missing shard": lambda s, e: s.unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_shard_is_a_one_line_store_error(tmp_path, damage):
    folder, emb = _store(tmp_path)
    DAMAGE[damage](folder / "emb-00000.npy", emb)
    with pytest.raises(StoreError) as err:
        read_embeddings(folder)
    message = str(err.value)
    assert "\n" not in message and "emb-00000.npy" in message


META_DAMAGE = {
    "bad JSON": lambda m: "{not json",
    "a list": lambda m: json.dumps([m]),
    "dim is a string": lambda m: json.dumps({**m, "dim": "4"}),
    "count is a bool": lambda m: json.dumps({**m, "count": True}),
    "missing shards": lambda m: json.dumps({k: v for k, v in m.items() if k != "shards"}),
    "missing checksum": lambda m: json.dumps({**m, "shards": [{k: v for k, v in s.items() if k != "sha256"}
                                                              for s in m["shards"]]}),
    "a shard path outside the store": lambda m: json.dumps({**m, "shards": [{**m["shards"][0], "file": "../x.npy"}]}),
    "wrong dimension": lambda m: json.dumps({**m, "dim": 5}),
    "wrong count": lambda m: json.dumps({**m, "count": 7}),
    "the first format": lambda m: json.dumps({**m, "format": "hybridbatch-embeddings/1"}),
}


@pytest.mark.parametrize("damage", list(META_DAMAGE))
def test_an_invalid_meta_json_is_a_one_line_store_error(tmp_path, damage):
    folder, _ = _store(tmp_path)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(META_DAMAGE[damage](meta))
    with pytest.raises(StoreError) as err:
        read_embeddings(folder)
    assert "\n" not in str(err.value) and str(folder) in str(err.value)


def test_non_finite_values_name_the_store_and_the_text_ids(tmp_path):
    from hybridbatch.retrieval.store_format import file_sha256

    folder, emb = _store(tmp_path)
    bad = emb.copy()
    bad[4, 1] = np.inf
    np.save(folder / "emb-00000.npy", bad)  # as a writer without checks would have: a matching checksum
    meta = json.loads((folder / "meta.json").read_text())
    meta["shards"][0]["sha256"] = file_sha256(folder / "emb-00000.npy")
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(NonFiniteStoreEmbeddings, match=r"'id4'") as err:
        read_embeddings(folder)
    assert str(folder) in str(err.value)
    nan = emb.copy()
    nan[[1, 3]] = np.nan
    with pytest.raises(NonFiniteStoreEmbeddings, match=r"2 text\(s\): 'id1', 'id3'"):
        write_embeddings(tmp_path / "t", [f"id{i}" for i in range(6)], ["en"] * 6, nan)
    big = np.full((1, 4), 1e6, dtype=np.float32)  # finite in float32, inf in float16
    with pytest.raises(NonFiniteStoreEmbeddings):
        write_embeddings(tmp_path / "t", ["a"], ["en"], big, dtype="float16")
    assert not (tmp_path / "t").exists()


def test_eval_with_a_damaged_current_store_exits_2_naming_the_shard(toy, tmp_path, capsys):
    root, folder, _ = toy
    out = tmp_path / "emb"
    _encode_cli(root, folder, out, capsys)
    shard = out / "corpus" / "emb-00000.npy"
    emb = np.load(shard)
    np.save(shard, emb[::-1].copy())  # reversed rows: every number plausible, every ranking wrong
    code = main(["eval", "--model", str(folder), "--benchmark", str(root / "bench"), "--out", str(tmp_path / "ev"),
                 "--embeddings", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "emb-00000.npy" in err and "checksum" in err
    assert not (tmp_path / "ev" / "metrics.json").exists()


def test_encode_refuses_a_folder_that_is_not_a_store_before_encoding_even_with_force(toy, tmp_path, capsys,
                                                                                   monkeypatch):
    root, folder, _ = toy
    (tmp_path / "emb" / "corpus").mkdir(parents=True)
    (tmp_path / "emb" / "corpus" / "precious.txt").write_text("keep")
    encoded = []
    real = store.encode_texts
    monkeypatch.setattr(store, "encode_texts", lambda *a, **kw: encoded.append(1) or real(*a, **kw))
    for extra in ([], ["--force"]):
        code = main(["encode", "--model", str(folder), "--benchmark", str(root / "bench"), "--out",
                     str(tmp_path / "emb"), *extra])
        err = capsys.readouterr().err
        assert code == 2 and "not an embedding store" in err and "Traceback" not in err
        assert (tmp_path / "emb" / "corpus" / "precious.txt").read_text() == "keep"  # --force used to rmtree it
    assert not encoded  # refused before either store was encoded


def test_a_store_of_the_first_format_is_re_encoded(toy, tmp_path):
    _, folder, corpus = toy
    model = _load(folder)
    assert not ensure_store(model, corpus, tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    (tmp_path / "s" / "meta.json").write_text(json.dumps({**meta, "format": "hybridbatch-embeddings/1"}))
    assert not ensure_store(model, corpus, tmp_path / "s")
    assert ensure_store(model, corpus, tmp_path / "s")


# ------------------------------------------------------------------------------------------ model folders
class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def _damaged_model(folder: Path, dest: Path, damage: str) -> Path:
    shutil.copytree(folder, dest)
    if damage == "pickle":
        (dest / "model.safetensors").unlink()
        with open(dest / "pytorch_model.bin", "wb") as handle:
            pickle.dump({"weight": _Payload()}, handle)
    else:
        modules = json.loads((dest / "modules.json").read_text())
        modules[1]["type"] = "collections.OrderedDict"
        (dest / "modules.json").write_text(json.dumps(modules))
    return dest


@pytest.mark.parametrize("damage", ["pickle", "foreign class"])
def test_an_unsafe_model_folder_is_a_one_line_error(toy, tmp_path, capsys, damage):
    from hybridbatch.models.registry import ModelFolderError, load_sentence_transformer

    root, folder, _ = toy
    bad = _damaged_model(folder, tmp_path / "bad", damage)
    with pytest.raises(ModelFolderError, match="pytorch_model.bin|not part of sentence-transformers"):
        load_sentence_transformer(str(bad))
    code = main(["eval", "--model", str(bad), "--benchmark", str(root / "bench"), "--out", str(tmp_path / "ev")])
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err and str(bad) in captured.err
    assert "this must never run" not in captured.out


# ------------------------------------------------------------------------------------------- image memory
def test_eval_vl_decodes_images_a_batch_at_a_time(tmp_path, monkeypatch):
    from PIL import Image

    from hybridbatch.data import images as images_module
    from hybridbatch.data.captions import Caption, CaptionSet, ImageItem
    from hybridbatch.evaluation.image_text import evaluate_image_text

    items, captions = [], []
    for i in range(7):
        Image.new("RGB", (100, 100), (30 * i, 0, 0)).save(tmp_path / f"{i}.png")
        items.append(ImageItem(f"im{i}", str(tmp_path / f"{i}.png")))
        captions.append(Caption(f"im{i}/en/0", f"red {i}", "en", (f"im{i}",), f"im{i}#0"))
    alive, peak = [0], [0]
    real_open = images_module.open_image

    def counting_open(*args, **kwargs):
        image = real_open(*args, **kwargs)
        alive[0] += 1
        peak[0] = max(peak[0], alive[0])
        weakref.finalize(image, lambda: alive.__setitem__(0, alive[0] - 1))
        return image

    class Encoder:
        def encode_texts(self, texts, batch_size=64):
            return np.eye(8, dtype=np.float32)[[int(t.split()[1]) for t in texts]]

        def encode_images(self, images, batch_size=32):
            return np.eye(8, dtype=np.float32)[[img.getpixel((0, 0))[0] // 30 for img in images]]

    monkeypatch.setattr(images_module, "open_image", counting_open)
    cs = CaptionSet("toy", items, captions)
    evaluation = evaluate_image_text(Encoder(), cs, batch_size=3, show_progress=False)
    assert peak[0] <= 3  # was 7: every image of the set decoded at once
    assert evaluation.metrics["monolingual"]["map"] == pytest.approx(1.0)  # and in the right order
    peak[0] = 0
    evaluate_image_text(Encoder(), cs, batch_size=3, show_progress=False, max_batch_pixels=25_000)
    assert peak[0] <= 2  # 10,000 pixels each: two fit the pixel budget


def test_train_vl_feature_cache_decodes_images_a_batch_at_a_time(tmp_path, monkeypatch):
    """The frozen image tower's feature cache (train-vl, lock_image) decoded every image of the set at once."""
    from PIL import Image

    from hybridbatch.data import images as images_module
    from hybridbatch.data.captions import Caption, CaptionSet, ImageItem
    from hybridbatch.training import image_text

    monkeypatch.setenv("HYBRIDBATCH_CACHE", str(tmp_path / "cache"))
    items, captions = [], []
    for i in range(7):
        Image.new("RGB", (20, 20), (30 * i, 0, 0)).save(tmp_path / f"{i}.png")
        items.append(ImageItem(f"im{i}", str(tmp_path / f"{i}.png")))
        captions.append(Caption(f"im{i}/en/0", f"red {i}", "en", (f"im{i}",), f"im{i}#0"))
    alive, peak = [0], [0]
    real_open = images_module.open_image

    def counting_open(*args, **kwargs):
        image = real_open(*args, **kwargs)
        alive[0] += 1
        peak[0] = max(peak[0], alive[0])
        weakref.finalize(image, lambda: alive.__setitem__(0, alive[0] - 1))
        return image

    class Tower:
        def describe(self):
            return {"kind": "toy"}

    class Model:
        image_tower = Tower()

        def raw_image_features(self, images, batch_size=32):
            return np.array([[img.getpixel((0, 0))[0] / 30.0] for img in images], dtype=np.float32)

    monkeypatch.setattr(images_module, "open_image", counting_open)
    ids = [f"im{i}" for i in (6, 0, 3, 1, 5, 2, 4)]
    raw = image_text.cached_raw_features(Model(), CaptionSet("toy", items, captions), ids, batch_size=3)
    assert peak[0] <= 3  # was 7
    np.testing.assert_array_equal(raw[:, 0], [6, 0, 3, 1, 5, 2, 4])  # in the order asked for
