"""Openclipart: SVG metadata in the packages' real RDF form, PNG matching, counted skips, downscaling, the
split and the atomic build, all on tiny fake package trees (no downloads)."""

import json
import struct
import zlib

import pytest
from PIL import Image

from hybridbatch.data.emoji_cldr import split_emoji
from hybridbatch.data.errors import InputError
from hybridbatch.data.names import resolve_caption_set
from hybridbatch.data.openclipart import (
    MALFORMED,
    NO_SVG,
    PLACEHOLDER,
    SHARED,
    TOO_LARGE,
    TOO_SMALL,
    UNREADABLE,
    SvgMeta,
    build_openclipart,
    clean_text,
    load_openclipart,
    match_pngs,
    read_openclipart_metadata,
)

SVG = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<!-- Generator: Adobe Illustrator 12.0.0, SVG Export Plug-In . SVG Version: 6.00 Build 51448)  --><svg \
height="411.623" id="Layer_1" version="1.1" width="67.695" xmlns="http://www.w3.org/2000/svg" \
xmlns:cc="http://web.resource.org/cc/" xmlns:dc="http://purl.org/dc/elements/1.1/" \
xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <metadata>
    <rdf:RDF>
      <cc:Work rdf:about="">
        <dc:title>{title}</dc:title>
        <dc:description></dc:description>
        <dc:subject>
          <rdf:Bag>
{keywords}          </rdf:Bag>
        </dc:subject>
        <dc:publisher>
          <cc:Agent rdf:about="http://www.openclipart.org/">
            <dc:title>Open Clip Art Library</dc:title>
          </cc:Agent>
        </dc:publisher>
        <dc:language>en</dc:language>
      </cc:Work>
    </rdf:RDF>
  </metadata>
  <g id="g3"><path d="M0.791,144.836c12.634-0.2,28.605-5.903,40.544,0.068"/></g>
</svg>
"""


def _svg(title, keywords=()):
    items = "".join(f"            <rdf:li>{k}</rdf:li>\n" for k in keywords)
    return SVG.replace("{title}", title).replace("{keywords}", items)


def _png_header(width, height):
    """A PNG that claims `width` x `height` RGBA pixels in 60 bytes (no pixel data: only its header is read)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


SVGS = {  # relative stem -> SVG text
    "animals/cat_01": _svg("Black_Cat", ["animal", "cat", "", "black cat"]),
    "animals/lizard_01": _svg("L&amp;Atilde;&amp;copy;zard", ["lizard"]),
    "food/bee": _svg("Clipart by Nicu Buculei - bee"),
    "shapes/wide": _svg("Wide   red\n banner"),
    "shapes/tiny": _svg("Tiny flag"),
    "shapes/huge": _svg("Huge stop sign"),
    "shapes/corrupt": _svg("Corrupt picture"),
    "icons/lemon_a": _svg("Lemon SVG theme", ["icon", "hash"]),
    "icons/lemon_b": _svg("lemon svg  theme", ["icon"]),
    "unsorted/untitled": _svg(""),
    "unsorted/untitled_2": _svg("Untitled"),
    "unsorted/broken": _svg("Broken").replace("</dc:title>", "</dc:titel>"),
    "unsorted/late_error": _svg("Late error").replace("</g>", "</h>"),  # not read that far: usable
    "unsorted/no_metadata": '<svg xmlns="http://www.w3.org/2000/svg"><g/></svg>',
}


