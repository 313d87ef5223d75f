"""CLIP and BLIP-2 zero-shot baselines, end to end on tiny random checkpoints loaded like real ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from hybridbatch.models.image_towers import build_image_tower
from hybridbatch.models.vl_baselines import (
    Blip2Baseline,
    CLIPBaseline,
    build_tiny_blip2,
    build_tiny_clip,
    load_vl_baseline,
)

TEXTS = ["a red apple", "ein roter Apfel on a long table by the window", "一个红苹果", "красное яблоко"]


def images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (36 + i, 44, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("vl") / "clip")


@pytest.fixture(scope="module")
def blip2_folder(tmp_path_factory):
    return build_tiny_blip2(tmp_path_factory.mktemp("vl") / "blip2", num_query_tokens=4)


def test_clip_baseline_matches_clip_forward(clip_folder):
    baseline = load_vl_baseline(str(clip_folder))
    assert isinstance(baseline, CLIPBaseline)
    text_emb, image_emb = (
        baseline.encode_texts(TEXTS, batch_size=3),
        baseline.encode_images(images(3), batch_size=2),
    )
    assert text_emb.shape == (4, 16) and image_emb.shape == (3, 16) and text_emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text_emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(image_emb, axis=1), 1.0, atol=1e-5)
    assert len({tuple(np.round(row, 4)) for row in text_emb}) == len(TEXTS)
    scores = baseline.similarity(text_emb, image_emb)
    assert scores.shape == (4, 3)

    inputs = baseline.tokenizer(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        output = baseline.model(**inputs, pixel_values=baseline._pixels(images(3)))
    expected = (output.logits_per_text / baseline.model.logit_scale.exp()).detach().numpy()
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert baseline.encode_images([]).shape == (0, 16)


def test_clip_vision_tower_reads_a_full_clip_checkpoint(clip_folder):
    baseline = CLIPBaseline(str(clip_folder))
    tower = build_image_tower(f"hf-clip-vision:{clip_folder}").eval()
    assert tower.output_dim == 16  # the top-level projection_dim of the CLIP config
    with torch.no_grad():
        features = torch.nn.functional.normalize(tower(tower.preprocess(images(2))), dim=-1).numpy()
    np.testing.assert_allclose(features, baseline.encode_images(images(2)), atol=1e-5)


def test_blip2_baseline_matches_itc_forward(blip2_folder):
    baseline = load_vl_baseline(str(blip2_folder))
    assert isinstance(baseline, Blip2Baseline)
    text_emb, image_emb = (
        baseline.encode_texts(TEXTS, batch_size=3),
        baseline.encode_images(images(3), batch_size=2),
    )
    assert text_emb.shape == (4, 16) and image_emb.shape == (3, 4, 16)
    np.testing.assert_allclose(np.linalg.norm(text_emb, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(image_emb, axis=-1), 1.0, atol=1e-5)
    scores = baseline.similarity(text_emb, image_emb)
    by_hand = np.array([[max(image_emb[i] @ text_emb[t]) for i in range(3)] for t in range(4)])
    np.testing.assert_allclose(scores, by_hand, atol=1e-6)

    inputs = baseline.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        output = baseline.model(
            pixel_values=baseline._pixels(images(3)), **inputs, use_image_text_matching_head=False
        )
    np.testing.assert_allclose(scores, output.logits_per_text.numpy(), atol=1e-5)
    # random images must not collapse onto one embedding (the vision tower really runs)
    assert not np.allclose(image_emb[0], image_emb[1], atol=1e-3)


def test_load_vl_baseline_rejects_other_checkpoints(tmp_path, blip2_folder):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type 'bert'"):
        load_vl_baseline(str(tmp_path / "bert"))
    config = json.loads((blip2_folder / "config.json").read_text())
    (tmp_path / "captioner").mkdir()
    (tmp_path / "captioner" / "config.json").write_text(
        json.dumps({**config, "architectures": ["Blip2ForConditionalGeneration"]})
    )
    with pytest.raises(ValueError, match="retrieval"):
        load_vl_baseline(str(tmp_path / "captioner"))
