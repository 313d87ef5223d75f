"""Image-text toys: 24 drawn images (colour x shape) captioned in en/de/fr, tiny models, a train-vl config."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from hybridbatch.data.captions import Caption, CaptionSet, ImageItem, save_caption_jsonl
from hybridbatch.training.image_text_config import image_text_config_from_dict

COLORS = {"red": ("rot", "rouge"), "green": ("grün", "vert"), "blue": ("blau", "bleu"),
          "yellow": ("gelb", "jaune"), "black": ("schwarz", "noir"), "white": ("weiß", "blanc")}
SHAPES = {"square": ("Quadrat", "carré"), "stripe": ("Streifen", "bande"), "dot": ("Punkt", "point"),
          "corner": ("Ecke", "coin")}
RGB = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 20),
       "black": (10, 10, 10), "white": (250, 250, 250)}


def _draw(color: str, shape: str) -> Image.Image:
    img = Image.new("RGB", (32, 32), (128, 128, 128))
    box = {"square": (4, 4, 28, 28), "stripe": (0, 12, 32, 20), "dot": (12, 12, 20, 20), "corner": (0, 0, 14, 14)}
    img.paste(RGB[color], box[shape])
    return img


def build_vl_assets(root: Path) -> tuple[Path, Path, Path]:
    """24 drawn images with captions in en/de/fr (the text says the colour and the shape), a tiny text model
    built on those captions and a tiny random CLIP vision tower, in `root`: (root, text model, tower)."""
    from hybridbatch.models.image_towers import build_tiny_clip_vision
    from hybridbatch.models.tiny import build_tiny_sentence_transformer

    (root / "images").mkdir()
    images, captions = [], []
    for color, (de_c, fr_c) in COLORS.items():
        for shape, (de_s, fr_s) in SHAPES.items():
            iid = f"{color}-{shape}"
            _draw(color, shape).save(root / "images" / f"{iid}.png")
            images.append(ImageItem(iid, str(root / "images" / f"{iid}.png")))
            for lang, text in (("en", f"a {color} {shape}"), ("de", f"{de_s} {de_c}"), ("fr", f"{fr_s} {fr_c}")):
                captions.append(Caption(f"{iid}/{lang}/0", text, lang, (iid,), f"{iid}#0"))
    save_caption_jsonl(root / "captions.jsonl", CaptionSet("toy", images, captions))
    text_model = build_tiny_sentence_transformer(root / "text", texts=[c.text for c in captions], seed=0)
    tower = build_tiny_clip_vision(root / "tower", seed=0)
    return root, text_model, tower


def vl_config(vl_assets, out, **overrides):
    """A train-vl config on `vl_assets` (hybrid sampler, 12 steps), `overrides` set on top."""
    root, text_model, tower = vl_assets
    raw = {"text_model": str(text_model), "image_tower": f"hf-clip-vision:{tower}", "embed_dim": 16,
           "freeze_word_embeddings": False, "data": {"source": str(root / "captions.jsonl"),
                                                     "languages": ["en", "de", "fr"]},
           "sampler": {"name": "hybrid", "alpha": 0.5}, "batch_size": 8, "steps": 12, "lr": 1e-3,
           "head_lr": 1e-2, "seed": 0, "output_dir": str(out),
           "eval": {"benchmarks": [str(root / "captions.jsonl")]}}
    raw.update(overrides)
    return image_text_config_from_dict(raw)
