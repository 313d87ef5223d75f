"""open_image: every conversion to 8-bit RGB, and every bad file named in a clear InputError."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from hybridbatch.data.errors import InputError
from hybridbatch.data.images import open_image


def _save(tmp_path, image, name, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def _png_header_only(width, height):
    """A PNG whose header claims `width` x `height` pixels, with no pixel data (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_rgb_from_path_and_bytes(tmp_path):
    path = _save(tmp_path, Image.new("RGB", (5, 3), (10, 20, 30)), "x.png")
    for source in (path, str(path), path.read_bytes()):
        im = open_image(source)
        assert im.mode == "RGB" and im.size == (5, 3) and im.getpixel((4, 2)) == (10, 20, 30)


def test_grey_and_one_bit_become_rgb(tmp_path):
    assert open_image(_save(tmp_path, Image.new("L", (2, 2), 77), "l.png")).getpixel((0, 0)) == (77, 77, 77)
    assert open_image(_save(tmp_path, Image.new("1", (2, 2), 1), "b.png")).getpixel((1, 1)) == (255, 255, 255)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = _save(tmp_path, Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "c.jpg", quality=100)
    assert Image.open(path).mode == "CMYK"
    r, g, b = open_image(path).getpixel((4, 4))
    assert r > 240 and g < 15 and b < 15  # pure magenta+yellow ink = red


def test_sixteen_bit_grey_is_scaled_to_8_bit(tmp_path):
    values = np.array([[0, 257 * 100], [65535, 257 * 200]], dtype=np.uint16)
    path = _save(tmp_path, Image.fromarray(values), "g16.png")
    assert Image.open(path).mode == "I;16"
    im = open_image(path)
    assert im.mode == "RGB"
    assert [im.getpixel(p)[0] for p in ((0, 0), (1, 0), (0, 1), (1, 1))] == [0, 100, 255, 200]


def test_32_bit_grey_in_16_bit_range_and_out_of_it(tmp_path):
    in_range = _save(tmp_path, Image.fromarray(np.array([[0, 65535]], dtype=np.int32)), "i.tif")
    assert Image.open(in_range).mode == "I"
    assert [open_image(in_range).getpixel((x, 0))[0] for x in (0, 1)] == [0, 255]
    wide = _save(tmp_path, Image.fromarray(np.array([[-1000, 0, 1000]], dtype=np.int32)), "w.tif")
    assert [open_image(wide).getpixel((x, 0))[0] for x in (0, 1, 2)] == [0, 128, 255]


@pytest.mark.parametrize("mode, color", [("RGBA", (255, 0, 0, 0)), ("LA", (0, 0))])
def test_transparent_pixels_become_white(tmp_path, mode, color):
    image = Image.new(mode, (4, 4), color)
    half = (0, 0, 255, 128) if mode == "RGBA" else (0, 128)
    image.putpixel((1, 1), half)
    im = open_image(_save(tmp_path, image, f"{mode}.png"))
    assert im.mode == "RGB" and im.getpixel((0, 0)) == (255, 255, 255)
    assert abs(im.getpixel((1, 1))[0] - 127) <= 1  # half-transparent black or blue over white


def test_palette_with_transparency_and_without(tmp_path):
    image = Image.new("P", (3, 3), 0)
    image.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    image.putpixel((2, 2), 1)
    with_trns = open_image(_save(tmp_path, image, "p.png", transparency=0))
    assert with_trns.getpixel((0, 0)) == (255, 255, 255) and with_trns.getpixel((2, 2)) == (200, 0, 0)
    plain = open_image(_save(tmp_path, image, "p2.png"))
    assert plain.getpixel((0, 0)) == (0, 0, 0) and plain.getpixel((2, 2)) == (200, 0, 0)


def test_grey_with_transparent_colour_key(tmp_path):
    im = open_image(_save(tmp_path, Image.new("L", (2, 2), 10), "lt.png", transparency=10))
    assert im.getpixel((0, 0)) == (255, 255, 255)


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(path).n_frames == 3
    assert open_image(path).getpixel((2, 2)) == (255, 0, 0)


def test_bad_files_raise_input_error_with_the_path(tmp_path):
    good = _save(tmp_path, Image.new("RGB", (64, 64), (1, 2, 3)), "good.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello, not an image")
    (tmp_path / "truncated.png").write_bytes(good.read_bytes()[:60])
    (tmp_path / "zero.png").write_bytes(_png_header_only(0, 5))
    cases = {"missing.png": "not found", "empty.png": "0 bytes", "text.png": "not a readable image",
             "truncated.png": "cannot decode", "zero.png": "not a readable image"}
    for name, message in cases.items():
        with pytest.raises(InputError, match=message) as err:
            open_image(tmp_path / name)
        assert err.value.path == str(tmp_path / name)
    with pytest.raises(InputError, match="not a file"):
        open_image(tmp_path)
    with pytest.raises(InputError, match="0 bytes") as err:
        open_image(b"", where="set.jsonl:3")
    assert err.value.path == "set.jsonl:3"


def test_too_many_pixels_is_refused_before_decoding(tmp_path):
    path = _save(tmp_path, Image.new("RGB", (100, 60)), "big.png")
    assert open_image(path, max_pixels=6000).size == (100, 60)
    with pytest.raises(InputError, match="too large: 100 x 60 = 6,000 pixels") as err:
        open_image(path, max_pixels=5999)
    assert err.value.path == str(path)
    # a header claiming 64 Mpixel and no data: refused from the header by our own check (default 50 Mpixel)
    with pytest.raises(InputError, match="8000 x 8000 = 64,000,000 pixels, above max_pixels=50,000,000"):
        open_image(_png_header_only(8000, 8000))
    bomb = _png_header_only(100_000, 100_000)  # 10^10 pixels: above Pillow's own limit too
    # even when the caller allows it, Pillow's own DecompressionBombError becomes the same clear error
    with pytest.raises(InputError, match="too large") as err:
        open_image(io.BytesIO(bomb).getvalue(), max_pixels=10**12, where="bomb.png")
    assert err.value.path == "bomb.png" and isinstance(err.value.__cause__, Image.DecompressionBombError)
