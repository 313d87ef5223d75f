"""Emoji x CLDR: annotations parsed from files in the real CLDR format, the split, and (with the real Noto
Color Emoji font, when it is in the cache or the system) rendering and the whole build."""

import json

import pytest
from PIL import Image

from hybridbatch.data.emoji_cldr import (
    EmojiRenderer,
    build_emoji_cldr,
    emoji_id,
    fetch_debian_package,
    find_font,
    load_emoji_cldr,
    parse_annotations,
    read_cldr,
    split_emoji,
)
from hybridbatch.data.errors import InputError

HEADER = """<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE ldml SYSTEM "../../common/dtd/ldml.dtd">
<!-- Copyright © 1991-2022 Unicode, Inc.
Warnings: All cp values have U+FE0F characters removed. See /annotationsDerived/ for derived annotations.
-->
<ldml>
\t<identity>
\t\t<version number="$Revision$"/>
\t\t<language type="{lang}"/>{territory}
\t</identity>
"""


def _ldml(lang, rows, territory=""):
    body = "".join(f"\t\t<annotation cp=\"{cp}\"{extra}>{text}</annotation>\n" for cp, extra, text in rows)
    head = HEADER.replace("{lang}", lang).replace("{territory}", f'\n\t\t<territory type="{territory}"/>'
                                                  if territory else "")
    return head + (f"\t<annotations>\n{body}\t</annotations>\n" if rows else "") + "</ldml>\n"


TTS = ' type="tts"'
FILES = {
    "en.xml": _ldml("en", [
        ("{", "", "brace | bracket | curly brace | open curly bracket"), ("{", TTS, "open curly bracket"),
        ("😀", "", "face | grin | grinning face"), ("😀", TTS, "grinning face"),
        ("👩‍💻", "", "coder | developer | technologist | woman"), ("👩‍💻", TTS, "woman technologist"),
        ("🇩🇪", "", "flag"), ("🇩🇪", TTS, "flag: Germany"),
    ]),
    "de.xml": _ldml("de", [
        ("😀", "", "Gesicht | grinsendes Gesicht | lol"), ("😀", TTS, "grinsendes Gesicht"),
        ("👩‍💻", ' draft="unconfirmed"', "Technologin"), ("👩‍💻", TTS + ' draft="unconfirmed"', "Technologin"),
        ("🐈", TTS, "Katze"),  # not a base emoji of en.xml: ignored
    ]),
    "pt_PT.xml": _ldml("pt", [("😀", TTS, "cara com sorriso"), ("🇩🇪", TTS, "bandeira: Alemanha")], "PT"),
    "zh_Hant.xml": _ldml("zh", [("😀", TTS, "露齒笑臉")]),
    "de_CH.xml": _ldml("de", [("😀", TTS, "↑↑↑")], "CH"),  # only inherits: no names
    "root.xml": _ldml("root", []),  # not a language code
}


@pytest.fixture
def cldr_dir(tmp_path):
    folder = tmp_path / "common" / "annotations"
    folder.mkdir(parents=True)
    for name, text in FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_parse_annotations_names_and_keywords(cldr_dir):
    names, keywords = parse_annotations(cldr_dir / "en.xml")
    assert names == {"{": "open curly bracket", "😀": "grinning face", "👩‍💻": "woman technologist",
                     "🇩🇪": "flag: Germany"}
    assert keywords["😀"] == ["face", "grin", "grinning face"]
    assert parse_annotations(cldr_dir / "de_CH.xml") == ({}, {})
    assert "👩‍💻" not in parse_annotations(cldr_dir / "de.xml")[0]  # draft="unconfirmed" is left out


def test_read_cldr_languages_base_emoji_and_counted_skips(cldr_dir):
    by_cp, skipped = read_cldr(cldr_dir)
    assert set(by_cp) == {"{", "😀", "👩‍💻", "🇩🇪"}  # base emoji = English tts names; 🐈 of de.xml is not one
    assert by_cp["😀"] == {"en": ["grinning face"], "de": ["grinsendes Gesicht"], "pt-PT": ["cara com sorriso"],
                           "zh-Hant": ["露齒笑臉"]}
    assert by_cp["🇩🇪"] == {"en": ["flag: Germany"], "pt-PT": ["bandeira: Alemanha"]}
    assert by_cp["👩‍💻"] == {"en": ["woman technologist"]}
    assert dict(skipped) == {"locale files with an unknown language code": 1,
                             "locale files with no names of base emoji": 1}


def test_keywords_follow_the_name_without_repeating_it(cldr_dir):
    by_cp, _ = read_cldr(cldr_dir, keywords=True)
    assert by_cp["😀"]["en"] == ["grinning face", "face", "grin"]
    assert by_cp["😀"]["de"] == ["grinsendes Gesicht", "Gesicht", "lol"]
    assert by_cp["😀"]["pt-PT"] == ["cara com sorriso"]