@pytest.fixture
def trees(tmp_path):
    svg_root, png_root = tmp_path / "svg", tmp_path / "png"
    for stem, text in SVGS.items():
        (svg_root / stem).parent.mkdir(parents=True, exist_ok=True)
        (svg_root / f"{stem}.svg").write_text(text, encoding="utf-8")
    colours = {"animals/cat_01": (200, 30, 30), "animals/lizard_01": (30, 200, 30), "food/bee": (250, 200, 0),
               "icons/lemon_a": (255, 255, 0), "icons/lemon_b": (255, 250, 0), "unsorted/untitled": (0, 0, 0),
               "unsorted/untitled_2": (1, 1, 1), "unsorted/broken": (2, 2, 2),
               "unsorted/no_metadata": (3, 3, 3), "extra/orphan": (4, 4, 4)}  # orphan: a PNG without SVG
    for stem, colour in colours.items():
        (png_root / stem).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), colour).save(png_root / f"{stem}.png")
    (png_root / "shapes").mkdir()
    wide = Image.new("RGBA", (1000, 500), (0, 0, 0, 0))  # transparent, with an opaque red band
    wide.paste((255, 0, 0, 255), (0, 200, 1000, 300))
    wide.save(png_root / "shapes/wide.png")
    Image.new("RGB", (8, 6), "blue").save(png_root / "shapes/tiny.png")
    (png_root / "shapes/huge.png").write_bytes(_png_header(30_000, 20_000))
    (png_root / "shapes/corrupt.png").write_bytes(_png_header(40, 40)[:-12] + b"garbage")
    # the cat is filed under a second category: links in both packages, one image
    (svg_root / "pets").mkdir()
    (svg_root / "pets/cat_01.svg").symlink_to("../animals/cat_01.svg")
    (png_root / "pets").mkdir()
    (png_root / "pets/cat_01.png").symlink_to("../animals/cat_01.png")
    return svg_root, png_root


def test_clean_text():
    assert clean_text("  Gelato all&#39;italiana\n") == "Gelato all'italiana"
    assert clean_text("L&Atilde;&copy;zard") == "Lézard"  # UTF-8 read as Latin-1
    assert clean_text("Mikol\xe1\x9a Ale\x9a") == "Mikoláš Aleš"  # cp1252 read as Latin-1
    assert clean_text("Aragón") == "Aragón" and clean_text("tree_whit_fruits") == "tree whit fruits"
    assert clean_text(None) == ""


def test_read_metadata_titles_keywords_and_counted_skips(trees):
    metadata, counts = read_openclipart_metadata(trees[0])
    assert metadata["animals/cat_01"] == SvgMeta("Black Cat", ("animal", "cat"))  # empty and title-equal dropped
    assert metadata["pets/cat_01"] is metadata["animals/cat_01"]  # a link is read once
    assert metadata["animals/lizard_01"].title == "Lézard"
    assert metadata["food/bee"].title == "bee"  # the credit prefix is dropped
    assert metadata["shapes/wide"] == SvgMeta("Wide red banner", ())
    assert metadata["unsorted/broken"] == MALFORMED
    assert metadata["unsorted/untitled"] == metadata["unsorted/untitled_2"] == PLACEHOLDER
    assert metadata["unsorted/no_metadata"] == PLACEHOLDER
    assert metadata["unsorted/late_error"].title == "Late error"  # read only up to the metadata
    assert dict(counts) == {"paths": 15, "files": 14, "usable": 10, MALFORMED: 1, PLACEHOLDER: 3}
    with pytest.raises(InputError, match="SVG folder"):
        read_openclipart_metadata(trees[0] / "missing")


def test_match_pngs_by_relative_path_once_per_distinct_file(trees):
    metadata, _ = read_openclipart_metadata(trees[0])
    items, skipped = match_pngs(trees[1], metadata)
    ids = [i for i, _, _ in items]
    assert ids == ["animals.cat_01", "animals.lizard_01", "food.bee", "icons.lemon_a", "icons.lemon_b",
                   "shapes.corrupt", "shapes.huge", "shapes.tiny", "shapes.wide"]  # no pets.cat_01: a link
    assert dict(skipped) == {NO_SVG: 1, MALFORMED: 1, PLACEHOLDER: 3}


