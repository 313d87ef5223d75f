"""Open any image file (or its bytes) as an 8-bit RGB Pillow image, or fail with a clear `InputError`.

Image encoders want RGB; real image sets hold every other kind. `open_image` converts, always the same way:

- animated images (GIF, APNG, WebP, multi-page TIFF): the first frame;
- CMYK (and YCbCr, LAB, HSV, 1-bit): Pillow's plain conversion to RGB (embedded ICC profiles are ignored);
- 16-bit grey (`I;16`, `I;16B`, `I;16L`) -> 8 bits by dividing by 257 (0..65535 -> 0..255); 32-bit integer
  grey (`I`) the same when its values lie in 0..65535, else stretched linearly from its min..max to 0..255;
  float grey (`F`) stretched from min..max;
- anything with transparency (RGBA, LA, PA, palette or grey with a transparent colour) composited on white;
- grey (`L`) and palette (`P`) without transparency -> RGB.

EXIF orientation is not applied (as in the CLIP preprocessors): the pixels are used as stored.

`map_image_batches` opens a set of images a batch at a time (at most `batch_size` images and, past a single
image, `max_batch_pixels` pixels decoded at once), so memory follows the batch, not the image set.

Errors, each an `InputError` whose path is `where` (else the file path, else "<bytes>"): a missing or
unreadable file, an empty file, data Pillow cannot identify or decode (corrupt or truncated), an image of
zero pixels, and an image above `max_pixels`. The size is checked from the header before any pixel is
decoded, so a decompression bomb costs nothing; Pillow's own `DecompressionBombError` (for headers above
twice `PIL.Image.MAX_IMAGE_PIXELS`) is turned into the same error.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from hybridbatch.data.errors import InputError

WHITE = (255, 255, 255)
_GREY_16 = ("I;16", "I;16B", "I;16L", "I;16N")
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_BATCH_PIXELS = 64_000_000  # decoded pixels held at once by `map_image_batches`: ~190 MB as 8-bit RGB
T = TypeVar("T")


def map_image_batches(sources: Iterable[tuple[str | Path | bytes, str]], fn: Callable[[list[Image.Image]], T],
                      batch_size: int = 32, *, max_batch_pixels: int = DEFAULT_BATCH_PIXELS,
                      max_pixels: int = DEFAULT_MAX_PIXELS) -> list[T]:
    """`[fn(batch) for each batch]` over the images of `sources` ((source, where) pairs for `open_image`), in
    order. A batch holds at most `batch_size` images and at most `max_batch_pixels` pixels (a larger single
    image, within `max_pixels`, is a batch of its own); an image is decoded only after the previous batch
    was handed to `fn` and released, so no more than one batch is ever decoded at a time.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    results: list[T] = []
    batch: list[Image.Image] = []
    pixels = 0
    for source, where in sources:
        size = _header_pixels(source)
        if batch and (len(batch) >= batch_size or pixels + size > max_batch_pixels):
            results.append(fn(batch))
            batch, pixels = [], 0  # the only reference to the decoded images goes here
        batch.append(open_image(source, max_pixels=max_pixels, where=where))  # no other name holds an image
        pixels += batch[-1].width * batch[-1].height
    if batch:
        results.append(fn(batch))
    return results


def _header_pixels(source: Any) -> int:
    """Width x height from the image header (nothing decoded); 0 where unreadable (`open_image` says why)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as image:
                return int(image.width) * int(image.height)
    except Exception:  # noqa: BLE001 - any failure is reported by open_image with its own message
        return 0


def open_image(source: str | Path | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, where: str = "") -> Image.Image:
    """The image at `source` (a path, or the encoded bytes) as a loaded 8-bit RGB image (see the module doc)."""
    label = where or (str(source) if not isinstance(source, (bytes, bytearray)) else "<bytes>")
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise InputError("empty image data (0 bytes)", path=label)
        handle: io.IOBase | Path = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError("image file not found" if not path.exists() else "not a file", path=label)
        if path.stat().st_size == 0:
            raise InputError("empty image file (0 bytes)", path=label)
        handle = path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we check the size ourselves
            with Image.open(handle) as image:
                width, height = image.size
                if width <= 0 or height <= 0:
                    raise InputError(f"image has zero pixels ({width} x {height})", path=label)
                if width * height > max_pixels:
                    raise InputError(f"image too large: {width} x {height} = {width * height:,} pixels, above "
                                     f"max_pixels={max_pixels:,}", path=label)
                if getattr(image, "n_frames", 1) > 1:
                    image.seek(0)
                image.load()
                return _to_rgb(image, label)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputError(f"image too large (refused before decoding): {exc}", path=label) from exc
    except UnidentifiedImageError as exc:
        raise InputError("not a readable image (unknown format, corrupt header or zero size)", path=label) from exc
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise InputError(f"cannot decode image ({type(exc).__name__}: {exc})", path=label) from exc


def _to_rgb(image: Image.Image, label: str) -> Image.Image:
    """A new RGB image from a loaded image of any mode (the conversions of the module docstring)."""
    mode = image.mode
    if mode in _GREY_16 or mode in ("I", "F"):
        return _grey_to_8bit(image).convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return image.copy()
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise InputError(f"cannot convert image mode {mode!r} to RGB ({exc})", path=label) from exc


def _grey_to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float grey -> `L` (see the module docstring for the scaling)."""
    values = np.asarray(image).astype(np.float64)
    if image.mode in _GREY_16 or (image.mode == "I" and values.min() >= 0 and values.max() <= 65535):
        scaled = values / 257.0
    else:
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