def test_malformed_xml_and_missing_en_are_input_errors(tmp_path, cldr_dir):
    (cldr_dir / "fr.xml").write_text("<ldml><annotations><annotation cp='x'>oops</annotations>", encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_cldr(cldr_dir)
    assert err.value.path.endswith("fr.xml") and err.value.line == 1
    with pytest.raises(InputError, match="en.xml"):
        read_cldr(tmp_path)


def test_extracted_package_is_reused_without_apt(tmp_path, monkeypatch):
    def no_apt(*args, **kwargs):
        raise AssertionError("apt-get must not run when the package is already extracted")
    monkeypatch.setattr("hybridbatch.data.emoji_cldr._run", no_apt)
    (tmp_path / "some-package").mkdir()
    (tmp_path / "some-package" / ".extracted").write_text("some-package_1.0_all.deb\n")
    assert fetch_debian_package("some-package", root=tmp_path) == tmp_path / "some-package"
    with pytest.raises(AssertionError, match="must not run"):
        fetch_debian_package("other-package", root=tmp_path)


def test_split_is_deterministic_stable_and_near_the_fraction():
    ids = [emoji_id(c) for c in ["😀", "👩‍💻", "🇩🇪", "#⃣", "☺", "🏻", "🐈", "🍕", "❤", "🚀"]]
    assert ids[:4] == ["1f600", "1f469-200d-1f4bb", "1f1e9-1f1ea", "23-20e3"]
    # fixed answer (SHA-256 of the codepoints): the same on every machine and in every Python process
    assert split_emoji(ids) == (["1f1e9-1f1ea", "263a", "1f3fb", "1f408", "1f355", "2764"],
                                ["1f600", "1f469-200d-1f4bb", "23-20e3", "1f680"])
    # an id's side does not depend on the other ids, and a larger fraction only moves ids into test
    assert split_emoji(ids[::-1])[1] == ["1f680", "23-20e3", "1f469-200d-1f4bb", "1f600"]
    assert set(split_emoji(ids, 0.1)[1]) <= set(split_emoji(ids, 0.2)[1]) <= set(split_emoji(ids, 0.5)[1])
    many = [f"{i:x}" for i in range(0x1F000, 0x1F000 + 4000)]
    train, test = split_emoji(many)
    assert sorted(train + test) == sorted(many) and not set(train) & set(test)
    assert 0.18 < len(test) / len(many) < 0.22
    assert split_emoji(many, 0.0)[1] == [] and split_emoji(many, 1.0)[0] == []
    with pytest.raises(ValueError):
        split_emoji(many, 1.5)


FONT = find_font()
needs_font = pytest.mark.skipif(FONT is None, reason="NotoColorEmoji.ttf not extracted (build_emoji_cldr fetches it)")


@needs_font
def test_renderer_draws_emoji_and_refuses_what_the_font_lacks():
    renderer = EmojiRenderer(FONT)
    for cp in ("😀", "👩‍💻", "🇩🇪"):  # one glyph, a ZWJ sequence, a flag (both ligatures of the font)
        image = renderer.render(cp)
        assert image is not None and image.mode == "RGB" and image.size == (160, 160)
        colours = image.getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 20  # a colour picture, not a box or a black glyph
    assert renderer.render("{") is None  # not in the emoji font
    assert renderer.render("😀😀") is None  # two glyphs are not one emoji image


@needs_font
def test_build_and_load_with_the_real_font(tmp_path, cldr_dir):
    dest = tmp_path / "emoji-cldr"
    assert build_emoji_cldr(dest, font=FONT, cldr_dir=cldr_dir, test_fraction=0.5) == dest
    info = json.loads((dest / "build.json").read_text(encoding="utf-8"))
    assert info["emoji"] == 3 and info["captions"] == 7 and info["languages"] == 4
    assert info["skipped"] == {"emoji the font cannot render": 1, "locale files with an unknown language code": 1,
                               "locale files with no names of base emoji": 1}
    train, test = load_emoji_cldr("train", dest), load_emoji_cldr("test", dest)
    assert sorted(i.id for i in train.images + test.images) == ["1f1e9-1f1ea", "1f469-200d-1f4bb", "1f600"]
    assert [i.id for i in test.images] == ["1f600", "1f469-200d-1f4bb"]  # the 0.5 split, en.xml order
    assert train.skipped == info["skipped"]
    smile = {c.lang: c for c in test.captions if c.image_ids == ("1f600",)}
    assert smile["zh-Hant"].text == "露齒笑臉" and smile["zh-Hant"].group == smile["en"].group == "1f600#0"
    with Image.open(dest / "images" / "1f600.png") as png:
        assert png.size == (160, 160) and png.getpixel((0, 0)) == (255, 255, 255)
    # a finished build is reused; force rebuilds (here with keywords)
    stamp = (dest / "build.json").stat().st_mtime_ns
    assert build_emoji_cldr(dest, font=FONT, cldr_dir=cldr_dir) == dest
    assert (dest / "build.json").stat().st_mtime_ns == stamp
    build_emoji_cldr(dest, font=FONT, cldr_dir=cldr_dir, keywords=True, force=True)
    assert json.loads((dest / "build.json").read_text(encoding="utf-8"))["captions"] > 7
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left
    with pytest.raises(ValueError, match="split"):
        load_emoji_cldr("dev", dest)