def test_build_skips_downscales_splits_and_is_reused(trees, tmp_path):
    svg_root, png_root = trees
    dest = tmp_path / "out" / "openclipart"
    assert build_openclipart(dest, svg_root=svg_root, png_root=png_root, test_fraction=0.5) == dest
    info = json.loads((dest / "build.json").read_text(encoding="utf-8"))
    assert info["skipped"] == {NO_SVG: 1, MALFORMED: 1, PLACEHOLDER: 3, SHARED: 2, TOO_LARGE: 1, TOO_SMALL: 1,
                               UNREADABLE: 1}
    assert info["images"] == 4 and info["captions"] == 4 and info["png_images"] == 14
    assert info["train"] + info["test"] == 4 and info["median_title_words"] == 1.5
    full = load_openclipart("all", dest)
    assert {c.image_ids[0]: c.text for c in full.captions} == {
        "animals.cat_01": "Black Cat", "animals.lizard_01": "Lézard", "food.bee": "bee",
        "shapes.wide": "Wide red banner"}
    assert {c.lang for c in full.captions} == {"en"} and full.skipped == info["skipped"]
    with Image.open(dest / "images" / "shapes.wide.png") as png:  # 1000 x 500 RGBA -> 384 x 192 RGB on white
        assert png.mode == "RGB" and png.size == (384, 192)
        assert png.getpixel((0, 0)) == (255, 255, 255) and png.getpixel((192, 96)) == (255, 0, 0)
    with Image.open(dest / "images" / "animals.cat_01.png") as png:  # small images keep their size
        assert png.size == (64, 48)
    # the split is split_emoji's hash of the id: the same on every machine
    train, test = load_openclipart("train", dest), load_openclipart("test", dest)
    expected = split_emoji([i.id for i in full.images], 0.5)
    assert ([i.id for i in train.images], [i.id for i in test.images]) == expected
    assert json.loads((dest / "split.json").read_text(encoding="utf-8"))["test"] == expected[1]
    assert test.name == "openclipart:test" and len(train.captions) + len(test.captions) == 4
    # a finished build is reused (even with other roots); force rebuilds, here with keywords
    stamp = (dest / "build.json").stat().st_mtime_ns
    assert build_openclipart(dest, svg_root=tmp_path / "nothing", png_root=tmp_path / "nothing") == dest
    assert (dest / "build.json").stat().st_mtime_ns == stamp
    build_openclipart(dest, force=True, keywords=True, max_title_share=2, svg_root=svg_root, png_root=png_root)
    info = json.loads((dest / "build.json").read_text(encoding="utf-8"))
    assert info["images"] == 6 and SHARED not in info["skipped"]
    by_image = load_openclipart("all", dest).captions_by_image()
    assert [c.text for c in by_image["animals.cat_01"]["en"]] == ["Black Cat", "animal", "cat"]
    assert [c.group for c in by_image["animals.cat_01"]["en"]] == [f"animals.cat_01#{i}" for i in range(3)]
    assert [c.text for c in by_image["icons.lemon_b"]["en"]] == ["lemon svg theme", "icon"]
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left
    with pytest.raises(ValueError, match="split"):
        load_openclipart("dev", dest)


def test_failed_build_leaves_nothing_behind(trees, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr("hybridbatch.data.openclipart.save_caption_jsonl", boom)
    dest = tmp_path / "out" / "openclipart"
    with pytest.raises(RuntimeError, match="disk full"):
        build_openclipart(dest, svg_root=trees[0], png_root=trees[1])
    assert list((tmp_path / "out").iterdir()) == []


def test_resolve_caption_set_reads_the_cached_build(trees, tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRIDBATCH_CACHE", str(tmp_path / "cache"))
    build_openclipart(svg_root=trees[0], png_root=trees[1], test_fraction=0.5)
    assert (tmp_path / "cache" / "data" / "openclipart" / "build.json").is_file()

    def no_fetch(*args, **kwargs):
        raise AssertionError("a finished build must not fetch packages")
    monkeypatch.setattr("hybridbatch.data.openclipart.fetch_debian_package", no_fetch)
    test = resolve_caption_set("openclipart:test")
    train = resolve_caption_set("openclipart:train")
    assert test.name == "openclipart:test" and test.images
    assert sorted(i.id for i in test.images + train.images) == sorted(
        i.id for i in resolve_caption_set("openclipart:all").images)
    assert len(resolve_caption_set("openclipart:all").images) == 4
