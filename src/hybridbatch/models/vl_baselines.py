"""Zero-shot image-text baselines: CLIP and BLIP-2 (ITC), behind the interface the evaluation uses.

Each baseline has `encode_texts(texts) -> np.ndarray`, `encode_images(images) -> np.ndarray` (both
L2-normalized float32) and `similarity(text_emb, image_emb) -> (n_texts, n_images)`:

- CLIP: one vector per text and per image; similarity is the dot product (cosine).
- BLIP-2 (`Blip2ForImageTextRetrieval`, image-text contrastive mode, no ITM head): an image is its
  `num_query_tokens` projected Q-Former query embeddings `(n, Q, d)`, a text its projected [CLS]
  embedding `(n, d)`; similarity is the maximum over query tokens, exactly as the model's own
  `forward(..., use_image_text_matching_head=False)` scores pairs (without the LAVIS temperature).

Hub names work unchanged where the hub is reachable; here the weights are not obtainable, so the tests
run the same constructors on tiny random checkpoints (`build_tiny_clip`, `build_tiny_blip2`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from hybridbatch.models.image_towers import tiny_clip_image_processor
from hybridbatch.models.tiny import MULTILINGUAL_SAMPLE, _build_tokenizer, _save_tokenizer

DEFAULT_CLIP = "openai/clip-vit-base-patch32"
DEFAULT_BLIP2 = "Salesforce/blip2-itm-vit-g"
_BLIP2_RETRIEVAL = "Blip2ForImageTextRetrieval"


class _HFBaseline:
    """Shared loading (offline for folders) and batching for the transformers baselines."""

    def __init__(self, name_or_path: str, device: str, batch_size: int) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer

        self.name_or_path = str(name_or_path)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.local = Path(self.name_or_path).is_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(self.name_or_path, local_files_only=self.local)
        self.image_processor = AutoImageProcessor.from_pretrained(
            self.name_or_path, local_files_only=self.local
        )

    def _tokens(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
        tokens = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        return {key: tokens[key].to(self.device) for key in ("input_ids", "attention_mask")}

    def _pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        rgb = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
        return self.image_processor(images=rgb, return_tensors="pt")["pixel_values"].to(self.device)

    def _batched(
        self, items: Sequence[Any], batch_size: int | None, encode: Callable, empty_shape
    ) -> np.ndarray:
        size = batch_size or self.batch_size
        with torch.no_grad():
            parts = [encode(items[i : i + size]).float().cpu() for i in range(0, len(items), size)]
        if not parts:
            return np.zeros(empty_shape, dtype=np.float32)
        return torch.cat(parts).numpy()


class CLIPBaseline(_HFBaseline):
    """transformers `CLIPModel` with the checkpoint's tokenizer and image processor."""

    def __init__(self, name_or_path: str = DEFAULT_CLIP, device: str = "cpu", batch_size: int = 32) -> None:
        from transformers import CLIPModel

        super().__init__(name_or_path, device, batch_size)
        self.model = CLIPModel.from_pretrained(
            self.name_or_path, local_files_only=self.local, dtype=torch.float32
        )
        self.model.eval().to(self.device)
        self.max_length = self.model.config.text_config.max_position_embeddings
        self.dim = self.model.config.projection_dim

    def _text_batch(self, texts: Sequence[str]) -> torch.Tensor:
        features = _pooled(self.model.get_text_features(**self._tokens(texts, self.max_length)))
        return F.normalize(features, dim=-1)  # (B, d)

    def _image_batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return F.normalize(_pooled(self.model.get_image_features(pixel_values=self._pixels(images))), dim=-1)

    def encode_texts(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        return self._batched(texts, batch_size, self._text_batch, (0, self.dim))

    def encode_images(self, images: Sequence[Image.Image], batch_size: int | None = None) -> np.ndarray:
        return self._batched(images, batch_size, self._image_batch, (0, self.dim))

    @staticmethod
    def similarity(text_emb: np.ndarray, image_emb: np.ndarray) -> np.ndarray:
        """Cosine similarity `(n_texts, n_images)` of normalized embeddings."""
        return np.asarray(text_emb, dtype=np.float32) @ np.asarray(image_emb, dtype=np.float32).T


def _pooled(output: Any) -> torch.Tensor:
    """`get_*_features` return the projected tensor (transformers 4) or an output whose `pooler_output`
    holds it (transformers 5)."""
    return output if torch.is_tensor(output) else output.pooler_output


class Blip2Baseline(_HFBaseline):
    """transformers `Blip2ForImageTextRetrieval` in its image-text contrastive (ITC) mode."""

    def __init__(self, name_or_path: str = DEFAULT_BLIP2, device: str = "cpu", batch_size: int = 16) -> None:
        from transformers import Blip2ForImageTextRetrieval

        super().__init__(name_or_path, device, batch_size)
        self.model = Blip2ForImageTextRetrieval.from_pretrained(
            self.name_or_path, local_files_only=self.local, dtype=torch.float32
        )
        self.model.eval().to(self.device)
        config = self.model.config
        self.max_length = min(config.qformer_config.max_position_embeddings, self.tokenizer.model_max_length)
        self.dim = config.image_text_hidden_size
        self.num_query_tokens = config.num_query_tokens

    def _text_batch(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self._tokens(texts, self.max_length)  # text alone: no image tokens to strip
        embeds = self.model.embeddings(input_ids=tokens["input_ids"])
        hidden = self.model.qformer(
            query_embeds=embeds, query_length=0, attention_mask=tokens["attention_mask"], return_dict=True
        ).last_hidden_state
        cls = hidden[:, 0, :].to(self.model.text_projection.weight.dtype)
        return F.normalize(self.model.text_projection(cls), dim=-1)  # (B, d)

    def _image_batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        pixels = self._pixels(images).to(self.model.vision_model.dtype)
        image_embeds = self.model.vision_model(pixel_values=pixels, return_dict=True).last_hidden_state
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        queries = self.model.query_tokens.expand(image_embeds.shape[0], -1, -1)
        hidden = self.model.qformer(
            query_embeds=queries,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
            return_dict=True,
        ).last_hidden_state
        hidden = hidden.to(self.model.vision_projection.weight.dtype)
        return F.normalize(self.model.vision_projection(hidden), dim=-1)  # (B, Q, d)

    def encode_texts(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Normalized `(n, d)` projected [CLS] embeddings."""
        return self._batched(texts, batch_size, self._text_batch, (0, self.dim))

    def encode_images(self, images: Sequence[Image.Image], batch_size: int | None = None) -> np.ndarray:
        """Normalized `(n, num_query_tokens, d)` projected query-token embeddings."""
        return self._batched(images, batch_size, self._image_batch, (0, self.num_query_tokens, self.dim))

    @staticmethod
    def similarity(text_emb: np.ndarray, image_emb: np.ndarray) -> np.ndarray:
        """ITC score `(n_texts, n_images)`: for each pair, the best cosine over the image's query tokens."""
        text = torch.from_numpy(np.asarray(text_emb, dtype=np.float32))  # (T, d)
        image = torch.from_numpy(np.asarray(image_emb, dtype=np.float32))  # (I, Q, d)
        return torch.einsum("td,iqd->tiq", text, image).amax(dim=-1).numpy()


def load_vl_baseline(name_or_path: str, device: str = "cpu") -> CLIPBaseline | Blip2Baseline:
    """The baseline for a checkpoint, chosen by its config's `model_type` ("clip" or "blip-2")."""
    from transformers import AutoConfig

    local = Path(str(name_or_path)).is_dir()
    config = AutoConfig.from_pretrained(str(name_or_path), local_files_only=local)
    if config.model_type == "clip":
        return CLIPBaseline(str(name_or_path), device=device)
    if config.model_type == "blip-2":
        architectures = config.architectures or [_BLIP2_RETRIEVAL]
        if _BLIP2_RETRIEVAL not in architectures:
            raise ValueError(
                f"{name_or_path} is a BLIP-2 {architectures} checkpoint without the retrieval (ITC) heads; "
                f"use a {_BLIP2_RETRIEVAL} checkpoint such as {DEFAULT_BLIP2}"
            )
        return Blip2Baseline(str(name_or_path), device=device)
    raise ValueError(
        f"{name_or_path}: no zero-shot baseline for model_type {config.model_type!r} (clip, blip-2)"
    )


# --- tiny random checkpoints for tests -------------------------------------------------------------


def _tiny_tokenizer(dest: Path, max_length: int):
    """A WordPiece tokenizer trained offline on a multilingual sample, saved to `dest`."""
    tokenizer = _build_tokenizer(MULTILINGUAL_SAMPLE, vocab_size=1000)
    _save_tokenizer(dest, tokenizer, max_length)
    return tokenizer


def _seeded(seed: int, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def build_tiny_clip(dest: str | Path, seed: int = 0, image_size: int = 32) -> Path:
    """A tiny random `CLIPModel` folder (config, weights, tokenizer, image processor) that loads offline."""
    from transformers import CLIPConfig, CLIPModel

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = _tiny_tokenizer(dest, max_length=32)
    text_config = {
        "vocab_size": tokenizer.get_vocab_size(),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 32,
        "bos_token_id": tokenizer.token_to_id("[CLS]"),
        "eos_token_id": tokenizer.token_to_id("[SEP]"),  # CLIP pools the text at its first eos token
        "pad_token_id": tokenizer.token_to_id("[PAD]"),
    }
    vision_config = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": image_size,
        "patch_size": 8,
    }
    config = CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=16)
    _seeded(seed, lambda: CLIPModel(config)).save_pretrained(str(dest))
    tiny_clip_image_processor(image_size).save_pretrained(str(dest))
    return dest


def build_tiny_blip2(
    dest: str | Path, seed: int = 0, image_size: int = 32, num_query_tokens: int = 4
) -> Path:
    """A tiny random `Blip2ForImageTextRetrieval` folder (config, weights, tokenizer, image processor)."""
    from transformers import Blip2Config, Blip2ForImageTextRetrieval

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = _tiny_tokenizer(dest, max_length=64)
    vision_config = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": image_size,
        "patch_size": 8,
        "initializer_range": 0.02,  # the default (1e-10) would make every random image look the same
    }
    qformer_config = {
        "vocab_size": tokenizer.get_vocab_size(),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        "cross_attention_frequency": 1,
        "pad_token_id": tokenizer.token_to_id("[PAD]"),
        "use_qformer_text_input": True,  # the retrieval model runs text through the Q-Former too
    }
    config = Blip2Config(
        vision_config=vision_config,
        qformer_config=qformer_config,
        num_query_tokens=num_query_tokens,
        image_text_hidden_size=16,
    )
    _seeded(seed, lambda: Blip2ForImageTextRetrieval(config)).save_pretrained(str(dest))
    _blip_image_processor(image_size).save_pretrained(str(dest))
    return dest


def _blip_image_processor(image_size: int):
    try:
        from transformers.models.blip.image_processing_pil_blip import (
            BlipImageProcessorPil as processor_class,
        )
    except ImportError:  # transformers < 5: the plain class is the PIL one
        from transformers import BlipImageProcessor as processor_class

    return processor_class(size={"height": image_size, "width": image_size})


def load_baseline_model(model: str):
    """A pretrained image-text model as it is: a train-vl folder (`ImageTextDualEncoder`, `dual_encoder.json`)
    or a CLIP / BLIP-2 checkpoint (`load_vl_baseline`)."""
    if (Path(model) / "dual_encoder.json").is_file():
        from hybridbatch.models.image_text_dual_encoder import ImageTextDualEncoder

        return ImageTextDualEncoder.load(model)
    return load_vl_baseline(model)
