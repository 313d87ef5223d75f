"""An image-text dual encoder: a sentence-transformers text tower, an image tower, two linear heads.

CLIP-style: both towers map into one `embed_dim` space through bias-free projections, features are
L2-normalized, and a learned temperature (`logit_scale`, initialized at log(1/0.07), used clamped at
log(100)) scales the cosine logits. `lock_image=True` is LiT ("locked-image tuning"): the image tower is
frozen and stays in eval mode, so a trainer may cache its raw features once (`raw_image_features`)
and train only the text tower and the heads on them (`project_image_features`).

The loss lives elsewhere (`hybridbatch.losses`); this module only computes features.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from hybridbatch.io import atomic_folder, write_json
from hybridbatch.models.image_towers import ImageTower, load_image_tower
from hybridbatch.models.st_folder import record_missing_pooler

CONFIG_FILE = "dual_encoder.json"
HEADS_FILE = "heads.safetensors"
TEXT_FOLDER = "text"
IMAGE_FOLDER = "image"
FORMAT_VERSION = 1
LOGIT_SCALE_INIT = math.log(1 / 0.07)
LOGIT_SCALE_MAX = math.log(100)


class ImageTextDualEncoder(torch.nn.Module):
    """Text tower (a `SentenceTransformer`) + image tower (`ImageTower`) + projections + temperature.

    Captions are encoded with the text model's "query" prompt when it has one (e5: "query: "), or with
    `text_prompt` when given ("" for none).
    """

    def __init__(
        self,
        text_model: Any,
        image_tower: ImageTower,
        embed_dim: int = 256,
        lock_image: bool = True,
        text_prompt: str | None = None,
        logit_scale_init: float = LOGIT_SCALE_INIT,
    ) -> None:
        super().__init__()
        self.text_model = text_model
        self.image_tower = image_tower
        self.text_dim = int(_text_dimension(text_model))
        self.image_dim = int(image_tower.output_dim)
        self.embed_dim = int(embed_dim)
        self.text_prompt = (text_model.prompts.get("query") or "") if text_prompt is None else text_prompt
        self.text_projection = torch.nn.Linear(self.text_dim, self.embed_dim, bias=False)
        self.image_projection = torch.nn.Linear(self.image_dim, self.embed_dim, bias=False)
        self.logit_scale = torch.nn.Parameter(torch.tensor(float(logit_scale_init)))
        self.lock_image = lock_image
        if lock_image:
            self.image_tower.requires_grad_(False)
            self.image_tower.eval()

    def train(self, mode: bool = True) -> ImageTextDualEncoder:
        """Like `Module.train`, but a locked image tower stays in eval mode (batch norm, dropout fixed)."""
        super().train(mode)
        if self.lock_image:
            self.image_tower.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.text_projection.weight.device

    def scale(self) -> torch.Tensor:
        """The logit multiplier exp(logit_scale), with logit_scale clamped to [0, log 100] as in CLIP."""
        return self.logit_scale.clamp(0.0, LOGIT_SCALE_MAX).exp()

    # --- differentiable features -------------------------------------------------------------------

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalized `(B, embed_dim)` caption embeddings, with gradients (the text tower trains)."""
        features = self.text_model.preprocess(list(texts), prompt=self.text_prompt or None)
        features = {
            key: value.to(self.device) if torch.is_tensor(value) else value for key, value in features.items()
        }
        sentence = self.text_model(features)["sentence_embedding"]  # (B, text_dim)
        return F.normalize(self.text_projection(sentence), dim=-1)

    def raw_image_tensor(self, pixels: torch.Tensor) -> torch.Tensor:
        """The image tower's `(B, image_dim)` output; without gradients when the tower is locked."""
        pixels = pixels.to(self.device)
        if self.lock_image:
            with torch.no_grad():
                return self.image_tower(pixels)
        return self.image_tower(pixels)

    def project_image_features(self, raw: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Raw tower features `(B, image_dim)` (e.g. a cached numpy array) -> normalized `(B, embed_dim)`
        embeddings, with gradients to the projection."""
        raw = torch.as_tensor(raw, dtype=torch.float32, device=self.device)
        return F.normalize(self.image_projection(raw), dim=-1)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed pixels `(B, 3, H, W)` -> normalized `(B, embed_dim)` image embeddings."""
        return self.project_image_features(self.raw_image_tensor(pixels))

    def forward(
        self, texts: Sequence[str], pixels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(text features, image features, logit multiplier): what a CLIP loss needs."""
        return self.text_features(texts), self.image_features(pixels), self.scale()

    # --- inference ----------------------------------------------------------------------------------

    @contextmanager
    def _inference(self) -> Iterator[None]:
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was_training)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Normalized float32 `(n, embed_dim)` caption embeddings."""
        with self._inference():
            parts = [
                self.text_features(texts[i : i + batch_size]).cpu() for i in range(0, len(texts), batch_size)
            ]
        return _stack(parts, self.embed_dim)

    def raw_image_features(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """The image tower's float32 `(n, image_dim)` features (for caching under a locked tower)."""
        with self._inference():
            parts = [
                self.raw_image_tensor(self.image_tower.preprocess(images[i : i + batch_size])).float().cpu()
                for i in range(0, len(images), batch_size)
            ]
        return _stack(parts, self.image_dim)

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Normalized float32 `(n, embed_dim)` image embeddings."""
        with self._inference():
            parts = [
                self.image_features(self.image_tower.preprocess(images[i : i + batch_size])).cpu()
                for i in range(0, len(images), batch_size)
            ]
        return _stack(parts, self.embed_dim)

    # --- persistence --------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "embed_dim": self.embed_dim,
            "text_dim": self.text_dim,
            "image_dim": self.image_dim,
            "lock_image": self.lock_image,
            "text_prompt": self.text_prompt,
            "image_tower": self.image_tower.describe(),
            "image_weights_saved": self._saves_image_weights(),
        }

    def _saves_image_weights(self) -> bool:
        return not (self.lock_image and self.image_tower.packaged_weights)

    def save(self, folder: str | Path) -> Path:
        """Write the model as one folder, atomically (a temp folder beside it, renamed into place):
        `text/` (a sentence-transformers folder), `image/` (the tower's description, and its weights
        unless it is locked and they come from a package), `heads.safetensors`, `dual_encoder.json`."""
        from safetensors.torch import save_file

        folder = Path(folder)
        with atomic_folder(folder, check=_refuse_foreign_folder) as tmp:
            self.text_model.save(str(tmp / TEXT_FOLDER))
            record_missing_pooler(self.text_model, tmp / TEXT_FOLDER)  # me5-small has no pooler: keep it so
            self.image_tower.save(tmp / IMAGE_FOLDER, weights=self._saves_image_weights())
            heads = {
                "text_projection.weight": self.text_projection.weight,
                "image_projection.weight": self.image_projection.weight,
                "logit_scale": self.logit_scale,
            }
            heads = {key: value.detach().cpu().contiguous() for key, value in heads.items()}
            save_file(heads, str(tmp / HEADS_FILE), metadata={"format": "pt"})
            write_json(tmp / CONFIG_FILE, self.config())  # written last: its presence marks a complete save
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> ImageTextDualEncoder:
        """Load a folder written by `save` (no hub traffic: everything comes from the folder or packages)."""
        from safetensors.torch import load_file

        from hybridbatch.models.registry import load_model_folder

        folder = Path(folder)
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        if config.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder}: unsupported dual encoder format {config.get('format_version')!r}")
        text_model = load_model_folder(folder / TEXT_FOLDER)  # checked: a pickle or a foreign class is refused
        model = cls(
            text_model,
            load_image_tower(folder / IMAGE_FOLDER),
            embed_dim=config["embed_dim"],
            lock_image=config["lock_image"],
            text_prompt=config["text_prompt"],
        )
        heads = load_file(str(folder / HEADS_FILE))
        with torch.no_grad():
            model.text_projection.weight.copy_(heads["text_projection.weight"])
            model.image_projection.weight.copy_(heads["image_projection.weight"])
            model.logit_scale.copy_(heads["logit_scale"])
        return model.to(device)


def _text_dimension(text_model: Any) -> int:
    """The sentence embedding size (`get_embedding_dimension` since sentence-transformers 6, before that
    `get_sentence_embedding_dimension`)."""
    method = (
        getattr(text_model, "get_embedding_dimension", None) or text_model.get_sentence_embedding_dimension
    )
    return method()


def _stack(parts: list[torch.Tensor], dim: int) -> np.ndarray:
    if not parts:
        return np.zeros((0, dim), dtype=np.float32)
    return torch.cat(parts).numpy().astype(np.float32, copy=False)


def _refuse_foreign_folder(dest: Path) -> None:
    """An existing `dest` is replaced only if it is a previous save (or empty)."""
    if not (dest / CONFIG_FILE).is_file() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} exists and is not a saved dual encoder; not replacing it")
